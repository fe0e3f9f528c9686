"""The CPU of the sidecar's streamed path in one process: its forwarder and retry transport,
the upstream pool a canned answer, no network, no server.

    .venv/bin/python -m benchmarks.sidecar_stream [--events 4] [--requests 5000] [--runs 5]
        [--baseline REF] [--json] [--profile]

Each request goes through `Forwarder.__call__` as the sidecar's server calls it (a body all in,
a `ClientLink`), its `RetryTransport` on the fast path, and back out through the ASGI ``send``
(a list append): everything the sidecar does for a streamed request but parse and write HTTP
and talk to the upstream. The pool answers the canned OpenAI chat completions stream of
`retry_transport.testing.upstream` (a role chunk, ``--events`` content chunks, a finish chunk,
``data: [DONE]``), one chunk per event as the real upstream's arrive; ``--json`` measures a
non-streamed answer instead. Reported: CPU µs per request (process time over ``--requests``),
for ``--runs`` runs, and their minimum, the least noisy figure on a shared machine.
``--baseline REF`` also runs the code as it was at git ``REF`` (in a tree of its own), the runs
interleaved; ``--profile`` prints where the time goes (cProfile) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from ._common import REPO, baseline_tree

__all__ = ["main"]

_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"stream":true}'
_JSON = b'{"id":"x","object":"chat.completion","choices":[{"message":{"content":"hello"}}]}'
_SSE_HEADERS = [
    (b"Content-Type", b"content-type", b"text/event-stream; charset=utf-8"),
    (b"Transfer-Encoding", b"transfer-encoding", b"chunked"),
    (b"x-request-id", b"x-request-id", b"req_0123456789"),
]
_JSON_HEADERS = [
    (b"Content-Type", b"content-type", b"application/json"),
    (b"Content-Length", b"content-length", str(len(_JSON)).encode()),
    (b"x-request-id", b"x-request-id", b"req_0123456789"),
]


def _events(count: int) -> list[bytes]:
    from retry_transport.testing.upstream import openai_chat

    chunks = openai_chat("hello", stream=True).chunks
    assert isinstance(chunks, tuple)
    events = [chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in chunks]
    return events[:1] + events[1:2] * count + events[2:]


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(0)  # a chunk comes from the network: a turn of the loop
            yield chunk

    async def aclose(self) -> None:
        pass


class _Canned(httpx.AsyncBaseTransport):
    def __init__(self, events: list[bytes] | None) -> None:
        self._events = events

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = httpx.Headers()
        if self._events is None:
            headers._list = list(_JSON_HEADERS)
            body = _Body([_JSON])
        else:
            headers._list = list(_SSE_HEADERS)
            body = _Body(self._events)
        return httpx.Response(
            200,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": b"OK"},
        )


class _Link:
    on_disconnect = None

    def body_complete(self) -> bool:
        return True


async def _measure(
    events: list[bytes] | None, requests: int, profile: cProfile.Profile | None
) -> float:
    from retry_transport import SharedLimiter
    from retry_transport.proxy import forwarding
    from retry_transport.proxy.cli import add_arguments, settings_from_args
    from retry_transport.proxy.metrics import Metrics

    canned = _Canned(events)
    forwarding.make_pool = lambda: canned  # type: ignore[assignment]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--upstream", "http://127.0.0.1:9"]))
    (spec,) = settings.upstreams
    forwarder = forwarding.Forwarder(
        spec, settings, Metrics([spec.label]).upstream(spec.label), b"rt"
    )
    forwarder.start(SharedLimiter())
    sent: list[object] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": _BODY, "more_body": False}

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1:8787"),
                (b"content-type", b"application/json"),
                (b"authorization", b"Bearer sk-x"),
                (b"content-length", str(len(_BODY)).encode()),
            ],
            "extensions": {forwarding.LINK: {"link": _Link()}},
        }

    for _ in range(300):  # warm up, and past the limiter gate's first short runs
        await forwarder(scope(), receive, send)
        sent.clear()
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for _ in range(requests):
        await forwarder(scope(), receive, send)
        sent.clear()
    spent = time.process_time() - started
    if profile is not None:
        profile.disable()
    return spent / requests * 1e6


def _loop() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the proxy extra
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _one_run(args: argparse.Namespace) -> float:
    events = None if args.json else _events(args.events)
    with asyncio.Runner(loop_factory=_loop()) as runner:
        return runner.run(_measure(events, args.requests, None))


def _child(args: argparse.Namespace, tree: Path | None) -> float:
    """One run in a child process (of the code in ``tree``, else this checkout's)."""
    path = [str(tree)] if tree is not None else []
    code = (
        f"import sys; sys.path[:0] = {path!r}; from benchmarks.sidecar_stream import main; main()"
    )
    argv = [sys.executable, "-c", code, "--child"]
    argv += ["--events", str(args.events), "--requests", str(args.requests)]
    if args.json:
        argv.append("--json")
    done = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO)
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1, help="content chunks in the stream")
    parser.add_argument("--requests", type=int, default=5000, help="requests per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (each in a process of its own)")
    parser.add_argument("--baseline", default=None, metavar="REF", help="also run git REF's code")
    parser.add_argument("--json", action="store_true", help="a non-streamed answer instead")
    parser.add_argument("--profile", action="store_true", help="print a cProfile instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(_one_run(args))
        return 0
    if args.profile:
        profile = cProfile.Profile()
        events = None if args.json else _events(args.events)
        with asyncio.Runner(loop_factory=_loop()) as runner:
            runner.run(_measure(events, args.requests, profile))
        pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        return 0
    kind = "non-streamed" if args.json else f"streamed, {args.events + 3} events"
    with tempfile.TemporaryDirectory() as scratch:
        trees: dict[str, Path | None] = {"this tree": None}
        if args.baseline:
            trees[args.baseline] = baseline_tree(args.baseline, Path(scratch))
        figures: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                figures[name].append(_child(args, tree))
    for name, runs in figures.items():
        shown = " ".join(f"{value:.1f}" for value in runs)
        print(f"{name}: {kind}, CPU µs per request: {shown}; min {min(runs):.1f}")
    print(json.dumps({name: min(runs) for name, runs in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
