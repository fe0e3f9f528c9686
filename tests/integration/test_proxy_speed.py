"""The sidecar's serving choices for speed: several worker processes on one port, uvloop where
it is installed, and no per-request log line at INFO for a request that needed no retry.

(How fast it is, is measured by ``benchmarks/sidecar.py``, not here.)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from retry_transport.proxy.forwarding import Forwarder
from retry_transport.proxy.metrics import Metrics
from retry_transport.proxy.serving import fast_loop
from retry_transport.testing.upstream import Reply, Upstream

from ..proxy_helpers import Sidecar, SidecarProcess, settings_for


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_workers_share_the_port_and_answer_every_request(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SidecarProcess(
        tmp_path / "sidecar.log", "--upstream", upstream.url, "--workers", "2"
    ) as sidecar:
        workers = _children(sidecar.pid)
        assert len(workers) == 2, sidecar.log()
        statuses = []
        for index in range(20):
            # A new connection each time, so that either worker may take it.
            with httpx.Client(headers={"connection": "close"}) as client:
                response = client.post(f"{sidecar.url}/v1/x", content=str(index).encode())
            statuses.append(response.status_code)
        assert statuses == [200] * 20
        bodies = sorted(int(seen.content) for seen in upstream.received("/v1/x"))
        assert bodies == list(range(20))
        assert "2 workers serving" in sidecar.log()
        sidecar.terminate()
        assert sidecar.wait(30) == 0, sidecar.log()
    for pid in workers:  # every worker has exited (and was reaped) before the parent
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_a_worker_that_dies_stops_the_sidecar_with_status_1(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SidecarProcess(
        tmp_path / "sidecar.log", "--upstream", upstream.url, "--workers", "2"
    ) as sidecar:
        sidecar.wait_for("2 workers serving")  # said once both are forked
        first, second = _children(sidecar.pid)
        os.kill(first, signal.SIGKILL)
        assert sidecar.wait(30) == 1, sidecar.log()
        assert f"worker {first} exited" in sidecar.log()
    assert not Path(f"/proc/{second}").exists()


def test_the_event_loop_is_uvloop_where_it_is_installed() -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    assert fast_loop() == expected


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_the_sidecar_serves_on_uvloop(upstream: Upstream, tmp_path: Path) -> None:
    upstream.script("/v1/x", Reply(503, b"busy"), Reply(200, b"done"))
    with SidecarProcess(
        tmp_path / "sidecar.log", "--upstream", upstream.url, "--congestion-base", "0.01"
    ) as sidecar:
        response = httpx.post(f"{sidecar.url}/v1/x", content=b"{}")
        assert (response.status_code, response.content) == (200, b"done")


def test_a_plain_success_is_logged_at_debug_a_retried_one_at_info(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "retry_transport")
    upstream.script("/once", Reply(200, b"ok"))
    upstream.script("/twice", Reply(503, b"busy"), Reply(200, b"ok"))
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        assert client.get(f"{sidecar.url}/once").status_code == 200
        assert client.get(f"{sidecar.url}/twice").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "retry_transport.proxy"]
    assert not any("GET /once ->" in line for line in lines), lines
    assert any("GET /twice -> 200, 2 attempts" in line for line in lines), lines


def test_at_debug_every_request_has_its_line(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "retry_transport.proxy")
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        assert client.get(f"{sidecar.url}/once").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "retry_transport.proxy"]
    assert any("GET /once -> 200, 1 attempt," in line for line in lines), lines


def _forwarder(*argv: str) -> Forwarder:
    settings = settings_for(*argv)
    (spec,) = settings.upstreams
    return Forwarder(spec, settings, Metrics([spec.label]).upstream(spec.label), b"rt-test")


def _scope(raw_path: bytes, query: bytes = b"") -> dict[str, object]:
    return {"path": raw_path.decode(), "raw_path": raw_path, "query_string": query}


def test_upstream_urls_of_paths_without_a_query_are_parsed_once() -> None:
    forwarder = _forwarder("--upstream", "https://api.example/base")
    first = forwarder._target(_scope(b"/v1/messages"))
    assert str(first) == "https://api.example/base/v1/messages"
    assert forwarder._target(_scope(b"/v1/messages")) is first
    with_query = forwarder._target(_scope(b"/v1/messages", b"key=sk-1"))
    assert str(with_query) == "https://api.example/base/v1/messages?key=sk-1"
    assert forwarder._target(_scope(b"/v1/messages", b"key=sk-1")) is not with_query  # not kept


def test_the_parsed_urls_kept_are_bounded() -> None:
    forwarder = _forwarder("--upstream", "https://api.example")
    first = forwarder._target(_scope(b"/v1/0"))
    for index in range(1, 300):
        assert str(forwarder._target(_scope(f"/v1/{index}".encode()))).endswith(f"/v1/{index}")
    assert len(forwarder._urls) <= 256
    assert forwarder._target(_scope(b"/v1/0")) is not first  # dropped when the cache filled


def test_a_client_expecting_100_continue_gets_it_then_its_answer(upstream: Upstream) -> None:
    # The interim answer is written while the response's writes are gathered per loop turn.
    with (
        Sidecar("--upstream", upstream.url) as sidecar,
        socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as conn,
    ):
        conn.sendall(
            b"POST /v1/x HTTP/1.1\r\nhost: sidecar\r\ncontent-length: 5\r\n"
            b"expect: 100-continue\r\n\r\n"
        )
        interim = conn.recv(65536)
        conn.sendall(b"hello")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b'{"ok":true}'):
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert upstream.received("/v1/x")[0].content == b"hello"
