"""The retry sidecar under test: in a background thread, or as a real process.

`Sidecar` runs the app built from command-line options with uvicorn in a thread of its own
(uvicorn runs on asyncio), so a test's client side can run on asyncio or trio. `SidecarProcess`
runs ``python -m retry_transport proxy`` as a child process, for signals and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import uvicorn

from retry_transport.proxy.app import build_app
from retry_transport.proxy.cli import add_arguments, settings_from_args
from retry_transport.proxy.serving import server_config
from retry_transport.proxy.settings import ProxySettings

__all__ = [
    "FAST",
    "Gate",
    "Sidecar",
    "SidecarProcess",
    "ThreadedServer",
    "Trickle",
    "loopback_socket",
    "settings_for",
]

# Short waits so that retries in tests cost milliseconds (waits named by the server still
# count in full).
FAST = ("--congestion-base", "0.01", "--transient-base", "0.01", "--log-level", "debug")


def settings_for(*argv: str) -> ProxySettings:
    """The settings ``retry-transport proxy ARGV`` would run with."""
    parser = argparse.ArgumentParser(prog="retry-transport proxy")
    add_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


class _Server(uvicorn.Server):
    """uvicorn's server, noticing `should_exit` within milliseconds (uvicorn polls every 0.1 s
    and ticks its Date header, which the sidecar does not send)."""

    async def main_loop(self) -> None:
        await self.on_tick(0)  # where uvicorn sets the default headers, as its own loop does first
        while True:
            if self.should_exit:  # set from the test's thread: no event to wait on
                return
            await asyncio.sleep(0.005)


def loopback_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    """uvicorn serving ``config`` on the bound socket ``sock`` in a background thread named
    ``name``. Use it as a context manager; leaving it shuts the server down gracefully, joins
    the thread and raises what the server raised, if anything."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._name = name
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by __exit__
            self._error = exc

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self._name} did not start: {self._error!r}")
            time.sleep(0.005)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15.0)
        self._sock.close()
        assert not self._thread.is_alive(), f"the {self._name} did not stop"
        if self._error is not None:
            raise self._error


class Sidecar(ThreadedServer):
    """``retry-transport proxy ARGV`` served by uvicorn in a background thread.

    Listens on a free loopback port, or on ``sock`` when given (bound, so that its address
    can be named before the sidecar starts; ``--host`` and ``--port`` are ignored). Use it as
    a context manager; leaving it shuts the server down gracefully and joins the thread.
    """

    def __init__(self, *argv: str, sock: socket.socket | None = None) -> None:
        self.settings = settings_for(*FAST, *argv)
        config = server_config(build_app(self.settings), self.settings)
        super().__init__(config, loopback_socket() if sock is None else sock, "sidecar")
        self.url = f"http://127.0.0.1:{self.port}"

    def connections(self) -> list[object]:
        """The client connections the server holds open."""
        return list(self._server.server_state.connections)


class SidecarProcess:
    """``python -m retry_transport proxy ARGV --port 0`` as a child process.

    Its output goes to the file ``log`` (read back by `log`); `__enter__` waits until it
    answers its health check. Leaving the context kills it if it is still running.
    """

    def __init__(self, log: Path, *argv: str, env: dict[str, str] | None = None) -> None:
        self._argv = [sys.executable, "-m", "retry_transport", "proxy", *argv, "--port", "0"]
        self._log = log
        self._env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        """What the sidecar has logged so far."""
        return self._log.read_text(errors="replace")

    def __enter__(self) -> SidecarProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._env}
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + 60.0  # generous: a loaded machine, under coverage
        self.url = self.wait_for(r"listening on (http://127\.0\.0\.1:\d+)/", deadline).group(1)
        while True:
            try:
                httpx.get(f"{self.url}/_retry_transport/healthz").raise_for_status()
                return self
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the sidecar did not answer:\n{self.log()}") from None
                time.sleep(0.01)

    def wait_for(self, pattern: str, deadline: float | None = None) -> re.Match[str]:
        """The first match of ``pattern`` in the log, once the sidecar has logged it (a
        readiness poll; by ``deadline``, 60 s from now if not given, or while it runs)."""
        assert self.process is not None
        if deadline is None:
            deadline = time.monotonic() + 60.0
        while True:
            found = re.search(pattern, self.log())
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar never logged {pattern!r}:\n{self.log()}")
            time.sleep(0.01)

    def terminate(self) -> None:
        """Send SIGTERM."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit status, once it has exited."""
        assert self.process is not None
        return self.process.wait(timeout)

    def peak_rss(self) -> int:
        """The process's peak resident memory so far, in bytes (Linux: VmHWM)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
        assert found is not None, status
        return int(found.group(1)) * 1024

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean exit, so its coverage data is written
            try:
                self.process.wait(30.0)  # generous: killed, it would write none
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Gate:
    """A body for ``Reply(chunks=...)`` that sends ``head``, waits until `open` is called (or
    ``timeout`` passes), then sends ``tail``: proof that what came before was not held back."""

    def __init__(self, head: list[bytes], tail: list[bytes], *, timeout: float = 10.0) -> None:
        self.head = head
        self.tail = tail
        self.timeout = timeout
        self.released = threading.Event()
        self.timed_out = False
        """The tail went because ``timeout`` passed, not because `open` was called."""

    def open(self) -> None:
        """Let the tail go."""
        self.released.set()

    def __call__(self) -> Iterator[bytes]:
        yield from self.head
        self.timed_out = not self.released.wait(self.timeout)
        yield from self.tail


class Trickle:
    """A body for ``Reply(chunks=...)``: ``count`` chunks, one every ``interval`` seconds.

    `stopped` is set when the server stops sending it, finished or not (a write to a closed
    connection fails within a chunk or two); `stopped_at` is then its ``time.monotonic()``.
    """

    def __init__(self, chunk: bytes, count: int, interval: float) -> None:
        self.chunk = chunk
        self.count = count
        self.interval = interval
        self.sent = 0
        self.stopped = threading.Event()
        self.stopped_at = 0.0

    def __call__(self) -> Iterator[bytes]:
        try:
            for _ in range(self.count):
                yield self.chunk
                self.sent += 1
                time.sleep(self.interval)  # the upstream's pace, in its own thread
        finally:
            self.stopped_at = time.monotonic()
            self.stopped.set()
