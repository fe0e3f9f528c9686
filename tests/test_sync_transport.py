"""SyncRetryTransport over scripted inner transports, for httpx and httpx2.

The mirror of `test_async_transport.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from retry_transport import (
    Attempt,
    DeadlineExceeded,
    RetryPolicy,
    RetryTransportError,
    SharedLimiter,
    SyncRetryTransport,
    Verdict,
)
from retry_transport.testing import no_waiting

from .transport_helpers import FLAVOURS, R, Script, Sleeps, exc, lib


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(
    flavour: str,
    script: Script,
    policy: RetryPolicy | None = None,
    sleeps: Sleeps | None = None,
    **kw: object,
) -> tuple[SyncRetryTransport, Sleeps]:
    sleeps = sleeps or Sleeps()
    transport = SyncRetryTransport(
        script.mock(),
        policy=policy,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
        **kw,  # type: ignore[arg-type]
    )
    return transport, sleeps


def test_transport_is_of_the_wrapped_flavour(flavour: str) -> None:
    transport, _ = make(flavour, Script(flavour, [R(200)]))
    module = lib(flavour)
    other = lib("httpx2" if flavour == "httpx" else "httpx")
    assert isinstance(transport, SyncRetryTransport)
    assert isinstance(transport, module.BaseTransport)
    assert not isinstance(transport, other.BaseTransport)
    # By identity: SDKs rename the base classes' __module__ on import (groq, together, openai).
    assert (lib("httpx").BaseTransport in type(transport).__mro__) == (flavour == "httpx")


def test_default_transport_is_httpx() -> None:
    import httpx

    with SyncRetryTransport() as transport:
        assert isinstance(transport.transport, httpx.HTTPTransport)


def test_success_is_returned_untouched(flavour: str) -> None:
    script = Script(flavour, [R(200, "hello")])
    transport, sleeps = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", json={"a": 1})
    assert response.text == "hello"
    assert script.count == 1
    assert sleeps.waits == []


def test_503_then_200_is_retried_and_recovers(flavour: str) -> None:
    script = Script(flavour, [R(503, "busy"), R(200, "ok")])
    transport, sleeps = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", json={"a": 1})
    assert response.status_code == 200
    assert response.text == "ok"
    assert script.count == 2
    assert sleeps.waits == [1.0]
    history = response.extensions["retry_history"]
    assert [(a.status, a.verdict) for a in history] == [
        (503, Verdict.CONGESTION),
        (200, None),
    ]
    assert all(isinstance(a, Attempt) for a in history)
    assert "x-should-retry" not in response.headers


def test_replayed_post_sends_the_same_body_each_time(flavour: str) -> None:
    script = Script(flavour, [R(502), R(502), R(200)])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        client.post("http://up.test/v1/x", json={"prompt": "hi"})
    assert [r.content for r in script.seen] == [b'{"prompt":"hi"}'] * 3


def test_exhaustion_returns_the_last_response_unchanged_plus_give_up_header(
    flavour: str,
) -> None:
    script = Script(flavour, [R(503, f'{{"error": "busy {n}"}}') for n in range(1, 6)])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", content=b"x")
    assert script.count == 5
    assert response.status_code == 503
    assert response.json() == {"error": "busy 5"}
    assert response.headers["x-should-retry"] == "false"
    assert len(response.extensions["retry_history"]) == 5


def test_fatal_response_carries_the_give_up_header(flavour: str) -> None:
    script = Script(flavour, [R(401, "bad key")])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert script.count == 1
    assert response.text == "bad key"
    assert response.headers["x-should-retry"] == "false"


def test_upstream_x_should_retry_is_kept(flavour: str) -> None:
    script = Script(flavour, [R(409, "", (("x-should-retry", "true"),)), R(409, "no")])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=2))
    with lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert script.count == 2
    assert response.headers["x-should-retry"] == "false"  # the second 409 had none


def test_give_up_header_can_be_switched_off(flavour: str) -> None:
    script = Script(flavour, [R(404)])
    transport, _ = make(flavour, script, RetryPolicy(give_up_header=False))
    with lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert "x-should-retry" not in response.headers


def test_error_body_larger_than_the_peek_reaches_the_caller_whole(flavour: str) -> None:
    body = bytes(range(256)) * 1000
    script = Script(flavour, [R(404, body)])
    transport, _ = make(flavour, script, RetryPolicy(peek_limit=1024))
    with lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert response.content == body


def test_streamed_final_error_after_peek_is_of_the_client_flavour(flavour: str) -> None:
    script = Script(flavour, [R(500, "boom")])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=2))
    with (
        lib(flavour).Client(transport=transport) as client,
        client.stream("GET", "http://up.test/") as response,
    ):
        assert isinstance(response.stream, lib(flavour).SyncByteStream)
        assert b"".join(response.iter_bytes()) == b"boom"


def test_connect_errors_are_retried_then_the_last_is_re_raised(flavour: str) -> None:
    connect_error = exc(flavour, "ConnectError")
    script = Script(flavour, [connect_error])
    transport, sleeps = make(flavour, script, RetryPolicy(max_attempts=3))
    with (
        lib(flavour).Client(transport=transport) as client,
        pytest.raises(connect_error) as raised,
    ):
        client.post("http://up.test/", content=b"x")
    assert script.count == 3
    assert sleeps.waits == [0.25, 0.5]
    assert any("gave up after 3 attempts" in note for note in raised.value.__notes__)


def test_read_timeout_on_post_is_raised_without_retry(flavour: str) -> None:
    read_timeout = exc(flavour, "ReadTimeout")
    script = Script(flavour, [read_timeout, R(200)])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client, pytest.raises(read_timeout):
        client.post("http://up.test/", content=b"x")
    assert script.count == 1


def test_read_timeout_on_post_with_idempotency_key_is_retried(flavour: str) -> None:
    script = Script(flavour, [exc(flavour, "ReadTimeout"), R(200)])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/", content=b"x", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200
    assert script.count == 2


def test_a_429_blocks_the_shared_limiter_for_its_retry_after(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    script = Script(flavour, [R(429, "", (("retry-after", "7"),))])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=1), sleeps, limiter=limiter)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/", content=b"x")
    assert response.status_code == 429
    assert limiter.blocked_for() == 7.0


def test_a_transient_400_does_not_block_the_limiter(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    body = (
        '{"status":400,"title":"Bad Request",'
        '"detail":"Function id \'x\': DEGRADED function cannot be invoked"}'
    )
    script = Script(flavour, [R(400, body), R(200)])
    transport, _ = make(flavour, script, None, sleeps, limiter=limiter)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/", content=b"x")
    assert response.status_code == 200
    assert script.count == 2
    assert limiter.blocked_for() == 0.0


def test_deadline_error_is_ours_and_the_flavours_pool_timeout(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    limiter.block_sync(50.0)
    script = Script(flavour, [R(200)])
    transport, _ = make(flavour, script, RetryPolicy(deadline=10.0), sleeps, limiter=limiter)
    with (
        lib(flavour).Client(transport=transport) as client,
        pytest.raises(DeadlineExceeded) as raised,
    ):
        client.get("http://up.test/")
    assert isinstance(raised.value, RetryTransportError)
    assert isinstance(raised.value, lib(flavour).PoolTimeout)
    assert script.count == 0


def test_testing_switch_makes_waits_zero(flavour: str) -> None:
    script = Script(flavour, [R(503), R(503), R(200)])
    transport, sleeps = make(flavour, script)
    with no_waiting(), lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert response.status_code == 200
    assert sleeps.waits == []


def test_context_manager_closes_the_wrapped_transport(flavour: str) -> None:
    closed: list[bool] = []
    module = lib(flavour)

    class Inner(module.BaseTransport):  # type: ignore[name-defined,misc]
        def close(self) -> None:
            closed.append(True)

    with SyncRetryTransport(Inner()):
        pass
    assert closed == [True]


@pytest.mark.parametrize("body", [[b"a", b"bc"], (b"a", b"bc")])
def test_a_list_or_tuple_body_is_replayed(flavour: str, body: list[bytes] | tuple[bytes]) -> None:
    script = Script(flavour, [R(500), R(200, "ok")])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", content=body)
    assert response.text == "ok"
    assert [r.read() for r in script.seen] == [b"abc", b"abc"]


def test_a_generator_body_is_still_not_replayed(flavour: str) -> None:
    script = Script(flavour, [R(500), R(200, "ok")])
    transport, _ = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", content=iter([b"a", b"bc"]))
    assert response.status_code == 500
    assert response.headers["x-should-retry"] == "false"
    assert script.count == 1


@pytest.mark.parametrize("name", ["retry-after", "retry-after-ms"])
def test_a_503_asking_for_a_30_digit_wait_is_handed_back_at_once(flavour: str, name: str) -> None:
    script = Script(flavour, [R(503, "later", ((name, "9" * 30),)), R(200)])
    transport, sleeps = make(flavour, script)
    with lib(flavour).Client(transport=transport) as client:
        response = client.get("http://up.test/")
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert script.count == 1
    assert sleeps.waits == []


def test_a_held_stream_closed_from_another_thread_while_read_closes_its_body(
    flavour: str,
) -> None:
    module = lib(flavour)
    reading, released = threading.Event(), threading.Event()
    closed: list[bool] = []

    class Body(module.SyncByteStream):  # type: ignore[name-defined,misc]
        def __iter__(self) -> Iterator[bytes]:
            yield b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
            reading.set()
            released.wait(10)  # the close below lets it go at once; 10 s only if it never comes

        def close(self) -> None:
            closed.append(True)
            released.set()

    def handler(request: Any) -> Any:
        headers = {"content-type": "text/event-stream"}
        return module.Response(200, headers=headers, stream=Body())

    transport = SyncRetryTransport(module.MockTransport(handler))
    errors: list[BaseException] = []
    with module.Client(transport=transport) as client:
        request = client.build_request("POST", "http://up.test/v1/x", content=b"{}")
        response = client.send(request, stream=True)

        def read() -> None:
            try:
                for _ in response.iter_raw():
                    pass
            except Exception as exc:
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert reading.wait(10)
        response.close()  # from this thread, while the reader is inside the body
        reader.join(10)
    assert not reader.is_alive()
    assert closed == [True]
