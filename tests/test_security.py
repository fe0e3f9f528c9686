"""No secret reaches a log record, a history entry, a hook's event or an exception we touch;
a hostile upstream cannot make the transport wait or retry without bound.

The secret-planting runs go through a real client to the loopback `Upstream`, so every code
path that logs (a scheduled retry, a give-up, a plain answer, a broken hook, a deadline) runs
with credentials in every place a request or a response can carry them. Records are captured
by a log-record factory, so a record is seen whatever its logger, level, handlers or
propagation. httpx and httpcore log too (the request URL with its query at INFO, the response
head at DEBUG): those records are theirs, outside the transport's control, and are not
checked; every record created by code in the retry_transport package is.

Memory bounds against a hostile upstream (8 MiB bodies, 1 MiB headers, 10 MiB lines) live in
tests/integration/test_faults.py; the property-based wait and attempt bounds are below.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retry_transport
from retry_transport import (
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport.testing.upstream import Reply, Upstream

from .transport_helpers import FLAVOURS, Sleeps, lib

USER = "user-s3cr3t-name"
PASSWORD = "pw-s3cr3t-0001"
SECRETS = {
    "authorization": "Bearer sk-s3cr3t-auth-0002",
    "x-api-key": "sk-ant-s3cr3t-0003",
    "api-key": "azure-s3cr3t-0004",
    "proxy-authorization": "Basic cHJveHktczNjcjN0LTAwMDU=",
    "cookie": "session=s3cr3t-cookie-0006; other=s3cr3t-cookie-0007",
}
QUERY_KEY = "AIza-s3cr3t-query-0008"
BODY_SECRET = "s3cr3t-request-body-0009"
UPSTREAM_SECRET = "s3cr3t-upstream-0010"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
# Every secret holds "s3cr3t"; the base64 forms are the ones on the wire (Basic credentials
# built from the URL's user info, and the proxy credentials).
NEEDLES = ["s3cr3t", BASIC, SECRETS["proxy-authorization"].split()[1]]
PACKAGE = Path(retry_transport.__file__).parent

# The upstream's answers carry secrets of their own: in the error body and in headers.
LEAKY_HEADERS = (
    ("x-request-secret", UPSTREAM_SECRET),
    ("set-cookie", f"upstream={UPSTREAM_SECRET}"),
    ("www-authenticate", f'Bearer realm="{UPSTREAM_SECRET}"'),
)


def leaky(status: int, message: str) -> Reply:
    return Reply.json(
        status, {"error": {"message": f"{message}, key {UPSTREAM_SECRET}"}}, LEAKY_HEADERS
    )


LEAKY_STREAM_ERROR = Reply(
    200,
    headers=(("content-type", "text/event-stream"), *LEAKY_HEADERS),
    chunks=[
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"'
        + UPSTREAM_SECRET.encode()
        + b'"}}\n\n'
    ],
)


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every log record created while the test runs, at every level, from every logger."""
    created: list[logging.LogRecord] = []
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        created.append(record)
        return record

    caplog.set_level(1)  # the root logger: every level enabled
    ours = logging.getLogger("retry_transport")
    level, ours.level = ours.level, logging.NOTSET
    logging.setLogRecordFactory(factory)
    try:
        yield created
    finally:
        logging.setLogRecordFactory(previous)
        ours.level = level


def secret_url(up: Upstream, path: str, *, userinfo: bool = False) -> str:
    """The upstream URL with keys in the query; with user info, httpx sends those as Basic
    credentials in place of the Authorization header."""
    host = up.url.removeprefix("http://")
    if userinfo:
        host = f"{USER}:{PASSWORD}@{host}"
    return f"http://{host}{path}?key={QUERY_KEY}&api_key={QUERY_KEY}"


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write of ``record``: message, args, formatted text with any
    traceback, and every ``extra`` field."""
    texts = [str(record.msg), repr(record.args), record.getMessage()]
    texts.append(logging.Formatter("%(name)s %(levelname)s %(message)s").format(record))
    texts.extend(f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD)
    return texts


def ours(record: logging.LogRecord) -> bool:
    """Created by code in the retry_transport package (whatever logger it used)."""
    name = record.name
    return (
        name == "retry_transport"
        or name.startswith("retry_transport.")
        or Path(record.pathname).is_relative_to(PACKAGE)
    )


def assert_no_secret_in_our_records(created: list[logging.LogRecord]) -> list[logging.LogRecord]:
    mine = [record for record in created if ours(record)]
    for record in mine:
        for text in record_texts(record):
            assert not leaks(text), (record.name, record.levelname, text)
    return mine


def assert_no_secret_in(*objects: object) -> None:
    for obj in objects:
        assert not leaks(repr(obj)), obj
        assert not leaks(str(obj)), obj


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), *getattr(exc, "__notes__", [])]


class Broken:
    """A hook that raises (its failure is logged with a traceback)."""

    def __call__(self, event: RetryEvent) -> None:
        raise RuntimeError("hook failed")

    def __repr__(self) -> str:
        return "Broken()"


# (path, with user info in the URL): each secret-bearing header goes out in some run.
RUNS = [("/v1/retried", False), ("/v1/retried-again", True), ("/v1/fatal", False)]
RUNS += [("/v1/stream", True)]


def script_full_run(up: Upstream) -> None:
    for path in ("/v1/retried", "/v1/retried-again"):
        up.script(path, leaky(503, "busy"), leaky(429, "slow down"), leaky(529, "overloaded"))
    up.script("/v1/fatal", leaky(401, "invalid api key"))
    up.script("/v1/dropped", Reply(fault="drop"))
    up.script("/v1/stream", LEAKY_STREAM_ERROR)


def check_full_run(
    created: list[logging.LogRecord],
    events: list[RetryEvent],
    histories: list[object],
    errors: list[BaseException],
) -> None:
    mine = assert_no_secret_in_our_records(created)
    levels = {record.levelno for record in mine}
    # Not vacuous: retries (INFO), give-ups (WARNING), the broken hook (ERROR with a
    # traceback) and a plain answer (DEBUG) were all logged.
    assert {logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR} <= levels
    assert any(record.exc_info for record in mine)
    assert {event.kind for event in events} == {"retry", "give_up"}
    for event in events:
        assert_no_secret_in(event, event.log_extra())
    assert_no_secret_in(*histories)
    assert len(errors) == 2
    for error in errors:
        for text in exception_texts(error):
            assert not leaks(text), text
    # Our own loggers logged something in each run, so the runs really went through us.
    assert len([record for record in mine if record.levelno == logging.WARNING]) >= 4


@pytest.mark.anyio
async def test_no_secret_reaches_logs_history_events_or_exceptions(
    flavour: str, upstream: Upstream, records: list[logging.LogRecord]
) -> None:
    script_full_run(upstream)
    events: list[RetryEvent] = []
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(),
        policy=RetryPolicy(max_attempts=3, deadline=30.0),
        limiter=limiter,
        sleep=sleeps,
        clock=sleeps.clock,
        hooks=[events.append, Broken()],
    )
    histories: list[object] = []
    errors: list[BaseException] = []
    async with lib(flavour).AsyncClient(transport=transport, headers=SECRETS) as client:
        for path, userinfo in RUNS:
            url = secret_url(upstream, path, userinfo=userinfo)
            response = await client.post(url, json={"prompt": BODY_SECRET})
            assert UPSTREAM_SECRET in response.text  # handed back unchanged, to the caller only
            histories.append(response.extensions["retry_history"])
        url = secret_url(upstream, "/v1/dropped", userinfo=True)
        with pytest.raises(lib(flavour).RemoteProtocolError) as dropped:
            await client.post(url, content=BODY_SECRET)
        errors.append(dropped.value)
        await limiter.block(3600.0)  # nothing can be sent before the deadline
        with pytest.raises(retry_transport.DeadlineExceeded) as deadline:
            await client.get(secret_url(upstream, "/v1/never"))
        errors.append(deadline.value)
    assert "gave up after 3 attempts" in " ".join(dropped.value.__notes__)
    check_full_run(records, events, histories, errors)


def test_no_secret_reaches_logs_history_events_or_exceptions_sync(
    flavour: str, upstream: Upstream, records: list[logging.LogRecord]
) -> None:
    script_full_run(upstream)
    events: list[RetryEvent] = []
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    transport = SyncRetryTransport(
        lib(flavour).HTTPTransport(),
        policy=RetryPolicy(max_attempts=3, deadline=30.0),
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        hooks=[events.append, Broken()],
    )
    histories: list[object] = []
    errors: list[BaseException] = []
    with lib(flavour).Client(transport=transport, headers=SECRETS) as client:
        for path, userinfo in RUNS:
            url = secret_url(upstream, path, userinfo=userinfo)
            response = client.post(url, json={"prompt": BODY_SECRET})
            histories.append(response.extensions["retry_history"])
        with pytest.raises(lib(flavour).RemoteProtocolError) as dropped:
            client.post(secret_url(upstream, "/v1/dropped", userinfo=True), content=BODY_SECRET)
        errors.append(dropped.value)
        limiter.block_sync(3600.0)
        with pytest.raises(retry_transport.DeadlineExceeded) as deadline:
            client.get(secret_url(upstream, "/v1/never"))
        errors.append(deadline.value)
    check_full_run(records, events, histories, errors)


def test_the_secrets_really_were_sent(upstream: Upstream) -> None:
    # The planting itself works: the upstream received every secret, so the tests above
    # would see them if the transport logged requests.
    upstream.script("/v1/x", Reply())
    with httpx.Client(transport=SyncRetryTransport(httpx.HTTPTransport())) as client:
        for userinfo in (False, True):
            url = secret_url(upstream, "/v1/x", userinfo=userinfo)
            client.post(url, headers=SECRETS, content=BODY_SECRET)
    plain, with_userinfo = upstream.received("/v1/x")
    assert {name: dict(plain.headers)[name] for name in SECRETS} == SECRETS
    assert dict(with_userinfo.headers)["authorization"] == f"Basic {BASIC}"
    assert QUERY_KEY in plain.path
    assert plain.content == BODY_SECRET.encode()


def test_the_check_catches_a_transport_that_logs_the_request(
    upstream: Upstream, records: list[logging.LogRecord]
) -> None:
    # The detector itself works: a record like the one a careless transport would write is
    # caught, from our logger or from any module of the package.
    request = httpx.Request("POST", secret_url(upstream, "/v1/x"), headers=SECRETS)
    logging.getLogger("retry_transport").info("retrying %s", request.url)
    logging.getLogger("retry_transport").warning("headers", extra={"h": dict(request.headers)})
    careless = [record for record in records if record.msg in ("retrying %s", "headers")]
    assert len(careless) == 2
    for record in careless:
        with pytest.raises(AssertionError):
            assert_no_secret_in_our_records([record])


# -- a hostile upstream cannot make us wait or retry without bound -------------------------------

HOSTILE_HEADER_NAMES = ["retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-should-retry"]
hostile_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "0",
            "-1",
            "1e308",
            "9" * 20,
            "nan",
            "inf",
            "true",
            "TRUE ",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "59.999",
            "60.001",
        ]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
hostile_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b'{"error": {"message": "try again in 999999999999h"}}',
            b'{"error": {"retry_after": 999999999999}}',
            b'{"retryDelay": "999999999999s"}',
            b"please retry after 1h1h1h1h1h1h1h1h1h1h seconds",
        ]
    ),
)
hostile_replies = st.tuples(
    st.sampled_from([400, 408, 409, 429, 500, 502, 503, 504, 529]),
    st.dictionaries(st.sampled_from(HOSTILE_HEADER_NAMES), hostile_values, max_size=4),
    hostile_bodies,
)


def ascii_header(value: str) -> str:
    # httpx.Response refuses non-ASCII header values (non-ASCII ones arrive over the wire in
    # the Retry-After table of tests/integration/test_faults.py).
    return "".join(c for c in value if 32 <= ord(c) < 127).strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replies=st.lists(hostile_replies, min_size=1, max_size=8),
    policy=st.builds(
        RetryPolicy,
        max_attempts=st.integers(1, 6),
        max_retry_after=st.floats(0.0, 120.0),
        deadline=st.none() | st.floats(0.5, 300.0),
        unclassified_400_attempts=st.integers(1, 6),
    ),
)
def test_a_hostile_upstream_cannot_make_us_wait_or_retry_without_bound(
    replies: list[tuple[int, dict[str, str], bytes]], policy: RetryPolicy
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, body = replies[min(len(seen), len(replies) - 1)]
        seen.append(request)
        values = {name: ascii_header(value) for name, value in headers.items()}
        return httpx.Response(status, headers=values, content=body)

    sleeps = Sleeps()
    start = sleeps.clock.now
    transport = SyncRetryTransport(
        httpx.MockTransport(handler),
        policy=policy,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        limiter=SharedLimiter(budget=None, clock=sleeps.clock),
    )
    with httpx.Client(transport=transport) as client:
        response = client.post("http://up.test/v1/x", content=b"{}")
    assert 1 <= len(seen) <= policy.max_attempts
    assert len(response.extensions["retry_history"]) == len(seen)
    # A server-named wait is at most max_retry_after, a backoff at most its cap (60 s); a wait
    # for the shared block adds a release jitter of at most a second.
    ceiling = max(policy.max_retry_after, 60.0) + 1.0
    assert all(0.0 <= wait <= ceiling and math.isfinite(wait) for wait in sleeps.waits)
    if policy.deadline is not None:
        assert sleeps.clock.now - start <= policy.deadline + 1e-6


@pytest.mark.anyio
async def test_an_upstream_that_always_says_retry_now_gets_max_attempts() -> None:
    pushy = Reply(503, headers=(("x-should-retry", "true"), ("retry-after", "0")))
    with Upstream() as up:
        up.script("/v1/x", pushy)
        sleeps = Sleeps()
        transport = RetryTransport(
            httpx.AsyncHTTPTransport(),
            policy=RetryPolicy(max_attempts=4),
            sleep=sleeps,
            clock=sleeps.clock,
        )
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.fail_after(5):
                response = await client.get(up.url + "/v1/x")
        assert response.status_code == 503
        assert up.count("/v1/x") == 4
        assert sleeps.waits == [0.0, 0.0, 0.0]


def test_a_logged_url_carries_no_raw_control_character() -> None:
    from retry_transport._common import safe_url

    url = httpx.URL("http://up.example/v1/a%0d%0aFORGED%09line%7f?key=secret")
    logged = safe_url(url)
    assert logged == "http://up.example/v1/a%0D%0AFORGED%09line%7F"
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in logged)
