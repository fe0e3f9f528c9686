"""The floor: a bare pass-through on the sidecar's server stack, with no retry logic.

    python -m benchmarks._floor --upstream URL [--port 0] [--client httpx|aiohttp|wire]
        [--http h11|httptools]

A minimal ASGI app on uvicorn (h11, or httptools as the sidecar uses, and the event loop the
sidecar picks) that forwards each request with one pooled client (an `httpx.AsyncClient`, an
`aiohttp.ClientSession`, or the sidecar's own pool, `retry_transport.proxy.wire`) and streams
the answer back. No routing,
no limiter, no logging, no disconnect watch: what any Python reverse proxy on this stack pays.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import uvicorn

from retry_transport.proxy.serving import fast_loop

__all__ = ["main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})
_REQUEST_HOP = _HOP | {b"host", b"content-length"}


def _app(upstream: str, kind: str) -> Callable[..., Awaitable[None]]:
    clients: list[Any] = []

    async def pass_on(response: httpx.Response, send: Send) -> None:
        """An httpx response sent on to the client as it comes, then closed."""
        try:
            out = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP]
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def forward_httpx(
        method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, send: Send
    ) -> None:
        client: httpx.AsyncClient = clients[0]
        request = client.build_request(method, target, headers=headers, content=body)
        response = await client.send(request, stream=True)
        await pass_on(response, send)

    async def forward_aiohttp(
        method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, send: Send
    ) -> None:
        import yarl

        session = clients[0]
        url = yarl.URL(upstream + target, encoded=True)
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        async with session.request(method, url, headers=pairs, data=body or None) as response:
            out = [(k, v) for k, v in response.raw_headers if k.lower() not in _HOP]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def forward_wire(
        method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, send: Send
    ) -> None:
        pool: httpx.AsyncBaseTransport = clients[0]
        url = httpx.URL(upstream + target)
        sized = [(b"Host", url.netloc), *headers]
        if body or method in ("POST", "PUT", "PATCH"):
            sized.append((b"Content-Length", str(len(body)).encode()))
        request = httpx.Request(method, url, headers=sized, content=body)
        response = await pool.handle_async_request(request)
        await pass_on(response, send)

    forward = {"aiohttp": forward_aiohttp, "wire": forward_wire}.get(kind, forward_httpx)

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Send,
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if kind == "aiohttp":
                        import aiohttp

                        clients.append(
                            aiohttp.ClientSession(
                                auto_decompress=False,
                                skip_auto_headers=(
                                    "Accept",
                                    "Accept-Encoding",
                                    "User-Agent",
                                    "Content-Type",
                                ),
                            )
                        )
                    elif kind == "wire":
                        from retry_transport.proxy.wire import WireTransport

                        clients.append(WireTransport())
                    else:
                        clients.append(httpx.AsyncClient(base_url=upstream, timeout=60.0))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await (clients[0].close() if kind == "aiohttp" else clients[0].aclose())
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k not in _REQUEST_HOP]
        await forward(scope["method"], scope["raw_path"].decode("latin-1"), headers, body, send)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client", choices=("httpx", "aiohttp", "wire"), default="httpx")
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11")
    args = parser.parse_args(argv)
    loop = fast_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        _app(args.upstream, args.client),
        http=args.http,
        loop=loop,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        ws="none",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}/ ({args.http}, {loop}, {args.client})", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
