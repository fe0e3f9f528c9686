"""The floor: a bare pass-through on the sidecar's server stack, with no retry logic.

    python -m benchmarks._floor --upstream URL [--port 0]

A minimal ASGI app on uvicorn (the parser and event loop the sidecar picks) that forwards each
request with one pooled `httpx.AsyncClient` and streams the answer back. No routing, no
limiter, no logging, no disconnect watch: what any Python reverse proxy on this stack pays.
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

_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})
_REQUEST_HOP = _HOP | {b"host", b"content-length"}


def _app(upstream: str) -> Callable[..., Awaitable[None]]:
    client: httpx.AsyncClient | None = None

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        nonlocal client
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    client = httpx.AsyncClient(base_url=upstream, timeout=60.0)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    assert client is not None
                    await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert client is not None
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k not in _REQUEST_HOP]
        request = client.build_request(
            scope["method"], scope["raw_path"].decode("latin-1"), headers=headers, content=body
        )
        response = await client.send(request, stream=True)
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

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    loop = fast_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        _app(args.upstream),
        http="h11",
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
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/ (h11, {loop})", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
