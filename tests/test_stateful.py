"""The list of POST paths that create server-side state, and how a path is matched to it."""

from __future__ import annotations

import httpx
import pytest

from retry_transport import RetryPolicy
from retry_transport._machine import Finish, Report
from retry_transport._stateful import STATEFUL_PATHS, is_stateful
from tests.machine_helpers import response, run_machine, sse


@pytest.mark.parametrize(
    "path",
    [
        "/v1/agents/sessions",
        "/v1/agents/sessions/",
        "/v1/threads",
        "/v1/threads/runs",
        "/v1/threads/thread_abc/runs",
        "/v1/threads/thread_abc/messages",
        "/v1/threads/thread_abc/runs/run_1/submit_tool_outputs",
        "/v1/files",
        "/v1/uploads/upload_1/parts",
        "/v1/batches",
        "/v1/fine_tuning/jobs",
        "/v1/vector_stores/vs_1/file_batches",
        "/openai/deployments/gpt/assistants",
        "/team-a/v1/files",
        "/v1/messages/batches",
        "/upload/v1beta/files",
        "/v1beta/cachedContents",
        "/v1beta/tunedModels",
        "/v1beta/models/gemini-2.5-pro:batchGenerateContent",
        "/v1/projects/p/locations/us/batchPredictionJobs",
    ],
)
def test_paths_that_create_state_are_recognised(path: str) -> None:
    assert is_stateful(path)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/agents/completions",
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        "/v1/profiles",
        "/v1/threadsafe",
        "/",
        "",
    ],
)
def test_inference_and_unlisted_paths_are_not(path: str) -> None:
    assert not is_stateful(path)


def test_a_policy_extends_the_list() -> None:
    assert not is_stateful("/api/v2/jobs")
    assert is_stateful("/api/v2/jobs", ("jobs",))
    assert is_stateful("/api/v2/team/x/exports", ("/team/*/exports/",))
    assert not is_stateful("/api/v2/team/x/y/exports", ("team/*/exports",))


def test_patterns_are_plain_segment_paths() -> None:
    for pattern in STATEFUL_PATHS:
        assert pattern == pattern.strip("/")
        assert "//" not in pattern


# -- the machine: a POST to such a path is re-sent only where it provably did nothing ---------

SESSIONS = "/v1/agents/sessions"


def test_a_503_to_a_stateful_path_is_not_resent() -> None:
    run = run_machine([response(503), response(200)], path=SESSIONS)
    assert run.sends == 1
    assert isinstance(run.end, Finish)
    assert run.end.response.status_code == 503
    reports = [a for a in run.actions if isinstance(a, Report) and a.event is not None]
    assert [r.event.reason for r in reports if r.event is not None] == [
        "POST to a path that creates server-side state (no Idempotency-Key)"
    ]


def test_a_stream_error_on_a_stateful_path_is_not_resent() -> None:
    overloaded = 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}'
    run = run_machine([sse(overloaded), sse('data: {"choices":[]}')], path="/v1/threads/runs")
    assert run.sends == 1


def test_a_429_to_a_stateful_path_is_resent() -> None:
    run = run_machine([response(429), response(200)], path=SESSIONS)
    assert run.sends == 2


def test_an_overload_naming_its_wait_is_resent() -> None:
    run = run_machine([response(503, headers={"retry-after": "1"}), response(200)], path=SESSIONS)
    assert run.sends == 2


def test_a_connect_error_is_resent() -> None:
    run = run_machine([httpx.ConnectError("refused"), response(200)], path=SESSIONS)
    assert run.sends == 2


def test_an_idempotency_key_allows_a_resend() -> None:
    run = run_machine([response(503), response(200)], path=SESSIONS, idempotency_key=True)
    assert run.sends == 2


def test_inference_paths_stay_retried_by_default() -> None:
    run = run_machine([response(503), response(200)], path="/v1/chat/completions")
    assert run.sends == 2


def test_a_policy_path_is_treated_like_the_built_in_ones() -> None:
    policy = RetryPolicy(stateful_paths=("exports",))
    assert run_machine([response(503), response(200)], policy, path="/v2/exports").sends == 1
    assert run_machine([response(503), response(200)], path="/v2/exports").sends == 2
