"""The forwarder's cancellation and body hand-over on their own, on asyncio as uvicorn serves
the sidecar: a client that leaves cancels the upstream call and nothing else, a cancellation
from elsewhere (the server's last resort) is passed on, and the request's task is left with no
cancellation counted against it.

The upstream is an `httpx.MockTransport` whose handler waits on events the test sets: no
network, no real sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any, cast

import httpx
import pytest

from retry_transport import RetryTransport
from retry_transport.proxy.app import build_app
from retry_transport.proxy.forwarding import LINK, Forwarder, _Exchange, _Pipe
from retry_transport.proxy.metrics import Metrics

from .proxy_helpers import FAST, settings_for

Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def _forwarder(handler: Handler) -> Forwarder:
    settings = settings_for("--upstream", "http://upstream.test", "--max-attempts", "1")
    (spec,) = settings.upstreams
    forwarder = Forwarder(spec, settings, Metrics([spec.label]).upstream(spec.label), b"rt-test")
    forwarder.transport = RetryTransport(httpx.MockTransport(handler), policy=settings.policy)
    return forwarder


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/v1/x",
        "raw_path": b"/v1/x",
        "query_string": b"",
        "headers": [(b"host", b"sidecar")],
    }


class _Client:
    """One request's ``receive`` and ``send``: an empty body at once, then a disconnect once
    `leave` is called."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.sent: list[MutableMapping[str, Any]] = []
        self._asked = False

    def leave(self) -> None:
        self.left.set()

    async def receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)


def _hanging(started: asyncio.Event, cancelled: asyncio.Event) -> Handler:
    """A handler that sets ``started``, never answers, and sets ``cancelled`` when cancelled."""

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("never answered")  # pragma: no cover - waits until cancelled

    return handler


def test_a_client_that_leaves_cancels_the_upstream_call_and_only_that() -> None:
    async def main() -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()
        handler = _hanging(started, cancelled)
        client = _Client()
        task = asyncio.create_task(_forwarder(handler)(_scope(), client.receive, client.send))
        await started.wait()
        client.leave()
        await task  # ends normally: the cancellation was the forwarder's own
        assert cancelled.is_set()
        assert task.cancelling() == 0
        assert client.sent == []

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_is_passed_on() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("never answered")  # pragma: no cover - waits until cancelled

        client = _Client()
        task = asyncio.create_task(_forwarder(handler)(_scope(), client.receive, client.send))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.sent == []

    asyncio.run(main())


class _Swallowing(httpx.AsyncBaseTransport):
    """A transport that answers 200 when it is cancelled: a library below that swallows the
    cancellation (the retry transport itself lets it through)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return httpx.Response(200, content=b"late")
        raise AssertionError("never answered")  # pragma: no cover - waits until cancelled


def test_a_cancellation_swallowed_upstream_is_not_left_counted() -> None:
    async def main() -> None:
        forwarder = _forwarder(_never)
        swallowing = _Swallowing()
        forwarder.transport = cast(RetryTransport, swallowing)
        client = _Client()
        task = asyncio.create_task(forwarder(_scope(), client.receive, client.send))
        await swallowing.started.wait()
        client.leave()
        await task
        assert task.cancelling() == 0
        assert client.sent[0]["status"] == 200

    asyncio.run(main())


async def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError("not called")  # pragma: no cover - replaced before any request


def test_an_exchange_cancels_its_task_once_and_only_while_it_forwards() -> None:
    async def main() -> None:
        async def forwarding() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(forwarding())
        exchange = _Exchange()
        exchange.cancel(task)
        assert task.cancelling() == 0
        exchange.cancellable = True
        exchange.cancel(task)
        exchange.cancel(task)
        assert task.cancelling() == 1
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_delivered_exchange_takes_back_only_its_own_cancellation() -> None:
    async def main() -> None:
        async def forwarding() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(forwarding())
        exchange = _Exchange()
        task.cancel()  # someone else's: it stays counted
        exchange.delivered(task)
        assert task.cancelling() == 1
        exchange.cancellable = True
        exchange.cancel(task)
        assert task.cancelling() == 2
        exchange.delivered(task)
        assert task.cancelling() == 1
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_body_no_longer_wanted_is_taken_at_once_and_ends() -> None:
    async def main() -> None:
        pipe = _Pipe()
        chunks = pipe.chunks()

        async def take() -> bytes:
            return await anext(chunks)

        reader = asyncio.create_task(take())
        await pipe.put(b"first")  # returns once taken
        assert await reader == b"first"
        pipe.close()
        await pipe.put(b"ignored")  # at once: nobody reads it
        pipe.put_last(b"ignored too")
        assert [chunk async for chunk in chunks] == []

    asyncio.run(main())


@pytest.mark.parametrize(
    ("raw_path", "headers", "message"),
    [
        (b"http://elsewhere.example#frag", [(b"host", b"x")], "no valid path"),
        (
            b"/v1/x",
            [(b"host", b"x"), (b"content-length", b"4"), (b"transfer-encoding", b"chunked")],
            "both Content-Length and Transfer-Encoding",
        ),
    ],
    ids=["url-without-path", "cl-and-te"],
)
def test_the_app_refuses_what_a_laxer_server_would_let_through(
    raw_path: bytes, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    # The sidecar's own server refuses these before the app sees them; under another ASGI
    # server, the app's screen still does.
    app = build_app(settings_for("--upstream", "http://upstream.test"))
    client = _Client()
    scope = {**_scope(), "raw_path": raw_path, "path": raw_path.decode(), "headers": headers}
    asyncio.run(app(scope, client.receive, client.send))
    start, body = client.sent
    assert start["status"] == 400
    assert (b"connection", b"close") in start["headers"]
    assert message in json.loads(body["body"])["error"]["message"]


def test_a_path_httpx_will_not_take_is_refused_before_the_upstream() -> None:
    client = _Client()
    scope = {**_scope(), "raw_path": b"/v1/a\x7fb", "path": "/v1/a\x7fb"}
    asyncio.run(_forwarder(_never)(scope, client.receive, client.send))
    start, body = client.sent
    assert start["status"] == 400
    error = json.loads(body["body"])["error"]
    assert error["type"] == "invalid_path"
    assert "not a valid URL path" in error["message"]


def test_a_body_in_several_messages_an_empty_one_among_them_is_sent_whole() -> None:
    async def main() -> None:
        seen: list[tuple[bytes, str | None]] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append((await request.aread(), request.headers.get("content-length")))
            return httpx.Response(200, content=b"ok")

        messages = [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ]
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await left.wait()
            return {"type": "http.disconnect"}  # pragma: no cover - the answer ends first

        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {**_scope(), "method": "POST"}
        await _forwarder(handler)(scope, receive, send)
        assert seen == [(b"abcd", "4")]
        assert sent[0]["status"] == 200

    asyncio.run(main())


class _Link:
    """A request's connection as the sidecar's server hands it on (`ClientLink`)."""

    def __init__(self, complete: bool = True) -> None:
        self.complete = complete
        self.on_disconnect: Callable[[], None] | None = None

    def body_complete(self) -> bool:
        return self.complete

    def lose(self) -> None:
        callback = self.on_disconnect
        assert callback is not None, "nobody is watching"
        callback()


def _linked(link: _Link, **changes: Any) -> dict[str, Any]:
    return {**_scope(), "extensions": {LINK: {"link": link}}, **changes}


def test_with_a_link_a_body_all_in_is_read_once_by_the_request_itself() -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append(await request.aread())
            return httpx.Response(200, content=b"ok")

        asked: list[int] = []

        async def receive() -> dict[str, Any]:
            asked.append(1)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        client = _Client()
        link = _Link()
        await _forwarder(handler)(_linked(link, method="POST"), receive, client.send)
        assert seen == [b"{}"]
        assert asked == [1]  # no watcher asked for the disconnect
        assert client.sent[0]["status"] == 200
        assert link.on_disconnect is None  # no longer watched

    asyncio.run(main())


def test_with_a_link_a_client_that_leaves_cancels_the_upstream_call() -> None:
    async def main() -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()
        handler = _hanging(started, cancelled)
        client = _Client()
        link = _Link()
        task = asyncio.create_task(_forwarder(handler)(_linked(link), client.receive, client.send))
        await started.wait()
        link.lose()
        await task
        assert cancelled.is_set()
        assert task.cancelling() == 0
        assert client.sent == []

    asyncio.run(main())


def test_with_a_link_a_client_gone_before_its_request_started_is_not_forwarded() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    client = _Client()
    link = _Link()
    asyncio.run(_forwarder(_never)(_linked(link), receive, client.send))
    assert client.sent == []
    assert link.on_disconnect is None


class _Uploader:
    """One request's ``receive`` and ``send``: ``bodies`` as its messages, then a disconnect
    once the answer is complete."""

    def __init__(self, *bodies: bytes) -> None:
        self._bodies = list(bodies)
        self._answered = asyncio.Event()
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self._bodies:
            await self._answered.wait()
            return {"type": "http.disconnect"}
        body = self._bodies.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self._bodies)}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._answered.set()


@pytest.mark.parametrize("linked", [True, False], ids=["linked", "watched"])
@pytest.mark.parametrize(
    ("bodies", "declared"),
    [
        ((b"x" * 2000,), None),
        ((b"x" * 600, b"x" * 600, b"x" * 800), None),
        ((b"x" * 1000, b"x" * 1000), b"2000"),
    ],
    ids=["whole-in-one-message", "over-it-after-two-messages", "announced-over-it"],
)
def test_a_body_over_the_replay_limit_is_streamed_on_whole_and_sent_once(
    bodies: tuple[bytes, ...], declared: bytes | None, linked: bool
) -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append(await request.aread())
            return httpx.Response(503, content=b"busy")

        settings = settings_for("--upstream", "http://upstream.test", "--replay-limit", "1k", *FAST)
        (spec,) = settings.upstreams
        forwarder = Forwarder(spec, settings, Metrics([spec.label]).upstream(spec.label), b"rt")
        forwarder.transport = RetryTransport(httpx.MockTransport(handler), policy=settings.policy)
        headers = [(b"host", b"sidecar")]
        if declared is not None:
            headers.append((b"content-length", declared))
        scope = {**_scope(), "method": "POST", "headers": headers}
        if linked:
            scope = _linked(_Link(complete=len(bodies) == 1), **scope)
        client = _Uploader(*bodies)
        await forwarder(scope, client.receive, client.send)
        assert seen == [b"x" * 2000]  # sent once: it could not be sent again
        assert client.sent[0]["status"] == 503

    asyncio.run(main())


def test_with_a_link_a_client_leaving_once_its_answer_is_complete_changes_nothing() -> None:
    async def main() -> None:
        link = _Link()
        client = _Client()

        async def send(message: MutableMapping[str, Any]) -> None:
            await client.send(message)
            if not message.get("more_body", True):
                link.lose()  # the last byte is on its way: nothing to cancel

        scope = _linked(link, raw_path=b"/v1/a\x7fb", path="/v1/a\x7fb")  # refused: a 400
        task = asyncio.create_task(_forwarder(_never)(scope, client.receive, send))
        await task
        assert task.cancelling() == 0
        assert [message["type"] for message in client.sent] == [
            "http.response.start",
            "http.response.body",
        ]
        assert client.sent[0]["status"] == 400

    asyncio.run(main())


def test_a_client_that_leaves_while_its_body_is_piped_is_not_forwarded() -> None:
    async def main() -> None:
        left, waiting = asyncio.Event(), asyncio.Event()
        asked: list[int] = []

        async def receive() -> dict[str, Any]:
            asked.append(1)
            if len(asked) == 1:
                return {"type": "http.request", "body": b"part", "more_body": True}
            waiting.set()
            await left.wait()
            return {"type": "http.disconnect"}

        client = _Client()
        task = asyncio.create_task(_forwarder(_never)(_scope(), receive, client.send))
        await waiting.wait()  # the first part was taken; the rest is awaited
        left.set()
        await task
        assert task.cancelling() == 0
        assert client.sent == []

    asyncio.run(main())


@pytest.mark.parametrize(
    ("method", "expected"), [("POST", "0"), ("PUT", "0"), ("PATCH", "0"), ("GET", None)]
)
def test_a_bodiless_post_put_or_patch_is_sent_with_a_zero_length(
    method: str, expected: str | None
) -> None:
    async def main() -> None:
        seen: list[str | None] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("content-length"))
            return httpx.Response(200, content=b"ok")

        client = _Client()
        scope = {**_scope(), "method": method}  # no content-length, no body
        task = asyncio.create_task(_forwarder(handler)(scope, client.receive, client.send))
        await task
        assert seen == [expected]
        assert client.sent[0]["status"] == 200

    asyncio.run(main())
