"""The sidecar's own side of a request, in one process: its server protocol, screen, dispatch,
forwarder and retry transport, with the upstream pool replaced by a canned answer.

    .venv/bin/python -m benchmarks.sidecar_server [--requests 20000] [--profile N] [--floor]

Each request's bytes are fed to the sidecar's protocol (as uvicorn builds it from
`serving.server_config`) over an in-memory transport, on the event loop the sidecar picks; the
forwarder's pool answers every request with the same canned chat completion at once. What is
left is the CPU the sidecar spends per request beyond the sockets and the upstream client:
reported as µs of process CPU per request (best of ``--repeat`` runs). ``--floor`` measures
the same way a bare pass-through app on uvicorn's stock httptools protocol (what
`benchmarks._floor` serves, its pool replaced by the same canned answer). ``--profile N``
prints cProfile's top ``N`` functions by own time instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from retry_transport.proxy import forwarding
from retry_transport.proxy.app import build_app
from retry_transport.proxy.cli import add_arguments, settings_from_args
from retry_transport.proxy.serving import fast_loop, server_config

__all__ = ["main"]

_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}'
_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8000\r\naccept: */*\r\n"
    b"accept-encoding: gzip, deflate\r\nconnection: keep-alive\r\nuser-agent: python-httpx/0.28\r\n"
    b"authorization: Bearer sk-x\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)
_ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,'
    b'"total_tokens":11}}'
)
_ANSWER_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_ANSWER)).encode()),
    (b"x-request-id", b"req-1"),
    (b"openai-processing-ms", b"1"),
    (b"date", b"Wed, 02 Dec 2026 05:00:00 GMT"),
]


class _Canned(httpx.AsyncBaseTransport):
    """An upstream pool answering every request with the same chat completion."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=list(_ANSWER_HEADERS), stream=httpx.ByteStream(_ANSWER))


class _Wire(asyncio.Transport):
    """A client connection in memory: counts the response bytes and wakes the driver once a
    whole response (its head and ``len(_ANSWER)`` body bytes) is in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self.buffer = b""
        self.done: asyncio.Future[None] = loop.create_future()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 50000)
        if name == "sockname":
            return ("127.0.0.1", 8000)
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += bytes(data)
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if sep and len(body) >= len(_ANSWER) and not self.done.done():
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(self.buffer[:500].decode(errors="replace"))
            self.done.set_result(None)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def _floor_app() -> Callable[..., Awaitable[None]]:
    """`benchmarks._floor`'s pass-through, its client replaced by the canned answer."""
    hop = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"host"})

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        _ = [(k, v) for k, v in scope["headers"] if k not in hop]
        out = [(k, v) for k, v in _ANSWER_HEADERS if k.lower() not in hop]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": _ANSWER, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _drive(protocol: asyncio.Protocol, wire: _Wire, requests: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(requests):
        wire.buffer = b""
        wire.done = loop.create_future()
        protocol.data_received(_REQUEST)
        await wire.done
        await asyncio.sleep(0)  # let the request's task end, as between two client requests


async def _session(
    floor: bool, server_only: bool, requests: int, repeat: int, profile: int
) -> list[float]:
    loop = asyncio.get_running_loop()
    protocol: asyncio.Protocol
    if floor:
        config = uvicorn.Config(
            _floor_app(), http="httptools", lifespan="off", log_config=None, access_log=False
        )
        config.load()
        protocol = HttpToolsProtocol(config, ServerState(), {}, _loop=loop)
        lifespan = None
    else:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        settings = settings_from_args(parser.parse_args(["--upstream", "http://127.0.0.1:9"]))
        forwarding.make_pool = _Canned  # type: ignore[assignment]
        if server_only:
            bare = _floor_app()

            async def answer(self: object, scope: Scope, receive: Any, send: Any) -> None:
                await bare(scope, receive, send)

            forwarding.Forwarder.__call__ = answer  # type: ignore[method-assign]
        app = build_app(settings)
        config = server_config(app, settings)
        config.load()
        lifespan = app.router.router.lifespan_context(app.router)
        await lifespan.__aenter__()
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
    wire = _Wire(loop)
    protocol.connection_made(wire)
    await _drive(protocol, wire, 500)  # warm up
    figures = []
    for _ in range(repeat):
        start = time.process_time()
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
        await _drive(protocol, wire, requests)
        if profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
        figures.append((time.process_time() - start) / requests * 1e6)
    protocol.connection_lost(None)
    if lifespan is not None:
        await lifespan.__aexit__(None, None, None)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--floor", action="store_true", help="the bare pass-through instead")
    parser.add_argument(
        "--server-only",
        action="store_true",
        help="the sidecar's server, screen and dispatch, each request answered as --floor does",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile's top N")
    args = parser.parse_args(argv)
    if fast_loop() == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    figures = runner(
        _session(args.floor, args.server_only, args.requests, args.repeat, args.profile)
    )
    label = "floor (uvicorn httptools, bare app)" if args.floor else "sidecar"
    if args.server_only and not args.floor:
        label = "sidecar's server, screen and dispatch (bare answer)"
    print(
        f"{label}: {min(figures):.1f} µs CPU per request (runs: "
        + ", ".join(f"{figure:.1f}" for figure in figures)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
