"""RetryTransport (async) over scripted inner transports, for httpx and httpx2.

`test_sync_transport.py` mirrors this module for SyncRetryTransport.
"""

from __future__ import annotations

import pytest

from retry_transport import (
    Attempt,
    DeadlineExceeded,
    RetryPolicy,
    RetryTransport,
    RetryTransportError,
    SharedLimiter,
    Verdict,
)
from retry_transport.testing import no_waiting

from .transport_helpers import FLAVOURS, R, Script, Sleeps, exc, lib

pytestmark = pytest.mark.anyio


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(
    flavour: str,
    script: Script,
    policy: RetryPolicy | None = None,
    sleeps: Sleeps | None = None,
    **kw: object,
) -> tuple[RetryTransport, Sleeps]:
    sleeps = sleeps or Sleeps()
    transport = RetryTransport(
        script.mock(),
        policy=policy,
        sleep=sleeps,
        clock=sleeps.clock,
        random=lambda: 0.5,
        **kw,  # type: ignore[arg-type]
    )
    return transport, sleeps


async def test_transport_is_of_the_wrapped_flavour(flavour: str) -> None:
    transport, _ = make(flavour, Script(flavour, [R(200)]))
    module = lib(flavour)
    other = lib("httpx2" if flavour == "httpx" else "httpx")
    assert isinstance(transport, RetryTransport)
    assert isinstance(transport, module.AsyncBaseTransport)
    assert not isinstance(transport, other.AsyncBaseTransport)
    # By identity: SDKs rename the base classes' __module__ on import (groq, together, openai).
    assert (lib("httpx").AsyncBaseTransport in type(transport).__mro__) == (flavour == "httpx")


async def test_default_transport_is_httpx() -> None:
    import httpx

    async with RetryTransport() as transport:
        assert isinstance(transport.transport, httpx.AsyncHTTPTransport)


async def test_success_is_returned_untouched(flavour: str) -> None:
    script = Script(flavour, [R(200, "hello")])
    transport, sleeps = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/v1/x", json={"a": 1})
    assert response.text == "hello"
    assert script.count == 1
    assert sleeps.waits == []


async def test_503_then_200_is_retried_and_recovers(flavour: str) -> None:
    script = Script(flavour, [R(503, "busy"), R(200, "ok")])
    transport, sleeps = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/v1/x", json={"a": 1})
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


async def test_replayed_post_sends_the_same_body_each_time(flavour: str) -> None:
    script = Script(flavour, [R(502), R(502), R(200)])
    transport, _ = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        await client.post("http://up.test/v1/x", json={"prompt": "hi"})
    assert [r.content for r in script.seen] == [b'{"prompt":"hi"}'] * 3


async def test_exhaustion_returns_the_last_response_unchanged_plus_give_up_header(
    flavour: str,
) -> None:
    script = Script(flavour, [R(503, f'{{"error": "busy {n}"}}') for n in range(1, 6)])
    transport, _ = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/v1/x", content=b"x")
    assert script.count == 5
    assert response.status_code == 503
    assert response.json() == {"error": "busy 5"}
    assert response.headers["x-should-retry"] == "false"
    assert len(response.extensions["retry_history"]) == 5


async def test_fatal_response_carries_the_give_up_header(flavour: str) -> None:
    script = Script(flavour, [R(401, "bad key")])
    transport, _ = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.get("http://up.test/")
    assert script.count == 1
    assert response.text == "bad key"
    assert response.headers["x-should-retry"] == "false"


async def test_upstream_x_should_retry_is_kept(flavour: str) -> None:
    script = Script(flavour, [R(409, "", (("x-should-retry", "true"),)), R(409, "no")])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=2))
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.get("http://up.test/")
    assert script.count == 2
    assert response.headers["x-should-retry"] == "false"  # the second 409 had none


async def test_give_up_header_can_be_switched_off(flavour: str) -> None:
    script = Script(flavour, [R(404)])
    transport, _ = make(flavour, script, RetryPolicy(give_up_header=False))
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.get("http://up.test/")
    assert "x-should-retry" not in response.headers


async def test_error_body_larger_than_the_peek_reaches_the_caller_whole(flavour: str) -> None:
    body = bytes(range(256)) * 1000
    script = Script(flavour, [R(404, body)])
    transport, _ = make(flavour, script, RetryPolicy(peek_limit=1024))
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.get("http://up.test/")
    assert response.content == body


async def test_streamed_final_error_after_peek_is_of_the_client_flavour(flavour: str) -> None:
    script = Script(flavour, [R(500, "boom")])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=2))
    async with (
        lib(flavour).AsyncClient(transport=transport) as client,
        client.stream("GET", "http://up.test/") as response,
    ):
        assert isinstance(response.stream, lib(flavour).AsyncByteStream)
        assert b"".join([c async for c in response.aiter_bytes()]) == b"boom"


async def test_connect_errors_are_retried_then_the_last_is_re_raised(flavour: str) -> None:
    connect_error = exc(flavour, "ConnectError")
    script = Script(flavour, [connect_error])
    transport, sleeps = make(flavour, script, RetryPolicy(max_attempts=3))
    async with lib(flavour).AsyncClient(transport=transport) as client:
        with pytest.raises(connect_error) as raised:
            await client.post("http://up.test/", content=b"x")
    assert script.count == 3
    assert sleeps.waits == [0.25, 0.5]
    assert any("gave up after 3 attempts" in note for note in raised.value.__notes__)


async def test_read_timeout_on_post_is_raised_without_retry(flavour: str) -> None:
    read_timeout = exc(flavour, "ReadTimeout")
    script = Script(flavour, [read_timeout, R(200)])
    transport, _ = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        with pytest.raises(read_timeout):
            await client.post("http://up.test/", content=b"x")
    assert script.count == 1


async def test_read_timeout_on_post_with_idempotency_key_is_retried(flavour: str) -> None:
    script = Script(flavour, [exc(flavour, "ReadTimeout"), R(200)])
    transport, _ = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post(
            "http://up.test/", content=b"x", headers={"Idempotency-Key": "k1"}
        )
    assert response.status_code == 200
    assert script.count == 2


async def test_a_429_blocks_the_shared_limiter_for_its_retry_after(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    script = Script(flavour, [R(429, "", (("retry-after", "7"),))])
    transport, _ = make(flavour, script, RetryPolicy(max_attempts=1), sleeps, limiter=limiter)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/", content=b"x")
    assert response.status_code == 429
    assert limiter.blocked_for() == 7.0


async def test_a_transient_400_does_not_block_the_limiter(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    body = (
        '{"status":400,"title":"Bad Request",'
        '"detail":"Function id \'x\': DEGRADED function cannot be invoked"}'
    )
    script = Script(flavour, [R(400, body), R(200)])
    transport, _ = make(flavour, script, None, sleeps, limiter=limiter)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/", content=b"x")
    assert response.status_code == 200
    assert script.count == 2
    assert limiter.blocked_for() == 0.0


async def test_deadline_error_is_ours_and_the_flavours_pool_timeout(flavour: str) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    await limiter.block(50.0)
    script = Script(flavour, [R(200)])
    transport, _ = make(flavour, script, RetryPolicy(deadline=10.0), sleeps, limiter=limiter)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        with pytest.raises(DeadlineExceeded) as raised:
            await client.get("http://up.test/")
    assert isinstance(raised.value, RetryTransportError)
    assert isinstance(raised.value, lib(flavour).PoolTimeout)
    assert script.count == 0


async def test_testing_switch_makes_waits_zero(flavour: str) -> None:
    script = Script(flavour, [R(503), R(503), R(200)])
    transport, sleeps = make(flavour, script)
    with no_waiting():
        async with lib(flavour).AsyncClient(transport=transport) as client:
            response = await client.get("http://up.test/")
    assert response.status_code == 200
    assert sleeps.waits == []


async def test_context_manager_closes_the_wrapped_transport(flavour: str) -> None:
    closed: list[bool] = []
    module = lib(flavour)

    class Inner(module.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        async def aclose(self) -> None:
            closed.append(True)

    async with RetryTransport(Inner()):
        pass
    assert closed == [True]


@pytest.mark.parametrize("name", ["retry-after", "retry-after-ms"])
async def test_a_503_asking_for_a_30_digit_wait_is_handed_back_at_once(
    flavour: str, name: str
) -> None:
    script = Script(flavour, [R(503, "later", ((name, "9" * 30),)), R(200)])
    transport, sleeps = make(flavour, script)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.get("http://up.test/")
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert script.count == 1
    assert sleeps.waits == []
