"""The soak's sidecar: ``retry-transport proxy`` as it serves, plus a once-a-second status line.

Run as ``python -m benchmarks._soak_child STATUS_FILE PROXY_ARGS...``. It builds the app and
the uvicorn configuration exactly as ``python -m retry_transport proxy`` does, and appends
one JSON line a second to STATUS_FILE: the event loop's task count, open descriptors and
resident memory, so the soak can see leaks from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

from retry_transport.proxy.app import build_app
from retry_transport.proxy.cli import add_arguments, settings_from_args
from retry_transport.proxy.serving import _configure_logging, _Server, server_config


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _sockets_to(port: int) -> int:
    """This process's TCP sockets connected to ``port`` (the upstream's keep-alive pool)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


async def _monitor(path: Path, upstream_port: int) -> None:
    with path.open("a") as out:
        while True:
            line = {
                "tasks": len(asyncio.all_tasks()) - 1,  # not this one
                "fds": len(os.listdir("/proc/self/fd")),
                "upstream_sockets": _sockets_to(upstream_port),
                "rss": _rss(),
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
            await asyncio.sleep(1.0)


async def _serve(status: Path, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="soak-sidecar")
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(argv))
    _configure_logging(settings.log_level)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(server_config(build_app(settings), settings), settings.grace)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):  # as serve() does: exit 0 once stopped
        signal.signal(signum, lambda *_: None)
    upstream_port = int(settings.upstreams[0].url.rsplit(":", 1)[1].split("/", 1)[0])
    monitor = asyncio.create_task(_monitor(status, upstream_port))
    try:
        await server.serve(sockets=[sock])
    finally:
        monitor.cancel()


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1]), sys.argv[2:]))
