"""Serving: the sidecar's logging, its listening socket and uvicorn, until SIGTERM or SIGINT."""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket

import uvicorn
from starlette.applications import Starlette

from .app import build_app
from .settings import ProxySettings

__all__ = ["fast_parts", "serve", "server_config"]

logger = logging.getLogger("retry_transport.proxy")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setLevel(level.upper())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def fast_parts() -> tuple[str, str]:
    """uvicorn's HTTP parser and event loop for the sidecar: httptools and uvloop where they
    are installed (``pip install 'retry-transport[proxy]'`` brings both), else h11 and
    asyncio."""
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return http, loop


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_config(app: Starlette, settings: ProxySettings) -> uvicorn.Config:
    """The uvicorn configuration the sidecar runs with (its own logging, no access log)."""
    http, loop = fast_parts()
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http,
        loop=loop,
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        access_log=False,  # it would log query strings, where some providers put keys
        server_header=False,
        date_header=False,
        proxy_headers=False,
        ws="none",
        timeout_graceful_shutdown=settings.grace,
    )


def serve(settings: ProxySettings) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight responses finish (up to
    ``settings.grace`` seconds); the exit status: 0 after a shutdown, 1 if it never started."""
    _configure_logging(settings.log_level)
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s port %d: %s", settings.host, settings.port, exc)  # noqa: TRY400
        return 1
    app = build_app(settings)
    server = uvicorn.Server(server_config(app, settings))
    url = _url(sock)
    for spec in settings.upstreams:
        logger.info(
            "listening on %s%s/ -> %s", url, "" if spec.name is None else f"/{spec.name}", spec.url
        )
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
    # place, that re-raise does nothing and the process exits 0 after a graceful shutdown.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else 1
