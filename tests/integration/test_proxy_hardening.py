"""The sidecar attacked from 127.0.0.1: escapes from the base path, odd request forms, loops,
forged log lines, header values at DEBUG, stalled and half-open connections, rough edges.

Requests that an HTTP client library would not send are written raw to a socket and the
answers read with h11, as a client would. Everything runs against the real sidecar (uvicorn in
a thread, or ``python -m retry_transport proxy`` as a process) and the scripted `Upstream`.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import h11
import httpx
import openai
import pytest
import redis

from retry_transport.__main__ import main
from retry_transport.proxy.screening import confine
from retry_transport.testing.upstream import Reply, Upstream, openai_chat

from ..proxy_helpers import Gate, Sidecar, SidecarProcess, settings_for

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

PROXY = [sys.executable, "-m", "retry_transport", "proxy"]


@dataclass
class Answer:
    """What the sidecar answered on a raw connection."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The sidecar closed the connection after answering."""

    def error(self) -> dict[str, str]:
        data = json.loads(self.body)
        assert data["type"] == "error", data
        return cast(dict[str, str], data["error"])


def read_answer(sock: socket.socket, *, method: bytes = b"GET") -> Answer:
    """Read one response from ``sock`` with an h11 client (the request is already sent)."""
    client = h11.Connection(h11.CLIENT)
    # Tell h11 which request the answer is for, without sending it again.
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    status, headers, body = 0, {}, b""
    sock.settimeout(10.0)
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {name.decode(): value.decode() for name, value in event.headers}
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            break
    closed = headers.get("connection") == "close" and _closed(sock)
    return Answer(status, headers, body, closed)


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closes ``sock`` (within 10 s)."""
    sock.settimeout(10.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw(port: int, data: bytes, *, method: bytes = b"GET") -> Answer:
    """Send ``data`` on a fresh connection and read the answer."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        return read_answer(sock, method=method)


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: sidecar\r\n\r\n".encode()


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [record for record in caplog.records if record.exc_info], [
        record.getMessage() for record in caplog.records if record.exc_info
    ]


def proxy_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "retry_transport.proxy"]


def eventually(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (polling a condition, never sleeping for a duration)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- 1. the base path is the boundary ---------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/team-a/v1/../../../_admin/log",
        "/team-a/../other/x",
        "/team-a/..",
        "/team-a/v1/..%2f..%2f..%2f_admin",
        "/team-a/v1/%2e%2e/%2e%2e/x",
        "/team-a/v1/%2E%2E%2F%2E%2E%2Fx",
        "/team-a/v1/.%2e/.%2e/x",
        "/team-a/v1/%252e%252e/%252e%252e/x",
        "/team-a/v1/..\\..\\x",
        "/team-a%2f..%2fother/x",
        "/team-a/%2e",
    ],
)
def test_a_path_that_leaves_the_mount_is_refused(
    target: str, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    with Sidecar("--upstream", f"team-a={upstream.url}/team-a") as sidecar:
        answer = raw(sidecar.port, get(target))
    assert answer.status == 400, answer
    assert answer.headers["x-should-retry"] == "false"
    assert answer.error()["type"] == "invalid_path"
    assert upstream.count() == 0
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("target", "sent"),
    [
        ("/team-a/v1/./models", "/team-a/v1/models"),
        ("/team-a/v1/x/../models", "/team-a/v1/models"),
        ("/team-a/v1/models/..", "/team-a/v1/"),
        ("/team-a/v1/models/a%2Fb", "/team-a/v1/models/a%2Fb"),
        ("/team-a/v1/a..b/...", "/team-a/v1/a..b/..."),
        ("/team-a", "/team-a"),
        ("/%74eam-a/v1/models", "/team-a/v1/models"),
    ],
)
def test_dot_segments_within_the_mount_are_resolved_there(
    target: str, sent: str, upstream: Upstream
) -> None:
    with Sidecar("--upstream", f"team-a={upstream.url}/team-a") as sidecar:
        answer = raw(sidecar.port, get(target))
    assert answer.status == 200
    assert [record.path for record in upstream.received()] == [sent]


def test_a_root_upstream_keeps_its_base_path_too(upstream: Upstream) -> None:
    with Sidecar("--upstream", f"{upstream.url}/s") as sidecar:
        escaped = raw(sidecar.port, get("/echo/../../other/x"))
        kept = raw(sidecar.port, get("/echo/../other/x"))
    assert escaped.status == 400
    assert kept.status == 200
    assert [record.path for record in upstream.received()] == ["/s/other/x"]


@pytest.mark.parametrize(
    ("path", "confined"),
    [
        (b"", b""),
        (b"/", b"/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/a/./b", b"/a/b"),
        (b"/a/..", b"/"),
        (b"/a//b", b"/a//b"),
        (b"/..", None),
        (b"/a/%2e", None),
        (b"/a/%25252525252e", None),  # still encoded after every decoding tried
    ],
)
def test_confine_resolves_or_refuses(path: bytes, confined: bytes | None) -> None:
    assert confine(path) == confined


# -- 2. odd request forms: a clear 4xx, one line, no traceback -------------------------------


def test_an_absolute_form_target_is_served_by_its_path(upstream: Upstream) -> None:
    with Sidecar("--upstream", f"{upstream.url}/s") as sidecar:
        answer = raw(sidecar.port, get("http://elsewhere.example:81/v1/models?limit=1"))
        upper = raw(sidecar.port, get("HTTPS://elsewhere.example"))
    assert (answer.status, upper.status) == (200, 200)
    first, second = upstream.received()
    assert first.path == "/s/v1/models?limit=1"
    assert first.header("host") == f"127.0.0.1:{upstream.port}"
    assert second.path == "/s/"


@pytest.mark.parametrize(
    ("request_bytes", "status", "method"),
    [
        (b"CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n", 405, b"CONNECT"),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"OPTIONS"),
        (b"GET v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"GET"),
        (b"GET ftp://x/v1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"GET"),
        (b"GET http:/x HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"GET"),
        (b"GET http://x#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"GET"),
        (
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
            b"POST",
        ),
    ],
    ids=["connect", "asterisk", "relative", "ftp-url", "bad-url", "fragment", "cl-and-te"],
)
def test_odd_request_forms_get_a_clear_4xx_one_line_and_no_traceback(
    request_bytes: bytes,
    status: int,
    method: bytes,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with Sidecar("--upstream", upstream.url) as sidecar:
        answer = raw(sidecar.port, request_bytes, method=method)
    assert answer.status == status
    assert answer.headers["x-should-retry"] == "false"
    assert answer.closed
    assert answer.error()["message"].startswith("retry_transport proxy: ")
    assert upstream.count() == 0
    refused = [line for line in proxy_lines(caplog) if "refused" in line]
    assert len(refused) == 1, proxy_lines(caplog)
    no_tracebacks(caplog)


# -- 3. loops -----------------------------------------------------------------------------------


def test_via_names_the_sidecar_both_ways(upstream: Upstream) -> None:
    upstream.script("/v1/models", Reply(200, b"{}", (("via", "1.1 upstream-gw"),)))
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        response = client.get(f"{sidecar.url}/v1/models", headers={"via": "1.1 corp-proxy"})
    (record,) = upstream.received()
    sent = [value for name, value in record.headers if name.lower() == "via"]
    assert sent[0] == "1.1 corp-proxy"
    assert sent[1].startswith("1.1 retry-transport-")
    assert response.headers.get_list("via") == ["1.1 upstream-gw", sent[1]]


def test_a_request_that_already_passed_through_this_sidecar_is_refused(
    upstream: Upstream,
) -> None:
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        client.get(f"{sidecar.url}/v1/models")
        (record,) = upstream.received()
        ours = record.header("via")
        assert ours is not None
        looped = client.get(f"{sidecar.url}/v1/models", headers={"via": f"1.0 other, {ours}"})
        other = client.get(f"{sidecar.url}/v1/models", headers={"via": "1.1 retry-transport-0"})
    assert looped.status_code == 508
    assert looped.headers["x-should-retry"] == "false"
    assert looped.json()["error"]["type"] == "loop_detected"
    assert other.status_code == 200
    assert upstream.count() == 2


def test_two_sidecars_pointing_at_each_other_answer_508_at_once() -> None:
    first_sock, second_sock = socket.socket(), socket.socket()
    first_sock.bind(("127.0.0.1", 0))
    second_sock.bind(("127.0.0.1", 0))
    first_url = f"http://127.0.0.1:{first_sock.getsockname()[1]}"
    second_url = f"http://127.0.0.1:{second_sock.getsockname()[1]}"
    with (
        Sidecar("--upstream", second_url, sock=first_sock) as first,
        Sidecar("--upstream", first_url, sock=second_sock),
        httpx.Client(timeout=10.0) as client,
    ):
        response = client.get(f"{first.url}/v1/models")
    assert response.status_code == 508
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "argv",
    [
        ["--upstream", "http://127.0.0.1:8787"],
        ["--upstream", "a=http://localhost:9000/v1", "--port", "9000"],
        ["--upstream", "http://[::1]:9000", "--port", "9000", "--host", "0.0.0.0"],
        ["--upstream", "http://127.0.0.1", "--port", "80"],
    ],
)
def test_an_upstream_at_the_listen_address_is_refused_at_start(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["proxy", *argv])
    assert exited.value.code == 2
    assert "this sidecar's own address" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--upstream", "http://127.0.0.1:9001", "--port", "9000"],
        ["--upstream", "http://10.1.2.3:9000", "--port", "9000"],
        ["--upstream", "http://api.example:9000", "--port", "9000"],
        ["--upstream", "http://127.0.0.1:8787", "--port", "0"],
    ],
)
def test_an_upstream_elsewhere_is_no_loop(argv: list[str]) -> None:
    assert settings_for(*argv).upstreams


# -- 4. log lines cannot be forged ---------------------------------------------------------------

FORGED = "/v1/x%0d%0a2026-01-01%20INFO%20retry_transport.proxy:%20forged%1b[31m%e2%80%a8"


def test_logged_paths_are_escaped_in_every_line(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # a plain success's summary line is logged at DEBUG
    path = FORGED
    gate = Gate([b"part;"], [b"rest"], timeout=10.0)
    upstream.script(path, Reply(200, body=b"ok"))  # the summary line
    upstream.script(path + "b", Reply(200, chunks=gate))  # the disconnect line
    upstream.script(path + "c", Reply(200, body=b"x" * 100_000, fault="drop_mid_body"))
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        assert client.get(sidecar.url + path).status_code == 200
        with client.stream("GET", sidecar.url + path + "b") as response:
            assert next(response.iter_raw()) == b"part;"
        eventually(lambda: any("client went away" in line for line in proxy_lines(caplog)))
        gate.open()
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(sidecar.url + path + "c")
        eventually(lambda: any("broke after" in line for line in proxy_lines(caplog)))
    lines = proxy_lines(caplog)
    assert sum("/v1/x%0d%0a" in line for line in lines) == 3, lines
    for line in lines:
        assert not any(char in line for char in "\r\n\x1b\u2028"), repr(line)


# -- 5. no header value at any log level ---------------------------------------------------------


def test_debug_logging_shows_no_header_values(upstream: Upstream, tmp_path: Path) -> None:
    upstream.script(
        "/v1/models",
        Reply(
            200,
            b"{}",
            (("set-cookie", "session=upstream-cookie-secret"), ("x-trace", "upstream-hdr-secret")),
        ),
    )
    log = tmp_path / "sidecar.log"
    with (
        SidecarProcess(log, "--upstream", upstream.url, "--log-level", "debug") as sidecar,
        httpx.Client() as client,
    ):
        response = client.get(
            f"{sidecar.url}/v1/models",
            headers={"authorization": "Bearer client-bearer-secret", "cookie": "c=client-cookie"},
        )
        assert response.headers["set-cookie"] == "session=upstream-cookie-secret"
        eventually(lambda: "GET /v1/models -> 200" in log.read_text())
    text = log.read_text()
    assert "DEBUG" in text  # debug logging was on
    for secret in ("upstream-cookie-secret", "upstream-hdr-secret", "client-bearer", "client-c"):
        assert secret not in text


# -- 6. a stream read to its terminal event is complete -------------------------------------------


# The retry transport watches a stream it held for its terminal event (the sidecar asks it);
# with --no-peek-sse the sidecar looks for the event itself, in every chunk it passes on.
WATCHED_OR_NOT = pytest.mark.parametrize("options", [(), ("--no-peek-sse",)])


@WATCHED_OR_NOT
def test_a_sync_openai_stream_closed_after_done_counts_as_a_200(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, options: tuple[str, ...]
) -> None:
    pytest.importorskip("prometheus_client")
    caplog.set_level(logging.DEBUG)  # a plain success's summary line is logged at DEBUG
    chunks = openai_chat("all of it", stream=True).chunks
    assert isinstance(chunks, tuple)
    gate = Gate(list(chunks), [b": the upstream's last bytes\n\n"], timeout=10.0)
    upstream.script(
        "/v1/chat/completions",
        Reply(200, headers=(("content-type", "text/event-stream"),), chunks=gate),
    )
    with Sidecar("--upstream", upstream.url, *options) as sidecar:
        with openai.OpenAI(
            base_url=f"{sidecar.url}/v1", api_key="sk-test", http_client=cast(Any, httpx.Client())
        ) as client:
            stream: Any = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
            stream.close()
        eventually(lambda: any("->" in line for line in proxy_lines(caplog)))
        with httpx.Client() as plain:
            metrics = plain.get(f"{sidecar.url}/_retry_transport/metrics").text
        gate.open()
    assert text == "all of it"
    lines = proxy_lines(caplog)
    assert any("POST /v1/chat/completions -> 200" in line for line in lines), lines
    assert not any("client went away" in line for line in lines), lines
    assert 'retry_transport_proxy_requests_total{code="200",upstream="/"} 1.0' in metrics
    assert "retry_transport_proxy_client_disconnects_total{" not in metrics


@WATCHED_OR_NOT
def test_a_stream_left_before_its_terminal_event_is_a_disconnect(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, options: tuple[str, ...]
) -> None:
    caplog.set_level(logging.INFO)
    chunks = openai_chat("cut short", stream=True).chunks
    assert isinstance(chunks, tuple)
    gate = Gate(list(chunks[:3]), list(chunks[3:]), timeout=10.0)
    upstream.script(
        "/v1/chat/completions",
        Reply(200, headers=(("content-type", "text/event-stream"),), chunks=gate),
    )
    with Sidecar("--upstream", upstream.url, *options) as sidecar, httpx.Client() as client:
        with client.stream("POST", f"{sidecar.url}/v1/chat/completions", json={}) as response:
            assert b"chat.completion.chunk" in next(response.iter_raw())
        eventually(lambda: any("client went away" in line for line in proxy_lines(caplog)))
        gate.open()


# -- 7. header and body timeouts, a cap on connections -------------------------------------------


def test_a_connection_that_sends_no_complete_headers_is_closed(upstream: Upstream) -> None:
    with Sidecar("--upstream", upstream.url, "--header-timeout", "0.2") as sidecar:
        with socket.create_connection(("127.0.0.1", sidecar.port)) as silent:
            assert _closed(silent)
        with socket.create_connection(("127.0.0.1", sidecar.port)) as trickle:
            trickle.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
            assert _closed(trickle)
        with socket.create_connection(("127.0.0.1", sidecar.port)) as kept:
            kept.sendall(get("/v1/models"))
            assert read_answer(kept).status == 200
            kept.sendall(b"GET /v1/models HTTP/1.1\r\n")  # the next request's headers stall
            assert _closed(kept)
    assert upstream.count() == 1


def test_the_header_timeout_does_not_cut_a_request_waiting_for_its_answer(
    upstream: Upstream,
) -> None:
    upstream.script("/slow", Reply(200, body=b"late", delay=0.6))
    with (
        Sidecar("--upstream", upstream.url, "--header-timeout", "0.2") as sidecar,
        httpx.Client() as client,
    ):
        assert client.get(f"{sidecar.url}/slow").text == "late"


@pytest.mark.parametrize("size", [10, 20000], ids=["within-the-replay-limit", "over-it"])
def test_a_stalled_request_body_is_answered_408_and_closed(
    size: int, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Within the replay limit the request's own task reads the body; past it, a task of its
    # own streams the body on.
    with (
        Sidecar(
            "--upstream", upstream.url, "--body-timeout", "0.2", "--replay-limit", "8k"
        ) as sidecar,
        socket.create_connection(("127.0.0.1", sidecar.port)) as sock,
    ):
        head = f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode() + b'{"a')
        answer = read_answer(sock, method=b"POST")
    assert answer.status == 408
    assert answer.closed
    assert answer.headers["x-should-retry"] == "false"
    assert upstream.count() == 0
    no_tracebacks(caplog)


def test_connections_past_the_cap_are_answered_503_and_closed(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    with Sidecar("--upstream", upstream.url, "--max-connections", "2") as sidecar:
        idle = [socket.create_connection(("127.0.0.1", sidecar.port)) for _ in range(2)]
        try:
            eventually(lambda: len(sidecar.connections()) == 2)
            for _ in range(2):  # the second within ten seconds: no second warning line
                with socket.create_connection(("127.0.0.1", sidecar.port)) as third:
                    answer = read_answer(third)
                assert answer.status == 503
                assert answer.closed
                assert answer.headers["retry-after"] == "1"
            warned = [line for line in proxy_lines(caplog) if "--max-connections" in line]
            assert len(warned) == 1, warned
        finally:
            idle.pop().close()
        eventually(lambda: len(sidecar.connections()) == 1)
        with httpx.Client() as client:
            assert client.get(f"{sidecar.url}/v1/models").status_code == 200
        for sock in idle:
            sock.close()


# -- 8. rough edges ------------------------------------------------------------------------------


def test_one_failed_attempt_is_a_502_naming_it() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with Sidecar("--upstream", dead, "--max-attempts", "1") as sidecar, httpx.Client() as client:
        response = client.get(f"{sidecar.url}/v1/models")
    assert response.status_code == 502
    assert "ConnectError" in response.json()["error"]["message"]
    assert "gave up" not in response.json()["error"]["message"]


def test_a_non_loopback_host_warns_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # held, so the sidecar cannot bind it
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*PROXY, "--upstream", "http://127.0.0.1:9", "--host", "0.0.0.0", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "not a loopback address" in done.stderr


@pytest.mark.parametrize(
    ("upstream_arg", "message"),
    [
        ("https://api.exa mple.com", "neither a host name nor an IP address"),
        ("https://api_.example.com/v1 x", "must not hold spaces"),
        ("https://-bad.example", "neither a host name"),
        ("https://a..example", "neither a host name"),
    ],
)
def test_an_invalid_upstream_host_is_refused_at_start(
    upstream_arg: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--upstream", upstream_arg])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_redis_password_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("from-the-file\n")
    url = ("--redis", "redis://127.0.0.1:6379/0")
    assert settings_for("--upstream", "https://a.example", *url).redis_password is None
    from_file = settings_for(
        "--upstream", "https://a.example", *url, "--redis-password-file", str(secret)
    )
    assert from_file.redis_password == "from-the-file"
    assert "from-the-file" not in repr(from_file)


def test_the_redis_password_file_must_be_readable_and_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for argv, message in (
        (["--redis-password-file", str(empty)], "needs --redis"),
        (["--redis", "redis://h", "--redis-password-file", str(empty)], "is empty"),
        (["--redis", "redis://h", "--redis-password-file", str(tmp_path / "no")], "cannot read"),
    ):
        with pytest.raises(SystemExit):
            main(["proxy", "--upstream", "https://a.example", *argv])
        assert message in capsys.readouterr().err


def test_redis_without_the_redis_package_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
    with pytest.raises(SystemExit):
        main(["proxy", "--upstream", "https://a.example", "--redis", "redis://h"])
    assert "pip install 'retry-transport[redis]'" in capsys.readouterr().err


@pytest.mark.redis
def test_redis_is_checked_at_start(
    own_redis_server: RedisServer, upstream: Upstream, tmp_path: Path
) -> None:
    admin = redis.Redis(port=own_redis_server.port)
    admin.config_set("requirepass", "fleet-secret")
    admin.close()
    shared = ("--upstream", upstream.url, "--redis", own_redis_server.url)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it")
    done = subprocess.run(
        [*PROXY, *shared, "--redis-password-file", str(wrong)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot use Redis at redis://127.0.0.1:" in done.stderr
    assert "not-it" not in done.stderr
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"redis://:pw-in-url@127.0.0.1:{closed.getsockname()[1]}/0"
    done = subprocess.run([*PROXY, *shared[:2], "--redis", dead], capture_output=True, text=True)
    assert done.returncode == 1
    assert "ConnectionError" in done.stderr
    assert "pw-in-url" not in done.stderr
    env = {"RETRY_TRANSPORT_REDIS_PASSWORD": "fleet-secret"}
    with (
        SidecarProcess(tmp_path / "log", *shared, env=env) as sidecar,
        httpx.Client() as client,
    ):
        assert client.get(f"{sidecar.url}/v1/models").status_code == 200


@pytest.mark.redis
def test_the_health_endpoint_shows_the_fleets_block(
    redis_server: RedisServer, upstream: Upstream
) -> None:
    upstream.script(
        "/v1/messages", Reply.json(429, {"error": "slow"}, headers=(("retry-after", "30"),))
    )
    shared = ("--upstream", upstream.url, "--redis", redis_server.url, "--max-attempts", "1")
    with Sidecar(*shared) as first, Sidecar(*shared) as second, httpx.Client() as client:
        assert client.post(f"{first.url}/v1/messages").status_code == 429
        health = client.get(f"{second.url}/_retry_transport/healthz").json()
    assert health["upstreams"]["/"]["blocked_for"] > 20.0
    assert upstream.count() == 1
