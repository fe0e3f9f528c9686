"""The default classifier and its signature table: verdicts, near misses, robustness."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport import RetryPolicy
from retry_transport._classify import classify, error_text
from retry_transport._shape import judge_400
from retry_transport._signatures import (
    BARE_429_ATTEMPTS,
    RULES,
    STATUS_DEFAULTS,
    Above,
    Rule,
    rules_markdown,
)
from retry_transport._structured import READERS, Finding, Tier, named_wait, read
from retry_transport._verdict import Classification, Outcome, Verdict

from .machine_helpers import response, run_machine

URL = "https://upstream.invalid/v1/chat/completions"
NIM_DEGRADED = (
    '{"status":400,"title":"Bad Request","detail":"Function id '
    "'87ea0ddc-cff1-4bca-bf8b-3bd98a35ddd0': DEGRADED function cannot be invoked\"}"
)


def run(
    body: str | bytes = b"",
    status: int = 400,
    headers: dict[str, str] | None = None,
    *,
    stream: bool = False,
) -> Classification:
    data = body.encode() if isinstance(body, str) else body
    outcome = Outcome(
        "POST", URL, status=status, headers=headers or {}, body=data, stream_error=stream
    )
    return classify(outcome)


def nim(detail: str) -> str:
    return json.dumps({"status": 400, "title": "Bad Request", "detail": detail})


def openai_error(message: str, kind: str | None = None, code: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


# ---- allow signatures ----------------------------------------------------------------------


def test_nim_degraded_function_is_transient() -> None:
    assert run(NIM_DEGRADED) == Classification(Verdict.TRANSIENT, "rule nim-degraded")


def test_nim_degrading_is_not_degraded() -> None:
    assert run(nim("Function id 'x': DEGRADING function cannot be invoked")).verdict is (
        Verdict.UNRECOGNISED
    )


def test_nim_non_degraded_is_not_degraded() -> None:
    assert run(nim("Function id 'x': NON-DEGRADED function cannot be invoked")).verdict is (
        Verdict.UNRECOGNISED
    )


def test_nim_degraded_without_its_context_is_not_degraded() -> None:
    assert run(nim("Function id 'x' is DEGRADED")).verdict is Verdict.UNRECOGNISED


def test_nim_validation_failure_naming_degraded_is_fatal() -> None:
    result = run(nim("Validation failed: DEGRADED function cannot be invoked"))
    assert result == Classification(Verdict.FATAL, "rule validation")


def test_nim_degraded_wrapped_in_a_relay_invalid_request_error_is_transient() -> None:
    body = json.dumps(
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "Upstream: " + NIM_DEGRADED},
        }
    )
    assert run(body).verdict is Verdict.TRANSIENT


def test_invalid_request_sent_to_provider_is_transient() -> None:
    body = json.dumps({"error": {"message": "Invalid request sent to provider."}})
    assert run(body) == Classification(Verdict.TRANSIENT, "rule provider-invalid-request")


def test_openrouter_400_wrapping_an_inner_502_is_transient() -> None:
    raw = json.dumps({"error": {"code": 502, "message": "upstream connect error"}})
    body = json.dumps(
        {"error": {"message": "Provider returned error", "code": 400, "metadata": {"raw": raw}}}
    )
    # the inner message names a broken connection, which the connection-fault rule reads first
    assert run(body) == Classification(Verdict.TRANSIENT, "rule connection-fault")


def test_openrouter_400_wrapping_an_inner_502_bad_gateway_is_transient() -> None:
    raw = json.dumps({"error": {"code": 502, "message": "Bad gateway"}})
    body = json.dumps(
        {"error": {"message": "Provider returned error", "code": 400, "metadata": {"raw": raw}}}
    )
    assert run(body) == Classification(Verdict.TRANSIENT, "rule openrouter-inner-5xx")


def test_openrouter_400_wrapping_a_plain_text_503_is_transient() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "Provider returned error",
                "code": 400,
                "metadata": {"raw": "503 Service Unavailable", "provider_name": "X"},
            }
        }
    )
    assert run(body).verdict is Verdict.TRANSIENT


def test_openrouter_400_wrapping_an_inner_400_is_not_transient() -> None:
    raw = json.dumps({"error": {"code": 400, "message": "bad tool schema"}})
    body = json.dumps(
        {"error": {"message": "Provider returned error", "code": 400, "metadata": {"raw": raw}}}
    )
    assert run(body).verdict is Verdict.UNRECOGNISED


def test_cloudflare_gateway_2005_is_transient() -> None:
    body = (
        '{"success":false,"error":[{"code":2005,"message":"Failed to get response from provider"}]}'
    )
    assert run(body) == Classification(Verdict.TRANSIENT, "rule cloudflare-2005")


def test_relay_model_temporarily_unavailable_is_transient() -> None:
    body = openai_error("The model deepseek-v3 is temporarily unavailable, please retry")
    assert run(body).verdict is Verdict.TRANSIENT


def test_temporarily_unavailable_503_keeps_congestion() -> None:
    assert run("Service temporarily unavailable", status=503).verdict is Verdict.CONGESTION


def test_bedrock_400_throttling_header_is_congestion() -> None:
    headers = {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/"}
    result = run('{"message":"Too many tokens, please wait before trying again."}', 400, headers)
    assert result == Classification(Verdict.CONGESTION, "rule bedrock-throttling")


@pytest.mark.parametrize(
    "body",
    [
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        '{"error":{"code":503,"message":"The model is overloaded. Please try again later."}}',
        "server overloaded, please try again later",
    ],
)
def test_overloaded_400_is_congestion(body: str) -> None:
    assert run(body, status=400).verdict is Verdict.CONGESTION


@pytest.mark.parametrize("body", [b"", b"   \r\n"])
def test_bodyless_400_is_transient(body: bytes) -> None:
    assert run(body) == Classification(Verdict.TRANSIENT, "rule bodyless-400")


def test_bodyless_404_is_fatal() -> None:
    assert run(b"", status=404).verdict is Verdict.FATAL


def test_internal_error_500_is_transient() -> None:
    body = '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
    assert run(body, status=500).verdict is Verdict.TRANSIENT


# ---- deny signatures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (
            openai_error(
                "This model's maximum context length is 8192 tokens.",
                code="context_length_exceeded",
            ),
            "context-length",
        ),
        ("prompt is too long: 203284 tokens > 200000 maximum", "context-length"),
        (
            openai_error("The model `gpt-9` does not exist", code="model_not_found"),
            "model-not-found",
        ),
        (openai_error("Incorrect API key provided: sk-xxx.", code="invalid_api_key"), "auth"),
        (
            '{"type":"error","error":{"type":"authentication_error","message":"no key"}}',
            "auth",
        ),
        ('{"type":"error","error":{"type":"permission_error","message":"no"}}', "auth"),
        (openai_error("The response was filtered", code="content_filter"), "content-policy"),
        ("We could not parse the JSON body of your request.", "deserialization"),
        ("Failed to deserialize the JSON body into the target type", "deserialization"),
        (openai_error("Unknown parameter: 'foo'.", "invalid_request_error"), "invalid-request"),
        ("Request contains an invalid argument. INVALID_ARGUMENT", "validation"),
        (openai_error("You exceeded your current quota", "insufficient_quota"), "quota-exhausted"),
        ("Your credit balance is too low to access the Anthropic API.", "credit-exhausted"),
    ],
)
def test_deny_signature_is_fatal_on_a_400(body: str, rule: str) -> None:
    assert run(body) == Classification(Verdict.FATAL, f"rule {rule}")


@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_quota_exhausted_is_fatal_even_on_a_retryable_status(status: int) -> None:
    body = openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    )
    assert run(body, status=status).verdict is Verdict.FATAL


def test_context_length_on_a_500_is_fatal() -> None:
    body = (
        '{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}'
    )
    assert run(body, status=500).verdict is Verdict.FATAL


def test_billing_link_in_a_rate_limit_message_is_not_fatal() -> None:
    body = openai_error(
        "Rate limit reached for gpt-4 on requests per min. Limit: 3 / min. Please try again in "
        "20s. Visit https://platform.openai.com/account/billing to add a payment method.",
        "requests",
        "rate_limit_exceeded",
    )
    assert run(body, status=429) == Classification(Verdict.CONGESTION, "rule throttling", 20.0)


def test_check_quota_hint_is_not_fatal() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
    )
    assert run(body, status=429).verdict is Verdict.CONGESTION


def test_per_minute_request_quota_is_not_fatal() -> None:
    body = json.dumps(
        {
            "message": "Requests per minute limit exceeded",
            "type": "too_many_requests_error",
            "param": "quota",
            "code": "request_quota_exceeded",
        }
    )
    assert run(body, status=429).verdict is Verdict.CONGESTION


def test_gemini_per_day_quota_is_fatal() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"},
                ],
            }
        }
    )
    assert run(body, status=429) == Classification(
        Verdict.FATAL, "field quota GenerateRequestsPerDay (google-quota)", 38.0
    )


def test_too_many_tokens_on_a_400_is_fatal() -> None:
    assert run("too many tokens in the messages", status=400).verdict is Verdict.FATAL


def test_too_many_tokens_please_wait_on_a_429_is_congestion() -> None:
    assert run("Too many tokens, please wait before trying again.", 429).verdict is (
        Verdict.CONGESTION
    )


def test_request_larger_than_the_whole_limit_is_fatal() -> None:
    body = "Rate limit reached on tokens per minute (TPM): Limit 7000, Used 0, Requested ~12903."
    assert run(body, status=429).verdict is Verdict.FATAL


def test_request_within_the_limit_is_congestion() -> None:
    body = "Rate limit reached on tokens per minute (TPM): Limit 6000, Used 5914, Requested 1822."
    assert run(body, status=429).verdict is Verdict.CONGESTION


def test_invalid_request_error_naming_a_rate_limit_is_not_fatal() -> None:
    body = json.dumps(
        {
            "error": {
                "code": "rate_limit_error",
                "message": "slow down",
                "type": "invalid_request_error",
            }
        }
    )
    assert run(body, status=429).verdict is Verdict.CONGESTION


def test_deny_rule_inside_string_encoded_metadata_raw_is_found() -> None:
    raw = json.dumps({"error": {"message": "maximum context length is 8192 tokens"}})
    body = json.dumps(
        {"error": {"message": "Provider returned error", "code": 502, "metadata": {"raw": raw}}}
    )
    assert run(body, status=502).verdict is Verdict.FATAL


# ---- status defaults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (429, Verdict.CONGESTION),
        (500, Verdict.CONGESTION),
        (502, Verdict.CONGESTION),
        (503, Verdict.CONGESTION),
        (504, Verdict.CONGESTION),
        (529, Verdict.CONGESTION),
        (408, Verdict.TRANSIENT),
        (400, Verdict.UNRECOGNISED),
        (402, Verdict.FATAL),
        (401, Verdict.FATAL),
        (403, Verdict.FATAL),
        (404, Verdict.FATAL),
        (405, Verdict.FATAL),
        (409, Verdict.TRANSIENT),
        (424, Verdict.TRANSIENT),
        (498, Verdict.CONGESTION),
        (499, Verdict.TRANSIENT),
        (413, Verdict.FATAL),
        (422, Verdict.FATAL),
        (418, Verdict.FATAL),
        (501, Verdict.FATAL),
        (505, Verdict.FATAL),
    ],
)
def test_unmatched_body_gets_the_status_default(status: int, verdict: Verdict) -> None:
    reason = "shape: generic" if status == 400 else f"status {status}"
    # "limit" makes the 429 not bare (see the tests of BARE_429_ATTEMPTS below)
    assert run('{"error":{"message":"something over a limit"}}', status) == Classification(
        verdict, reason
    )


@pytest.mark.parametrize(
    "body",
    [
        # held-out-17 row 23, held-out-19 row 8, held-out-25 row 16 (each a billing state)
        "Error: Request failed, status 429",
        "MistralAPIStatusException: Cannot stream response. Status: 429",
        "Error Request failed with status code 429",
        # held-out-12 row 13 (load: passed on a retry)
        "429 Provider returned error",
        "",
    ],
)
def test_a_429_naming_nothing_is_congestion_of_at_most_three_attempts(body: str) -> None:
    assert run(body, 429) == Classification(
        Verdict.CONGESTION, "status 429 (nothing else named)", None, BARE_429_ATTEMPTS
    )
    assert BARE_429_ATTEMPTS == 3


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ("", {"retry-after": "3"}),
        ("", {"retry-after-ms": "300"}),
        ("", {"x-ratelimit-remaining-requests": "0"}),
        ("", {"anthropic-ratelimit-requests-remaining": "0"}),
        # load named in words no rule lists (held-out-15 row 8, held-out-2 row 26,
        # held-out-19 row 56)
        ('Failed to send message. HTTP 429 - {"error": "slow down"}', {}),
        ('{"error":{"code":"1302","message":"High concurrency usage of this API"}}', {}),
        ("ResourceExhausted: 429 Resource has been exhausted (e.g. check quota).", {}),
    ],
)
def test_a_429_naming_a_wait_a_rate_header_or_load_keeps_every_attempt(
    body: str, headers: dict[str, str]
) -> None:
    got = run(body, 429, headers)
    assert (got.verdict, got.reason, got.attempts) == (Verdict.CONGESTION, "status 429", None)


def test_402_with_retry_after_is_congestion() -> None:
    assert run("Payment window closed", 402, {"retry-after": "30"}).verdict is Verdict.CONGESTION


def test_empty_rule_table_leaves_only_status_defaults() -> None:
    outcome = Outcome("POST", URL, status=400, body=NIM_DEGRADED.encode())
    assert classify(outcome, rules=()) == Classification(Verdict.UNRECOGNISED, "shape: generic")


# ---- exceptions ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ConnectError", "connect error"),
        ("ConnectTimeout", "connect timeout"),
        ("PoolTimeout", "pool timeout"),
        ("ReadTimeout", "read timeout"),
        ("WriteTimeout", "write timeout"),
        ("RemoteProtocolError", "connection dropped"),
        ("ReadError", "connection dropped"),
        ("WriteError", "connection dropped"),
    ],
)
def test_network_exception_is_transient(flavour: object, name: str, reason: str) -> None:
    exception = getattr(flavour, name)("boom")
    result = classify(Outcome("POST", URL, exception=exception))
    assert result == Classification(Verdict.TRANSIENT, reason)


def test_subclass_of_a_network_exception_is_transient() -> None:
    class Custom(httpx.ReadError):
        pass

    assert classify(Outcome("POST", URL, exception=Custom("x"))).verdict is Verdict.TRANSIENT


@pytest.mark.parametrize(
    "exception",
    [ValueError("x"), httpx.LocalProtocolError("x"), httpx2.UnsupportedProtocol("x")],
)
def test_other_exception_is_fatal(exception: Exception) -> None:
    result = classify(Outcome("POST", URL, exception=exception))
    assert result == Classification(Verdict.FATAL, f"exception {type(exception).__name__}")


# ---- stream error events -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "verdict"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            Verdict.CONGESTION,
        ),
        (
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            Verdict.CONGESTION,
        ),
        (
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            Verdict.TRANSIENT,
        ),
        (
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            Verdict.FATAL,
        ),
        (
            {
                "type": "response.failed",
                "response": {"error": {"code": "server_error", "message": "x"}},
            },
            Verdict.TRANSIENT,
        ),
        (
            {"error": {"message": "Provider returned error", "code": "mystery"}},
            Verdict.UNRECOGNISED,
        ),
    ],
)
def test_stream_error_event_is_classified_by_its_type(
    payload: dict[str, object], verdict: Verdict
) -> None:
    assert run(json.dumps(payload), status=200, stream=True).verdict is verdict


def test_unknown_stream_error_names_the_stream() -> None:
    assert run('{"error":{"message":"?"}}', 200, stream=True).reason == "stream error event"


# ---- error text and waits ------------------------------------------------------------------


def test_error_text_decodes_double_encoded_json() -> None:
    inner = json.dumps({"error": {"code": 503, "message": "The model is overloaded."}})
    body = json.dumps({"error": {"message": inner, "code": 503}})
    assert error_text(body.encode()).splitlines() == [
        "code: 503",
        "message: The model is overloaded.",
        "code: 503",
    ]


def test_error_text_reads_json_after_a_text_prefix() -> None:
    text = error_text(b'Error 400: {"error": {"type": "invalid_request_error"}}')
    assert "type: invalid_request_error" in text.splitlines()


def test_body_wait_is_reported() -> None:
    body = '{"error":{"message":"Rate limit reached. Please try again in 7.5s."}}'
    assert run(body, status=429).wait == 7.5


# ---- robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage\x80",
        b"[" * 200_000,
        b'{"error": ' * 50_000,
        b'{"error": {"message": "trunc',
        b'{"code": ' + b"9" * 10_000 + b"}",
        json.dumps(json.dumps(json.dumps(json.dumps({"message": "overloaded"})))).encode(),
        bytes(range(256)) * 64,
    ],
    ids=[
        "invalid-utf8",
        "deep-array",
        "deep-object",
        "truncated",
        "huge-int",
        "quad-encoded",
        "binary",
    ],
)
def test_hostile_body_does_not_raise(body: bytes) -> None:
    assert isinstance(run(body).verdict, Verdict)


@given(
    st.binary(max_size=2048),
    st.one_of(st.none(), st.integers(min_value=100, max_value=599)),
    st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=4),
    st.booleans(),
)
def test_classify_never_raises(
    body: bytes, status: int | None, headers: dict[str, str], stream: bool
) -> None:
    outcome = Outcome("POST", URL, status=status, headers=headers, body=body, stream_error=stream)
    assert isinstance(classify(outcome), Classification)


CORPUS = [
    json.loads(line)["body"]
    for line in (Path(__file__).parent / "data" / "error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


@given(st.sampled_from(CORPUS), st.integers(min_value=0, max_value=4000))
def test_truncated_corpus_body_never_raises(body: str, cut: int) -> None:
    assert isinstance(run(body.encode()[:cut]).verdict, Verdict)


DENY_PHRASES = [
    "maximum context length",
    "context_length_exceeded",
    "prompt is too long",
    "model_not_found",
    "invalid api key",
    "authentication_error",
    "permission_error",
    "insufficient_quota",
    "credit balance is too low",
    "exceeded your current quota",
    "content_filter",
    "could not parse the JSON body",
    "INVALID_ARGUMENT",
]
TRANSIENT_MESSAGES = [
    ('{"type":"error","error":{"type":"overloaded_error","message":"', "Overloaded", '"}}'),
    (
        '{"status":400,"title":"Bad Request","detail":"',
        "Function id 'x': DEGRADED function cannot be invoked",
        '"}',
    ),
    (
        '{"success":false,"error":[{"code":2005,"message":"',
        "Failed to get response from provider",
        '"}]}',
    ),
    ("", "Invalid request sent to provider.", ""),
    ('{"error":{"message":"', "Rate limit exceeded, please try again in 2s", '"}}'),
]


@given(
    st.sampled_from(DENY_PHRASES),
    st.sampled_from(TRANSIENT_MESSAGES),
    st.integers(min_value=0, max_value=200),
    st.sampled_from(
        [(400, False), (429, False), (500, False), (503, False), (529, False), (200, True)]
    ),
)
def test_deny_phrase_anywhere_in_the_message_wins(
    phrase: str, template: tuple[str, str, str], at: int, status: tuple[int, bool]
) -> None:
    head, message, tail = template
    at %= len(message) + 1
    body = f"{head}{message[:at]} {phrase} {message[at:]}{tail}"
    assert run(body, status=status[0], stream=status[1]).verdict is Verdict.FATAL


# ---- the table itself ----------------------------------------------------------------------


def test_deny_rules_come_first_in_the_table() -> None:
    kinds = [rule.verdict is Verdict.FATAL for rule in RULES]
    assert kinds == sorted(kinds, reverse=True)


def test_rule_names_are_unique() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))


def test_rule_without_a_condition_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Rule("empty", Verdict.FATAL, "nowhere")


def test_rule_with_an_upper_case_header_is_rejected() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        Rule("h", Verdict.FATAL, "x", header=("X-Foo", re.compile("a")))


def test_rules_markdown_has_one_row_per_rule_and_the_defaults() -> None:
    text = rules_markdown()
    for rule in RULES:
        assert text.count(f"| `{rule.name}` |") == 1
    for status in STATUS_DEFAULTS:
        assert f"| {status} | " in text
    assert "| any other | fatal |" in text


def test_rules_markdown_escapes_pipes_in_patterns() -> None:
    rows = [line for line in rules_markdown().splitlines() if line.startswith("| `overloaded`")]
    assert rows == [rows[0]]
    assert "overloaded_error\\|" in rows[0]


def test_rules_markdown_is_deterministic() -> None:
    assert rules_markdown() == rules_markdown(RULES)


# ---- structured readers, quota periods, shape, sampling failures (issue 12) ---------------
# Each test names the real body it decides (tests/data/tracker-error-bodies.jsonl and its
# source thread); where a status is varied, the comment says why.

TRACKER = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "tracker-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def tracker(source: str, index: int = 0) -> str:
    """The body of the ``index``-th tracker row from ``source`` (a thread URL's tail)."""
    rows = [row for row in TRACKER if row["source"].endswith(source)]
    return str(rows[index]["body"])


def test_google_status_failed_precondition_in_python_repr_is_fatal() -> None:
    got = run(tracker("Xeift/Telegram-Discord-Bot/issues/4"))
    assert got == Classification(Verdict.FATAL, "field status=FAILED_PRECONDITION (google-status)")


def test_google_status_inside_openrouter_metadata_raw_repr_is_fatal() -> None:
    got = run(tracker("OpenRouterTeam/ai-sdk-provider/issues/187"))
    assert got.reason == "field status=FAILED_PRECONDITION (google-status)"


def test_grpc_status_code_rendering_is_read() -> None:
    got = run(tracker("run-llama/llama_index/issues/9733"))
    assert got.reason == "field StatusCode=FAILED_PRECONDITION (google-status)"


def test_google_status_unavailable_rescues_a_stream_error_event() -> None:
    # the Gemini 503 body of google-gemini/gemini-cli#4360 as a stream's error event
    body = '{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}'
    got = run(body, 200)
    assert got == Classification(Verdict.CONGESTION, "field status=UNAVAILABLE (google-status)")


def test_quota_failure_per_day_id_is_fatal_despite_a_retry_delay() -> None:
    got = run(tracker("googleapis/python-genai/issues/2044"), 429)
    assert got.verdict is Verdict.FATAL
    assert got.reason == "field quota GenerateRequestsPerDay (google-quota)"


def test_quota_failure_per_minute_id_beats_the_billing_wording() -> None:
    got = run(tracker("RooCodeInc/Roo-Code/issues/3883"), 429)
    assert got.verdict is Verdict.CONGESTION
    assert got.reason.endswith("(google-quota)")
    assert got.wait == 26.0


def test_snake_case_per_minute_quota_is_congestion() -> None:
    got = run(tracker("GoogleCloudPlatform/Open_Data_QnA/issues/61"), 429)
    assert got == Classification(Verdict.CONGESTION, "field quota s_per_minute (google-quota)")


def test_error_info_reason_is_read_from_the_vertex_429() -> None:
    body = tracker("google-gemini/gemini-cli/issues/14831")
    assert read(body, {})[0] == Finding(
        Verdict.CONGESTION, Tier.RETRYABLE, "google-error-info", "reason=rateLimitExceeded"
    )
    assert run(body, 200).verdict is Verdict.CONGESTION


def test_aws_exception_name_field_is_read_from_the_js_sdk_rendering() -> None:
    body = tracker("posit-dev/positron/issues/7844")
    assert read(body, {})[0] == Finding(
        Verdict.CONGESTION, Tier.RETRYABLE, "aws-error-type", "name=ThrottlingException"
    )
    assert run(body, 400).verdict is Verdict.CONGESTION


def test_aws_validation_exception_in_botocore_text_is_fatal() -> None:
    got = run(tracker("anthropics/claude-code/issues/1466"))
    assert got.verdict is Verdict.FATAL


def test_aws_model_not_ready_in_sdk_text_is_transient() -> None:
    body = "An error occurred (ModelNotReadyException) when calling the InvokeModel operation"
    assert run(body) == Classification(
        Verdict.TRANSIENT, "field exception=ModelNotReadyException (aws-error-type)"
    )


def test_aws_header_with_a_coral_suffix_is_read() -> None:
    headers = {"x-amzn-errortype": "ExpiredTokenException:http://internal.amazon.com/coral/"}
    assert run("{}", 400, headers).reason == (
        "field x-amzn-errortype=ExpiredTokenException (aws-error-type)"
    )


def test_provider_type_rate_limited_rescues_a_400() -> None:
    # Mistral's rate_limited body (raycast/extensions#31107) relayed with a 400
    got = run(tracker("raycast/extensions/issues/31107"), 400)
    assert got.verdict is Verdict.CONGESTION


def test_provider_type_model_not_available_is_fatal() -> None:
    got = run(tracker("HeyPuter/puter/issues/3168"))
    assert got.verdict is Verdict.FATAL


def test_provider_type_keeps_a_503_status_default() -> None:
    body = '{"type":"server_error","message":"x","statusCode":503}'
    assert run(body, 503).verdict is Verdict.CONGESTION


def test_problem_details_status_is_read_from_the_nim_429() -> None:
    body = tracker("NousResearch/hermes-agent/issues/69802")
    assert read(body, {}) == [
        Finding(Verdict.CONGESTION, Tier.RETRYABLE, "problem-details", "status=429")
    ]
    # a problem body naming a 429 as a stream's error event, which no phrase rule knows
    assert run('{"status":429,"title":"x","detail":"y"}', 200) == Classification(
        Verdict.CONGESTION, "field status=429 (problem-details)"
    )


def test_dashscope_token_limit_anchor_beats_insufficient_quota() -> None:
    got = run(tracker("hawkxtreme/mini-ai-1c/issues/23"), 429)
    assert got == Classification(Verdict.CONGESTION, "field #token-limit (dashscope-error-code)")


def test_dashscope_overdue_payment_anchor_is_fatal() -> None:
    got = run(tracker("anomalyco/opencode/issues/22994"))
    assert got == Classification(Verdict.FATAL, "field #overdue-payment (dashscope-error-code)")


def test_sampling_failure_code_gets_two_attempts_and_no_block() -> None:
    got = run(tracker("huggingface/smolagents/issues/1119"))
    assert got == Classification(
        Verdict.TRANSIENT, "field code=tool_use_failed (sampling-failure)", None, 2
    )


def test_sampling_failure_without_its_code_is_the_text_rule() -> None:
    got = run(tracker("anomalyco/opencode/issues/1018", 1))
    assert got == Classification(Verdict.TRANSIENT, "rule failed-function-call", None, 2)


@pytest.mark.parametrize(
    "source",
    [
        "minorun365/agent-book/issues/29",
        "cooderl/wewe-rss/issues/390",
        "ZuodaoTech/everyone-can-use-english/issues/643",
        "dirge-code/dirge/issues/818",
    ],
)
def test_quota_period_in_any_wording_is_fatal(source: str) -> None:
    assert run(tracker(source), 429) == Classification(Verdict.FATAL, "rule quota-period")


@pytest.mark.parametrize(
    "source",
    [
        "nminaya/grammar-nazi-bot/issues/958",
        "AIDotNet/OpenDeepWiki/issues/269",
        "langgenius/dify/issues/18378",
    ],
)
def test_per_minute_and_per_second_limits_stay_congestion(source: str) -> None:
    assert run(tracker(source), 429).verdict is Verdict.CONGESTION


@pytest.mark.parametrize(
    "source",
    [
        "7836246/cursor2api/issues/30",
        "FoundationAgents/OpenManus/issues/438",
        "millylee/anyrouter-check-in/issues/2",
        "MoonshotAI/Kimi-K2/issues/5",
    ],
)
def test_balance_exhausted_is_fatal_on_a_429(source: str) -> None:
    assert run(tracker(source), 429).verdict is Verdict.FATAL


def test_chinese_balance_wording_is_fatal() -> None:
    # Zhipu's Chinese wording of code 1113, as issue 12 quotes it
    body = '{"error":{"code":"1113","message":"余额不足或无可用资源包,请充值。"}}'
    assert run(body, 429) == Classification(Verdict.FATAL, "rule balance-exhausted")


def test_ollama_runner_that_cannot_start_is_fatal() -> None:
    got = run(tracker("ollama/ollama/issues/11710"), 500)
    assert got == Classification(Verdict.FATAL, "rule runner-cannot-start")


def test_ollama_runner_that_stopped_stays_retryable() -> None:
    assert run(tracker("ollama/ollama/issues/14093"), 500).verdict is Verdict.TRANSIENT


def test_range_constraint_inside_a_relay_500_is_fatal() -> None:
    got = run(tracker("pollinations/pollinations/issues/1290"), 500)
    assert got == Classification(Verdict.FATAL, "rule validation")


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("gethouston/houston/pull/1153", "is not available"),
        ("proxysoul/Empryo/issues/46", "is not accessible"),
    ],
)
def test_unknown_400_naming_a_cause_is_fatal(source: str, cause: str) -> None:
    assert run(tracker(source)) == Classification(
        Verdict.FATAL, f"shape: names a cause ({cause!r})"
    )


def test_unknown_400_of_relay_boilerplate_keeps_the_capped_retry() -> None:
    got = run(tracker("campfirein/byterover-cli/issues/43"))
    assert got == Classification(Verdict.UNRECOGNISED, "shape: generic")


def test_unknown_400_html_page_keeps_the_capped_retry() -> None:
    body = "<html><head><title>400 Bad Request</title></head><body>nginx</body></html>"
    assert run(body) == Classification(Verdict.UNRECOGNISED, "shape: an HTML page")


def test_unknown_400_naming_a_transient_cause_is_never_fatal() -> None:
    body = '{"error":{"message":"the value must be set; upstream busy, try again"}}'
    assert run(body) == Classification(Verdict.UNRECOGNISED, "shape: names a transient cause")


def test_rule_needles_never_hide_a_match_in_the_corpus() -> None:
    corpus = [
        str(json.loads(line)["body"])
        for name in ("error-bodies.jsonl", "extra-error-bodies.jsonl", "tracker-error-bodies.jsonl")
        for line in (Path(__file__).parent / "data" / name).read_text("utf-8").splitlines()
    ]
    for rule in RULES:
        if not rule.needles:
            continue
        bare = dataclasses.replace(rule, needles=())
        for body in corpus + DENY_PHRASES:
            text = error_text(body.encode())
            for status in (200, 400, 429, 500):
                assert rule.applies(status, {}, text) == bare.applies(status, {}, text), rule.name


def test_rule_needles_must_be_lower_case() -> None:
    with pytest.raises(ValueError, match="needles"):
        Rule("x", Verdict.FATAL, "docs", match=re.compile("x"), needles=("X",))


def test_rule_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        Rule("x", Verdict.TRANSIENT, "docs", match=re.compile("x"), attempts=0)


def test_rules_markdown_lists_the_structured_readers_and_the_shape_rule() -> None:
    table = rules_markdown()
    for reader in READERS:
        assert f"| `{reader.name}` |" in table
    assert "judged by its shape" in table
    assert "(at most 2 attempts)" in table


def test_sampling_failure_is_retried_once_and_never_blocks() -> None:
    body = tracker("huggingface/smolagents/issues/1119")
    run_ = run_machine([response(400, body)] * 5)
    assert run_.sends == 2
    assert run_.blocks == []
    assert len(finished_history(run_.end)) == 2


def finished_history(end: object) -> tuple[object, ...]:
    history = getattr(end, "history", ())
    assert isinstance(history, tuple)
    return history


def test_dashscope_throttling_code_is_congestion() -> None:
    # DashScope's throttle code, named in can1357/oh-my-pi#8476
    body = '{"code":"Throttling.AllocationQuota","message":"Allocated quota exceeded"}'
    assert run(body, 429) == Classification(
        Verdict.CONGESTION, "field code Throttling.AllocationQuota (dashscope-error-code)"
    )


def test_quota_ids_are_read_only_beside_a_quota_or_limit() -> None:
    assert read('{"metric": "RequestsPerDay"}', {}) == []


def test_many_quota_ids_are_bounded_and_any_daily_one_decides() -> None:
    body = "quota " + "RequestsPerMinute " * 40 + "RequestsPerDay"
    assert read(body, {})[0].verdict is Verdict.CONGESTION  # only the first 16 are read
    assert read("quota RequestsPerDay " + "RequestsPerMinute " * 40, {})[0].verdict is (
        Verdict.FATAL
    )


def test_field_pairs_are_bounded() -> None:
    body = '"a": "b", ' * 600 + '"code": "insufficient_quota"'
    assert all(finding.reader != "provider-error-type" for finding in read(body, {}))


def test_a_status_without_a_title_or_detail_is_no_problem_document() -> None:
    assert read('{"status": 503, "message": "x"}', {}) == []


@pytest.mark.parametrize(
    ("source", "wait"),
    [
        ("lbjlaq/Antigravity-Manager/issues/1198", 84152.0),
        ("huggingface/api-inference-community/issues/137", 1809.1820068359375),
        ("huggingface/unity-api/issues/18", 20.0),
    ],
)
def test_named_waits_in_relay_and_model_loading_bodies(source: str, wait: float) -> None:
    assert run(tracker(source), 503).wait == wait


@pytest.mark.parametrize(
    ("text", "wait"),
    [("Please wait 250ms", 0.25), ("please wait 2 minutes", 120.0), ("Please wait 1h", 3600.0)],
)
def test_named_wait_units(text: str, wait: float) -> None:
    assert named_wait(text) == wait


def test_daily_free_allocation_is_a_quota_period() -> None:
    got = run(tracker("diegosouzapw/OmniRoute/pull/6983"), 429)
    assert got == Classification(Verdict.FATAL, "rule quota-period")


# ---- fixes shown by the held-out-2 batch (tests/data/held-out-2-error-bodies.jsonl) ---------
# Each test names the real body it decides; the rest quote provider docs, as their comment says.

HELD_OUT_2 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-2-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def held_out_2(source: str) -> tuple[str, int | None]:
    """The body and status of the held-out-2 row from ``source`` (a thread URL's tail)."""
    (row,) = [row for row in HELD_OUT_2 if row["source"].endswith(source)]
    return str(row["body"]), row["status"]


def run_row(source: str) -> Classification:
    body, status = held_out_2(source)
    return run(body, 400 if status is None else status)


def test_relay_with_no_channel_for_the_model_is_fatal_inside_a_503() -> None:
    assert run_row("langgenius/dify/issues/34280") == Classification(
        Verdict.FATAL, "rule relay-no-channel"
    )


def test_relay_no_channel_in_english_is_fatal() -> None:
    # new-api's English wording of the same refusal
    body = openai_error(
        "No available channel for model gpt-4o under group default", "new_api_error"
    )
    assert run(body, 503).reason == "rule relay-no-channel"


def test_credits_per_day_are_a_quota_period() -> None:
    got = run_row("cloudflare/vibesdk/issues/164")
    assert got == Classification(Verdict.FATAL, "rule quota-period")


def test_camel_case_invalid_parameter_beats_a_client_unavailable_label() -> None:
    # Dify's "Server Unavailable Error" wraps DashScope's 400 about the input length
    assert run_row("langgenius/dify/issues/14986") == Classification(
        Verdict.FATAL, "rule validation"
    )


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("serac-labs/serac/issues/53", "should alternate"),
        ("RooCodeInc/Roo-Code/issues/770", "parameters specified in the request are not valid"),
    ],
)
def test_unknown_400_naming_a_constraint_in_other_words_is_fatal(source: str, cause: str) -> None:
    got = run_row(source)
    assert got == Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        # OpenAI-compatible servers comparing numbers; Zhipu's 'check the docs' wording
        ("max_tokens: 64000 > 32000, which is the maximum allowed", "0 > 3"),
        ("请检查文档后重新提交", "请检查文档"),
        ("image is larger than the limit", "larger than"),
    ],
)
def test_unknown_400_naming_a_comparison_or_a_chinese_parameter_error_is_fatal(
    message: str, cause: str
) -> None:
    got = run(openai_error(message))
    assert got == Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")


def test_should_not_happen_is_no_constraint() -> None:
    assert run(openai_error("This should not happen")).verdict is Verdict.UNRECOGNISED


def test_connection_failure_wording_keeps_an_unknown_400_retryable() -> None:
    # claude-code#7403's Envoy text, as a relay would forward it on a 400
    body, _ = held_out_2("anthropics/claude-code/issues/7403")
    assert run(body) == Classification(Verdict.UNRECOGNISED, "shape: names a transient cause")


@pytest.mark.parametrize(
    "source",
    [
        "anomalyco/opencode/issues/9789",  # 并发数过高
        "xtekky/gpt4free/issues/3032",  # reached the rate limit specific to this model
        "langgenius/dify/issues/1999",  # Rate Limit Error: Request too frequent
    ],
)
def test_rate_limit_wordings_are_congestion(source: str) -> None:
    assert run_row(source) == Classification(Verdict.CONGESTION, "rule throttling")


def test_bedrock_unable_to_process_is_capacity() -> None:
    assert run_row("darko-mesaros/bedrust/issues/47") == Classification(
        Verdict.CONGESTION, "rule capacity"
    )


def test_maximum_model_length_on_a_500_is_fatal() -> None:
    # vLLM's wording for a prompt over the model length, seen behind relays' 500s
    body = (
        '{"object":"error","message":"The decoder prompt (length 9000) is longer than the '
        'maximum model length of 8192.","type":"BadRequestError","param":null,"code":400}'
    )
    assert run(body, 500) == Classification(Verdict.FATAL, "rule context-length")


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        # Baidu Qianfan error code 17 (Qianfan error-code docs): error_msg is read
        ('{"error_code":17,"error_msg":"Open api daily request limit reached"}', "quota-period"),
        # MiniMax's base_resp (MiniMax error-code docs): status_msg is read
        (
            '{"base_resp":{"status_code":1008,"status_msg":"insufficient balance"}}',
            "credit-exhausted",
        ),
        # DashScope DataInspectionFailed (DashScope error-code docs)
        (
            '{"code":"DataInspectionFailed","message":"Input data may contain inappropriate '
            'content."}',
            "content-policy",
        ),
    ],
)
def test_other_error_fields_and_moderation_codes_are_read(body: str, rule: str) -> None:
    assert run(body) == Classification(Verdict.FATAL, f"rule {rule}")


@pytest.mark.parametrize(
    "message",
    [
        "残高が不足しています。チャージしてください。",
        "잔액이 부족합니다",
        "Saldo insuficiente en la cuenta",
        "Недостаточно средств на счёте",
    ],
)
def test_balance_words_in_other_languages_are_fatal_on_a_429(message: str) -> None:
    assert run(openai_error(message), 429) == Classification(
        Verdict.FATAL, "rule balance-exhausted"
    )


@pytest.mark.parametrize(
    "message",
    [
        "1日の上限に達しました",
        "일일 한도를 초과했습니다",
        "Límite diario alcanzado",
        "Tageslimit erreicht",
    ],
)
def test_daily_limits_in_other_languages_are_a_quota_period(message: str) -> None:
    assert run(openai_error(message), 429) == Classification(Verdict.FATAL, "rule quota-period")


# ---- fixes shown by the held-out-3 batch (tests/data/held-out-3-error-bodies.jsonl) ---------

HELD_OUT_3 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-3-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def run_row_3(source: str) -> Classification:
    (row,) = [row for row in HELD_OUT_3 if row["source"].endswith(source)]
    status = row["status"]
    return run(str(row["body"]), 400 if status is None else status)


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        # typed api_error, which the internal-error rule would retry on a 400
        ("louisho5/picobot/issues/6", "unsupported-feature"),
        ("Aider-AI/aider/issues/2933", "invalid-request"),  # its repr type decides first
        ("QwenLM/qwen-code/issues/1742", "quota-exhausted"),  # Free allocated quota exceeded
        ("DaWe35/image-router/issues/33", "balance-exhausted"),  # account balance is $0.0
        ("screenpipe/screenpipe/issues/5046", "quota-period"),  # today's AI usage limit
    ],
)
def test_held_out_3_bodies_are_fatal(source: str, rule: str) -> None:
    assert run_row_3(source) == Classification(Verdict.FATAL, f"rule {rule}")


def test_unsupported_feature_is_fatal_on_a_retryable_status_too() -> None:
    # louisho5/picobot#6's Ollama refusal, as a relay would forward it on a 500
    (row,) = [r for r in HELD_OUT_3 if r["source"].endswith("louisho5/picobot/issues/6")]
    assert run(str(row["body"]), 500) == Classification(Verdict.FATAL, "rule unsupported-feature")


@pytest.mark.parametrize(
    ("status", "message", "rule"),
    [
        # LiteLLM proxy's budget refusal (LiteLLM budgets docs)
        (400, "Budget has been exceeded! Current cost: 0.52, Max budget: 0.5", "quota-exhausted"),
        (429, "The API key has reached its spending limit", "quota-exhausted"),
        (
            429,
            "You have reached the maximum number of requests allowed for the free plan",
            "quota-exhausted",
        ),
        (429, "Usage limit exceeded for this billing period", "quota-period"),
        (429, "Your account has been suspended", "auth"),
        (403, "账号已被封禁", "auth"),
        (400, "模型不存在", "model-not-found"),
        (400, "输入长度超过模型最大上下文限制", "context-length"),
    ],
)
def test_quota_account_and_chinese_refusals_are_fatal(status: int, message: str, rule: str) -> None:
    assert run(openai_error(message), status) == Classification(Verdict.FATAL, f"rule {rule}")


def test_model_service_temporarily_unavailable_in_chinese_stays_retryable() -> None:
    assert run(openai_error("模型服务暂时不可用\uff0c请稍后重试"), 500).verdict.retryable


# ---- fixes shown by the held-out-4 batch (tests/data/held-out-4-error-bodies.jsonl) ---------

HELD_OUT_4 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-4-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def run_row_4(source: str) -> Classification:
    (row,) = [row for row in HELD_OUT_4 if row["source"].endswith(source)]
    status = row["status"]
    return run(str(row["body"]), 400 if status is None else status)


def test_relay_500_around_an_sdk_rendered_404_is_fatal() -> None:
    assert run_row_4("rashadphz/farfalle/issues/79") == Classification(
        Verdict.FATAL, "rule model-not-found"
    )
    # without the Azure code, the SDK rendering alone decides
    body = "500: AzureException NotFoundError - Error code: 404 - {'error': {'message': 'gone'}}"
    assert run(body, 500) == Classification(Verdict.FATAL, "rule sdk-client-error")


def test_openai_processing_error_in_a_stream_is_transient() -> None:
    assert run_row_4("openai/codex/issues/41895") == Classification(
        Verdict.TRANSIENT, "rule internal-error"
    )


def test_azure_deployment_not_found_is_a_missing_model() -> None:
    body = next(
        str(row["body"]) for row in HELD_OUT_4 if row["source"].endswith("chatbox/issues/646")
    )
    # the same body on a relay's 502 stays fatal
    assert run(body, 502) == Classification(Verdict.FATAL, "rule model-not-found")


@pytest.mark.parametrize(
    "body",
    [
        "openai.AuthenticationError: Error code: 401 - {'error': {'message': 'bad key'}}",
        "anthropic.PermissionDeniedError: Error code: 403",
    ],
)
def test_sdk_client_error_names_are_fatal_on_a_5xx(body: str) -> None:
    assert run(body, 502) == Classification(Verdict.FATAL, "rule sdk-client-error")


def test_sdk_rate_limit_rendering_inside_a_5xx_stays_retryable() -> None:
    body = "openai.RateLimitError: Error code: 429 - {'error': {'message': 'slow down'}}"
    assert run(body, 502).verdict is Verdict.CONGESTION


# ---- fixes shown by the held-out-5 batch (tests/data/held-out-5-error-bodies.jsonl) ---------


@pytest.mark.parametrize(
    "source", ["continuedev/continue/issues/10150", "tinyhumansai/openhuman/issues/4181"]
)
def test_a_model_that_cannot_be_loaded_is_fatal(source: str) -> None:
    rows = [
        json.loads(line)
        for line in (Path(__file__).parent / "data" / "held-out-5-error-bodies.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    (row,) = [row for row in rows if row["source"].endswith(source)]
    got = run(str(row["body"]), 500)  # the same words on a local server's 500
    assert got.verdict is Verdict.FATAL
    assert got.reason in {"rule runner-cannot-start", "rule invalid-request"}
    # without the invalid_request_error type, the wording alone decides
    assert run("No models loaded. Please load a model", 500) == Classification(
        Verdict.FATAL, "rule runner-cannot-start"
    )


def test_a_free_tier_rate_limit_is_congestion_but_a_free_plan_cap_is_fatal() -> None:
    rate = openai_error(
        "You have exceeded the rate limit for the free tier. Please wait 20 seconds."
    )
    assert run(rate, 429).verdict is Verdict.CONGESTION
    assert run(openai_error("Free plan limit reached"), 429) == Classification(
        Verdict.FATAL, "rule quota-exhausted"
    )


# ---- fixes shown by the held-out-6 batch (tests/data/held-out-6-error-bodies.jsonl) ---------

HELD_OUT_6 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-6-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def run_row_6(source: str) -> Classification:
    (row,) = [row for row in HELD_OUT_6 if row["source"].endswith(source)]
    status = row["status"]
    return run(str(row["body"]), 400 if status is None else status)


@pytest.mark.parametrize(
    "source",
    [
        "musistudio/claude-code-router/issues/429",  # inside a relay's api_error 400
        "chatchat-space/Langchain-Chatchat/issues/2815",  # on a 500
    ],
)
def test_chinese_parameter_errors_are_fatal_on_any_status(source: str) -> None:
    assert run_row_6(source) == Classification(Verdict.FATAL, "rule validation")


@pytest.mark.parametrize(
    "source", ["google-gemini/gemini-cli/issues/26486", "lobehub/lobehub/issues/7298"]
)
def test_please_ensure_names_a_cause(source: str) -> None:
    assert run_row_6(source) == Classification(
        Verdict.FATAL, "shape: names a cause ('please ensure')"
    )


def test_a_relay_5xx_around_an_upstream_400_naming_a_cause_is_fatal() -> None:
    # held-out-6's Gemini turn-order refusal (lobehub/lobehub#7298) wrapped by a relay's 502
    (body,) = [str(r["body"]) for r in HELD_OUT_6 if r["source"].endswith("lobehub/issues/7298")]
    got = run(body, 502)
    assert got == Classification(
        Verdict.FATAL, "shape: names a cause ('please ensure') inside a 502"
    )


@pytest.mark.parametrize(
    "body",
    [
        # the upstream's 400 names a transient cause: the 5xx keeps its default
        '{"error":{"code":400,"message":"Please ensure the service is up; try again later"}}',
        # a cause named beside the server's own state (a crash, memory): the default
        '{"error":{"message":"Traceback (most recent call last): expected a str"}}',
        '{"error":{"message":"CUDA out of memory: tried to allocate more than 2 GiB"}}',
        # a relay naming the upstream's own 5xx: the default
        '{"error":{"message":"bad response status code 503","param":"503"}}',
    ],
)
def test_a_5xx_without_a_refusal_keeps_its_default(body: str) -> None:
    assert run(body, 502) == Classification(Verdict.CONGESTION, "status 502")


def test_a_5xx_naming_a_cause_is_judged_as_a_400() -> None:
    # (until the held-out-11..14 evidence, only a relay's wrapped 4xx was judged so)
    body = '{"error":{"message":"Please ensure that function call turn comes first"}}'
    assert run(body, 502) == Classification(
        Verdict.FATAL, "shape: names a cause ('please ensure') inside a 502"
    )
    # LiteLLM's proxy without a model list (BerriAI/litellm#4143)
    config = '{"detail":{"error":"Invalid llm model list. llm_model_list=None"}}'
    assert run(config, 500).verdict is Verdict.FATAL
    # a named wait says the server expects to recover: the default
    waits = '{"error":{"message":"messages should alternate, please wait 30s"}}'
    assert run(waits, 503).verdict is Verdict.CONGESTION
    assert run(body, 503, {"retry-after": "5"}).verdict is Verdict.CONGESTION


# ---- bounds and guards of the error-text walk and the rule table -----------------------------


def test_error_text_stops_at_its_line_bound() -> None:
    body = json.dumps([{"msg": str(i % 10)} for i in range(600)]).encode()
    assert len(error_text(body).splitlines()) == 512


def test_json_three_levels_deep_in_strings_is_read_as_text_at_the_last_level() -> None:
    inner = json.dumps({"message": 'Prefix {"message": "deepest"}'})
    body = json.dumps({"message": json.dumps({"message": inner})}).encode()
    text = error_text(body)
    assert 'message: Prefix {"message": "deepest"}' in text


def test_a_json_string_body_that_does_not_parse_is_read_as_text() -> None:
    assert error_text(b'"unterminated') == '"unterminated'


def test_a_json_string_body_holding_a_number_is_read_as_text() -> None:
    assert error_text(b'"1" 2') == '"1" 2'


def test_a_defect_in_a_rule_answers_unrecognised() -> None:
    class Exploding(Rule):
        def applies(
            self,
            status: int | None,
            headers: Mapping[str, str],
            text: str,
            lowered: str | None = None,
        ) -> bool:
            raise RuntimeError("boom")

    rule = Exploding("exploding", Verdict.FATAL, "a test", match=re.compile("x"))
    got = classify(Outcome("POST", URL, status=400, body=b"x"), [rule])
    assert got == Classification(Verdict.UNRECOGNISED, "classifier error RuntimeError")


def test_above_without_its_groups_is_false() -> None:
    found = re.search(r"(?P<big>\d+)", "5")
    assert found is not None
    assert Above("big", "small")(found) is False


def test_rule_guards() -> None:
    with pytest.raises(ValueError, match=r"Rule\.name must not be empty"):
        Rule("", Verdict.FATAL, "docs", match=re.compile("x"))
    with pytest.raises(ValueError, match="when needs a match"):
        Rule("r", Verdict.FATAL, "docs", statuses=frozenset({400}), when=Above("a", "b"))
    with pytest.raises(ValueError, match="seen must name"):
        Rule("r", Verdict.FATAL, "", match=re.compile("x"))


# ---- fixes shown by the held-out-7 batch (tests/data/held-out-7-error-bodies.jsonl) ---------


def test_a_plan_feature_required_is_fatal_even_typed_as_a_rate_limit() -> None:
    rows = [
        json.loads(line)
        for line in (Path(__file__).parent / "data" / "held-out-7-error-bodies.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    (row,) = [r for r in rows if r["source"].endswith("anthropics/claude-code/issues/39948")]
    assert run(str(row["body"]), 429) == Classification(Verdict.FATAL, "rule plan-required")


@pytest.mark.parametrize(
    "message",
    ["This model requires a paid plan", "Vision is not available on your current plan"],
)
def test_plan_requirements_are_fatal(message: str) -> None:
    assert run(openai_error(message), 403) == Classification(Verdict.FATAL, "rule plan-required")


def test_groq_upgrade_hint_in_a_per_minute_limit_stays_congestion() -> None:
    body = openai_error(
        "Rate limit reached for model on tokens per minute (TPM): Limit 6000, Used 5000, "
        "Requested 900. Please try again in 2s. Need more tokens? Upgrade to Dev Tier today",
        "tokens",
        "rate_limit_exceeded",
    )
    assert run(body, 429).verdict is Verdict.CONGESTION


# ---- fixes shown by the held-out-8 batch (tests/data/held-out-8-error-bodies.jsonl) ---------

HELD_OUT_8 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-8-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # Python repr and a terminal-wrapped JSON string: invalid_request_error still read
        ("gptme/gptme/issues/185", "rule invalid-request"),
        ("anthropics/claude-code/issues/39534", "rule invalid-request"),
        ("openai/openai-python/issues/3551", "shape: names a cause ('not a valid')"),
    ],
)
def test_held_out_8_refusals_are_fatal(source: str, reason: str) -> None:
    (row,) = [r for r in HELD_OUT_8 if r["source"].endswith(source)]
    assert run(str(row["body"]), 400) == Classification(Verdict.FATAL, reason)


def test_invalid_request_error_inside_unescaped_metadata_raw_is_read() -> None:
    # farion1231/cc-switch#761: OpenRouter's metadata.raw left unescaped (not JSON any more)
    assert run(tracker("farion1231/cc-switch/issues/761")) == Classification(
        Verdict.FATAL, "rule invalid-request"
    )


# ---- fixes shown by the held-out-9 batch (tests/data/held-out-9-error-bodies.jsonl) ---------

HELD_OUT_9 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-9-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def test_a_period_limit_naming_a_short_wait_is_a_rolling_window() -> None:
    (row,) = [r for r in HELD_OUT_9 if r["source"].endswith("fall-2025-course/issues/76")]
    got = run(str(row["body"]), 429)
    assert got == Classification(Verdict.CONGESTION, "rule quota-period (waits)", 8.64)


def test_a_period_limit_naming_a_long_wait_is_returned_at_once() -> None:
    (row,) = [r for r in HELD_OUT_9 if r["source"].endswith("invisible_playwright_mcp/issues/109")]
    got = run(str(row["body"]), 429)
    assert got.verdict is Verdict.CONGESTION
    assert got.wait == 432.0  # above max_retry_after: the policy answers at once


def test_a_period_limit_without_a_wait_stays_fatal() -> None:
    body = openai_error("Too many tokens per day, please wait before trying again.")
    assert run(body, 429) == Classification(Verdict.FATAL, "rule quota-period")


# ---- fixes shown by the held-out-10 batch (tests/data/held-out-10-error-bodies.jsonl) -------

HELD_OUT_10 = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "held-out-10-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def run_row_10(source: str) -> Classification:
    (row,) = [r for r in HELD_OUT_10 if r["source"].endswith(source)]
    return run(str(row["body"]), int(row["status"]))


@pytest.mark.parametrize(
    "source", ["continuedev/continue/issues/11444", "continuedev/continue/issues/10579"]
)
def test_a_plan_usage_limit_is_a_quota_period(source: str) -> None:
    assert run_row_10(source) == Classification(Verdict.FATAL, "rule quota-period")


@pytest.mark.parametrize(
    "source", ["decolua/9router/issues/355", "continuedev/continue/issues/11285"]
)
def test_a_missing_field_names_a_cause(source: str) -> None:
    got = run_row_10(source)
    assert got.verdict is Verdict.FATAL
    assert got.reason.startswith("shape: names a cause ('missing ")


# ---- general rules shown by held-out-11 to held-out-14 (four batches collected in parallel) ---
# Each test names the real body it decides (tests/data/held-out-1[1-4]-error-bodies.jsonl, by
# its thread), or quotes provider docs where its comment says so.

LATE_BATCHES = [
    json.loads(line)
    for number in range(11, 47)
    for line in (Path(__file__).parent / "data" / f"held-out-{number}-error-bodies.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


def late(source: str, index: int = 0) -> Classification:
    """The classification of the late-batch row from thread ``source`` (a URL's tail)."""
    rows = [row for row in LATE_BATCHES if row["source"].endswith(source)]
    row = rows[index]
    status = 400 if row["status"] is None else int(row["status"])
    return run(str(row["body"]), status, stream=status == 200)


@pytest.mark.parametrize(
    "source", ["Alishahryar1/free-claude-code/issues/91", "BerriAI/litellm/pull/3130"]
)
def test_a_missing_credential_or_setting_is_fatal_inside_a_503(source: str) -> None:
    assert late(source) == Classification(Verdict.FATAL, "rule setup-required")


def test_a_client_gate_is_fatal_inside_a_503() -> None:
    got = late("Wei-Shaw/sub2api/issues/3742")
    assert got == Classification(Verdict.FATAL, "rule restricted-access")


def test_a_rate_worded_as_only_allows_stays_congestion() -> None:
    body = openai_error("This endpoint only allows 10 requests per minute")
    assert run(body, 429).verdict is Verdict.CONGESTION


def test_a_withdrawn_group_is_fatal() -> None:
    assert late("QuantumNous/new-api/issues/4875") == Classification(
        Verdict.FATAL, "rule withdrawn"
    )


def test_a_decommissioned_model_is_fatal_on_a_404() -> None:
    # Groq's model_decommissioned wording (Groq deprecations docs)
    body = openai_error(
        "The model `mixtral-8x7b-32768` has been decommissioned and is no longer supported.",
        code="model_decommissioned",
    )
    assert run(body, 404) == Classification(Verdict.FATAL, "rule withdrawn")


def test_an_input_above_the_named_maximum_is_fatal_inside_a_500() -> None:
    got = late("langchain-ai/langchain/pull/25671")
    assert got == Classification(Verdict.FATAL, "rule input-over-maximum")


def test_an_input_below_the_named_maximum_is_not_over_it() -> None:
    body = openai_error("Requested input length 900 exceeds maximum input length 8192")
    assert run(body, 500).reason != "rule input-over-maximum"


@pytest.mark.parametrize(
    "source", ["cline/cline/issues/5140", "lmstudio-ai/lmstudio-bug-tracker/issues/546"]
)
def test_context_overflow_in_openais_and_lm_studios_words(source: str) -> None:
    assert late(source) == Classification(Verdict.FATAL, "rule context-length")


@pytest.mark.parametrize(
    "message",
    [
        # as Claude Code, Continue and OmniRoute users quote plans' limits
        "Usage limit exceeded. Please upgrade your plan.",
        "You have run out of free messages. Subscribe to continue.",
        "Your credits have been used. Please purchase more credits.",
    ],
)
def test_a_limit_whose_remedy_is_money_is_fatal_on_a_429(message: str) -> None:
    assert run(openai_error(message), 429) == Classification(Verdict.FATAL, "rule upgrade-required")


def test_an_upsell_beside_a_per_minute_limit_and_a_wait_stays_congestion() -> None:
    # Groq's TPM 429 (its docs' wording), which ends with an upgrade offer
    body = openai_error(
        "Rate limit reached for model `llama3-70b-8192` on tokens per minute (TPM): Limit "
        "6000, Used 5000, Requested 2000. Please try again in 10.26s. Need more tokens? "
        "Upgrade to Dev Tier today at https://console.groq.com/settings/billing"
    )
    got = run(body, 429)
    assert (got.verdict, got.wait) == (Verdict.CONGESTION, 10.26)


def test_an_upsell_beside_named_load_stays_congestion() -> None:
    # MiniMax's 529 'High traffic detected … upgrade to our Plus plan' (held-out-11)
    (row,) = [row for row in LATE_BATCHES if str(row["body"]).startswith("High traffic")]
    assert run(str(row["body"]), 529) == Classification(Verdict.CONGESTION, "status 529")


def test_a_broken_connection_in_a_503_is_transient() -> None:
    got = late("openai/openai-python/issues/1626")
    assert got == Classification(Verdict.TRANSIENT, "rule connection-fault")


def test_envoys_overflow_reset_keeps_the_503_default() -> None:
    body = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    assert run(body, 503) == Classification(Verdict.CONGESTION, "status 503")


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("ollama/ollama/issues/4159", 400),  # 'llm busy - no slots available', no status
        ("huggingface/smolagents/issues/61", 500),  # 'Model too busy'
        ("JoviDeCroock/drydock/pull/303", 400),  # '3040: Capacity temporarily exceeded'
        ("Wei-Shaw/sub2api/issues/4636", 424),  # 'No available accounts'
        ("devops-thiago/ThrillhouseBot/issues/838", 400),  # 'waiting for a … request slot'
    ],
)
def test_busy_servers_and_drained_pools_are_capacity(source: str, status: int) -> None:
    assert late(source) == Classification(Verdict.CONGESTION, "rule capacity")
    assert status in {400, 424, 500}


def test_chinese_too_many_requests_is_throttling() -> None:
    # Zhipu code 1305 (Zhipu error-code docs): 'too many API requests now, retry later'
    body = '{"error":{"code":"1305","message":"当前API请求过多, 请稍后重试。"}}'
    assert run(body, 429) == Classification(Verdict.CONGESTION, "rule throttling")


def test_bedrocks_internal_server_wording_is_transient() -> None:
    got = late("hydro-project/infinity/pull/124")
    assert got == Classification(Verdict.TRANSIENT, "rule internal-error")


@pytest.mark.parametrize(
    "source", ["UKGovernmentBEIS/inspect_ai/pull/3188", "jakobdylanc/llmcord/issues/62"]
)
def test_an_upstream_5xx_worded_inside_a_stream_event_is_transient(source: str) -> None:
    got = late(source, 1 if source.endswith("3188") else 0)
    assert got == Classification(Verdict.TRANSIENT, "rule stream-inner-5xx")


def test_a_stream_event_is_judged_by_the_status_it_carries() -> None:
    assert late("BerriAI/litellm/issues/8448") == Classification(
        Verdict.CONGESTION, "inner status 429"
    )
    refused = '{"error":{"message":"Unknown route","code":404}}'
    assert run(refused, 200, stream=True) == Classification(Verdict.FATAL, "inner status 404")
    bad = '{"error":{"message":"tools[0] has no name","code":400}}'
    assert run(bad, 200, stream=True) == Classification(
        Verdict.FATAL, "shape: names a cause ('tools[0]') (inner 400)"
    )


def test_a_relays_api_error_stamp_does_not_rescue_a_404() -> None:
    got = late("musistudio/claude-code-router/issues/398")
    assert got == Classification(Verdict.FATAL, "status 404")


@pytest.mark.parametrize("source", ["mudler/LocalAI/issues/2692", "ollama/ollama/issues/8470"])
def test_a_model_that_cannot_load_is_fatal(source: str) -> None:
    assert late(source) == Classification(Verdict.FATAL, "rule runner-cannot-start")


def test_an_sdk_invalid_token_error_and_chinese_no_permission_are_auth() -> None:
    assert late("PaddlePaddle/ERNIE-SDK/issues/348") == Classification(Verdict.FATAL, "rule auth")


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("vllm-project/vllm/issues/9986", "requires"),
        ("opencodeschool/opencode.school/issues/174", "bad input"),
        ("fruitbars/simple-one-api/issues/30", "输入格式/解析错误"),
        ("tidyverse/ellmer/issues/162", "messages.4"),
    ],
)
def test_structural_markers_name_a_cause_in_an_unknown_400(source: str, cause: str) -> None:
    assert late(source) == Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")


def test_a_server_flag_names_a_cause() -> None:
    body = openai_error("tool calling needs the server started with --tool-call-parser")
    assert run(body).reason == "shape: names a cause ('--tool-call-parser')"


def test_a_zero_quota_limit_is_fatal_whatever_its_period() -> None:
    got = late("tech-shrimp/gemini-playground/issues/10")
    assert got == Classification(Verdict.FATAL, "field quota limit 0 (google-quota)")


@pytest.mark.parametrize(
    ("source", "wait"),
    [("googleapis/python-genai/issues/1875", 53.0), ("dyad-sh/dyad/issues/1469", 30.638054576)],
)
def test_googles_quota_sentence_with_a_retry_delay_is_a_window(source: str, wait: float) -> None:
    got = late(source)
    assert got == Classification(
        Verdict.CONGESTION, "field Google quota with a retry delay (google-quota)", wait
    )


def test_googles_quota_sentence_without_a_delay_stays_fatal() -> None:
    # the Gemini 429 of error-bodies.jsonl row 31, no RetryInfo: an exhausted free tier
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits.",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
    )
    assert run(body, 429) == Classification(Verdict.FATAL, "rule quota-exhausted")


def test_google_cancelled_and_backend_error_are_transient() -> None:
    # google-gemini/gemini-cli#20309: a 499 CANCELLED under load, reason backendError
    body = '{"error":{"code":499,"message":"The operation was cancelled.","status":"CANCELLED"}}'
    (finding,) = read(body, {})
    assert finding == Finding(
        Verdict.TRANSIENT, Tier.RETRYABLE, "google-status", "status=CANCELLED"
    )
    assert late("google-gemini/gemini-cli/issues/20309").verdict is Verdict.TRANSIENT
    reason = read('{"errors":[{"reason":"backendError"}]}', {})
    assert reason == [
        Finding(Verdict.TRANSIENT, Tier.RETRYABLE, "google-error-info", "reason=backendError")
    ]


def test_bedrock_model_error_exception_is_transient() -> None:
    # Bedrock runtime API reference: ModelErrorException, status 424
    body = (
        "An error occurred (ModelErrorException) when calling the Converse operation: The "
        "system encountered an unexpected error during processing. Try your request again."
    )
    assert read(body, {}) == [
        Finding(
            Verdict.TRANSIENT, Tier.RETRYABLE, "aws-error-type", "exception=ModelErrorException"
        )
    ]
    assert run(body, 424).verdict is Verdict.TRANSIENT


# ---- a generalisation check: real bodies sampled from trackers after the held-out-11..14
# fixes, each labelled from its thread before it was run (17/17; the classifier before those
# fixes scored 15/17, missing the two Copilot premium-allowance bodies). Status None: the
# thread shows none, tried as a 400 as the corpus does.

SAMPLED_AFTER_14: list[tuple[int | None, bool, str, str]] = [
    (
        400,
        False,
        'API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":'
        '"messages.1.content.1: `tool_use` ids must be unique"},"request_id":"req_011CXYMdu"}',
        "anthropics/claude-code#21317",
    ),
    (
        400,
        False,
        "messages.91: `tool_use` ids were found without `tool_result` blocks immediately after: "
        "toolu_012J8h8haek153rhp37X1S6d. Each `tool_use` block must have a corresponding "
        "`tool_result` block in the next message.",
        "anthropics/claude-code#1831",
    ),
    (
        400,
        False,
        "AI_APICallError: messages.1.content.1.tool_use.id: String should match pattern "
        "'^[a-zA-Z0-9_-]+$'",
        "anomalyco/opencode#1279",
    ),
    (
        429,
        False,
        "API Error: Request rejected (429) · You have exceeded the monthly usage quota. It will "
        "reset at 2026-08-29 23:59:59 +0800 CST. We recommend upgrading your plan for more "
        "quota, or waiting for the reset. Request id: 021787385003028709",
        "anomalyco/opencode#44099",
    ),
    (
        None,
        False,
        "You have exceeded your monthly quota (Request ID: F278:2BE859:4ED4F1:5D9E33:6A8D4A1C)",
        "github/app#3166",
    ),
    (
        429,
        False,
        "429 You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "continuedev/continue#10546",
    ),
    (503, True, "The server is busy. Please try again later.", "deepseek-ai/DeepSeek-V3#552"),
    (
        None,
        True,
        "Sorry, DeepSeek's search service is busy. Please disable search or try again in a few "
        "minutes.",
        "deepseek-ai/DeepSeek-R1#204",
    ),
    (
        400,
        False,
        "openai.BadRequestError: Error code: 400 - {'object': 'error', 'message': \"[{'type': "
        "'extra_forbidden', 'loc': ('body', 'max_completion_tokens'), 'msg': 'Extra inputs are "
        "not permitted', 'input': 64}]\", 'type': 'BadRequestError', 'param': None, 'code': 400}",
        "vllm-project/vllm#10078",
    ),
    (
        None,
        False,
        "You have exceeded your premium request allowance. We have automatically switched you to "
        "GPT-4.1 which is included with your plan. Enable additional paid premium requests to "
        "continue using premium models.",
        "microsoft/vscode-copilot-release#11836",
    ),
    (
        None,
        False,
        "You've exhausted your premium model quota. Please enable additional paid premium "
        "requests, upgrade to Copilot Pro+, or wait for your allowance to renew.",
        "microsoft/vscode#257692",
    ),
    (
        402,
        False,
        '{"error":{"message":"You have no quota","code":"quota_exceeded"}}',
        "earendil-works/pi#3643",
    ),
    (
        None,
        False,
        'Model call failed: {"message":"You have no quota","code":"quota_exceeded"} '
        "(Request ID: E373:246B49:65284:95CC4:68FDE883)",
        "github/copilot-cli#406",
    ),
    (
        429,
        True,
        "AI_RetryError: Failed after 3 attempts. Last error: Too Many Requests",
        "anomalyco/opencode#430",
    ),
    (
        400,
        True,
        "Error: Execution failed: CAPIError: 400 400 Bad Request\n"
        "(Request ID: E8E9:12BE68:476D087:4C15A01:6A0CA3F8)",
        "github/app#232",
    ),
    (
        None,
        False,
        "You're out of premium requests \nYou have reached your monthly limit for premium "
        "requests for Copilot code review.",
        "anomalyco/opencode#430",
    ),
    (
        400,
        False,
        'API Error: 400 {"error":{"message":"Error from provider(400): {\\"error\\":{\\"message'
        '\\":\\"Provider returned error\\",\\"code\\":400,\\"metadata\\":{\\"raw\\":\\"{\\\\\\"'
        'message\\\\\\":\\\\\\"messages.3.content.2: tool_use ids must be unique\\\\\\"}\\",'
        '\\"provider_name\\":\\"Amazon Bedrock\\"}}}"}}',
        "musistudio/claude-code-router#599",
    ),
]


@pytest.mark.parametrize(
    ("status", "retryable", "body", "source"),
    SAMPLED_AFTER_14,
    ids=[f"{row[3]}-{index}" for index, row in enumerate(SAMPLED_AFTER_14)],
)
def test_bodies_sampled_after_the_late_batches(
    status: int | None, retryable: bool, body: str, source: str
) -> None:
    got = run(body, 400 if status is None else status)
    assert retried(got) is retryable, (source, got.reason)


# ---- wordings of the same general rules from provider docs and SDKs (no corpus row yet) -----


def test_an_upgrade_offer_beside_a_per_minute_allowance_stays_congestion() -> None:
    # Cohere's trial-key 429 (Cohere rate-limit docs): per minute, with an upgrade offer
    body = json.dumps(
        {
            "message": "You are using a Trial key, which is limited to 10 API calls / minute. "
            "You can continue to use the Trial key for free or upgrade to a Production key with "
            "higher rate limits at 'https://dashboard.cohere.com/api-keys'."
        }
    )
    assert run(body, 429).verdict is Verdict.CONGESTION
    monthly = body.replace("10 API calls / minute", "1000 API calls / month")
    assert run(monthly, 429).verdict is Verdict.FATAL


def test_try_again_after_fixing_the_request_is_no_transient_cause() -> None:
    # Vertex AI's empty-text 400 (Vertex error docs): 'Add a value … and try again'
    body = openai_error(
        "Unable to submit request because it has an empty text parameter. Add a value to the "
        "parameter and try again."
    )
    assert run(body) == Classification(Verdict.FATAL, "shape: names a cause ('has an empty')")


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        # LiteLLM's missing-provider refusal
        (
            "litellm.BadRequestError: LLM Provider NOT provided. Pass in the LLM provider you "
            "are trying to call. You passed model=gpt4",
            "not provided",
        ),
        # Moonshot's token-limit 400 without its type
        (openai_error("Your request exceeded model token limit: 8192"), "exceeded"),
        # Baidu Qianfan 336103
        (
            '{"error_code":336103,"error_msg":"the max length of current prompt is 11200"}',
            "max length",
        ),
        # FastAPI/pydantic request validation on a 400
        (
            '{"detail":[{"type":"missing","loc":["body","messages"],"msg":"Field required"}]}',
            "field required",
        ),
    ],
)
def test_more_wordings_that_name_a_cause(body: str, cause: str) -> None:
    assert run(body) == Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")


def test_chinese_moderation_failure_is_content_policy() -> None:
    # iFlytek Spark 10013 (Spark error-code docs): 'input failed moderation'
    body = '{"header":{"code":10013,"message":"输入内容审核不通过, 涉嫌违规"}}'
    assert run(body) == Classification(Verdict.FATAL, "rule content-policy")


def test_model_not_exist_is_a_missing_model() -> None:
    # DashScope's 'Model not exist.' (DashScope error-code docs)
    body = '{"code":"InvalidParameter","message":"Model not exist."}'
    assert run(body, 404) == Classification(Verdict.FATAL, "rule model-not-found")


def test_a_deprecation_notice_beside_a_rate_limit_is_no_withdrawal() -> None:
    body = openai_error("Rate limit exceeded, retry later. Note: this API version is deprecated.")
    assert run(body, 429).verdict is Verdict.CONGESTION


def test_this_month_needs_a_limit_word_to_be_a_plan_limit() -> None:
    outage = openai_error("Our second outage this month: the service is down, retry later")
    assert run(outage, 503).verdict is Verdict.CONGESTION
    limit = openai_error("You have used all your requests for this month.")
    assert run(limit, 429) == Classification(Verdict.FATAL, "rule upgrade-required")


@pytest.mark.parametrize(
    "body",
    [
        "openai.APIStatusError: Error code: 413 - {'error': {'message': 'Payload Too Large'}}",
        "upstream answered: status code 422",
        "[deepseek/deepseek-chat] [403]: Forbidden",
        "litellm.UnprocessableEntityError: UnprocessableEntityError: OpenAIException",
        # the Azure SDK's exception for a 404
        "azure.core.exceptions.ResourceNotFoundError: Operation returned an invalid status",
    ],
)
def test_a_rendered_client_status_is_fatal_inside_a_5xx(body: str) -> None:
    assert run(body, 502) == Classification(Verdict.FATAL, "rule sdk-client-error")


@pytest.mark.parametrize(
    "body",
    [
        # Codex's Responses stream error code (held-out-14, an unknown-labelled row)
        '{"type":"response.failed","response":{"error":{"code":"server_is_overloaded",'
        '"message":"x"}}}',
        # the Chinese relays' 'model load too high' and 'server busy'
        '{"error":{"message":"当前模型负载过高, 请稍后重试"}}',
        '{"error":{"message":"服务器繁忙"}}',
    ],
)
def test_overload_in_codes_and_chinese(body: str) -> None:
    assert run(body, 200, stream=True) == Classification(Verdict.CONGESTION, "rule overloaded")


def test_a_bedrock_tool_use_draw_is_a_sampling_failure() -> None:
    # aws-solutions-library-samples/accelerated-intelligent-document-processing-on-aws#911
    body = (
        "EventStreamError: An error occurred (modelStreamErrorException) when calling the "
        "ConverseStream operation: Model produced invalid sequence as part of ToolUse. Please "
        "refer to the model tool use troubleshooting guide."
    )
    assert run(body) == Classification(Verdict.TRANSIENT, "rule failed-function-call", attempts=2)


def test_lower_camel_stream_exception_names_are_read() -> None:
    # NousResearch/hermes-agent#43915: a Bedrock stream frame as the anthropic SDK renders it
    body = "Bad response code, expected 200: {':exception-type': 'throttlingException'}"
    assert read(body, {})[0] == Finding(
        Verdict.CONGESTION, Tier.RETRYABLE, "aws-error-type", ":exception-type=ThrottlingException"
    )
    assert read("(modelTimeoutException) later", {})[0].field == "exception=ModelTimeoutException"


# ---- general rules shown by held-out-15 and held-out-16 ---------------------------------------


def test_an_upstream_capacity_reason_outranks_a_relays_quota_prose() -> None:
    got = late("lbjlaq/Antigravity-Manager/pull/186")
    assert got == Classification(
        Verdict.CONGESTION, "field reason=MODEL_CAPACITY_EXHAUSTED (google-error-info)"
    )


def test_an_error_type_named_for_a_plan_limit_is_fatal() -> None:
    got = late("anomalyco/opencode/issues/42029")
    assert got == Classification(
        Verdict.FATAL, "field type=FreeUsageLimitError (provider-error-type)"
    )


def test_a_plan_limit_name_beside_a_per_minute_window_stays_congestion() -> None:
    # Cerebras names its per-minute limit request_quota_exceeded (tracker-error-bodies.jsonl)
    body = (
        '{"message":"Requests per minute limit exceeded - too many requests sent.",'
        '"type":"too_many_requests_error","param":"quota","code":"request_quota_exceeded"}'
    )
    assert run(body, 429).verdict is Verdict.CONGESTION


def test_a_project_the_server_cannot_find_is_setup_inside_a_500() -> None:
    got = late("justlovemaki/AIClient2API/issues/667")
    assert got == Classification(Verdict.FATAL, "rule setup-required")


def test_an_exhausted_model_rate_limit_is_throttling() -> None:
    got = late("microsoft/vscode-copilot-release/issues/6453")
    assert (got.verdict, got.reason, got.wait) == (Verdict.CONGESTION, "rule throttling", 60.0)


def test_a_temporary_dns_failure_is_a_connection_fault() -> None:
    got = late("LLM-Red-Team/kimi-free-api/issues/165")
    assert got == Classification(Verdict.TRANSIENT, "rule connection-fault")


# ---- general rules shown by held-out-17 and held-out-18 ---------------------------------------


def test_a_deadline_exceeded_5xx_is_a_timeout_not_a_cause() -> None:
    got = late("google-gemini/deprecated-generative-ai-python/issues/294")
    assert got == Classification(Verdict.CONGESTION, "status 504")


def test_rejected_credentials_are_auth_inside_a_502() -> None:
    assert late("mozilla-ai/otari/issues/1407", 1) == Classification(Verdict.FATAL, "rule auth")


def test_a_quota_reset_time_is_a_named_wait() -> None:
    got = late("google-gemini/gemini-cli/issues/13004")
    assert (got.verdict, got.wait) == (Verdict.CONGESTION, 8 * 3600 + 44 * 60 + 7.0)
    assert named_wait("Your limit resets in 5 minutes") == 300.0
    assert named_wait("resets in a while") is None


def test_a_stream_event_naming_a_cause_is_fatal() -> None:
    got = late("Portkey-AI/gateway/issues/1142")
    assert got == Classification(
        Verdict.FATAL, "shape: names a cause ('messages.1') (stream event)"
    )
    # the anthropic SDK's Bedrock decoder says "expected 200", which names no cause
    body = "Bad response code, expected 200: {'message': 'x'}"
    assert run(body, 200, stream=True) == Classification(Verdict.UNRECOGNISED, "stream error event")


def test_an_allocation_quota_is_fatal() -> None:
    got = late("GoogleCloudPlatform/stable-diffusion-on-gcp/issues/12")
    assert got == Classification(
        Verdict.FATAL,
        "field allocation quota custom_model_training_nvidia_l4_gpus (google-quota)",
    )


def test_an_invalid_model_identifier_is_a_missing_model() -> None:
    got = late("MattJColes/lgtmaybe/pull/70")
    assert got == Classification(Verdict.FATAL, "rule model-not-found")


def test_cloudflares_generic_retry_after_on_an_origin_failure_is_no_server_wait() -> None:
    got = late("anthropics/claude-code/issues/90947")
    assert (got.verdict, got.wait) == (Verdict.CONGESTION, None)
    # the same field from the origin itself is honoured
    assert run('{"retry_after": 120}', 522).wait == 120.0


def test_a_lost_connection_in_a_stream_is_a_connection_fault() -> None:
    got = late("Portkey-AI/gateway/issues/267")
    assert got == Classification(Verdict.TRANSIENT, "rule connection-fault")


def test_a_reached_max_rpm_is_throttling() -> None:
    got = late("MoonshotAI/Kimi-K2/issues/34")
    assert (got.verdict, got.reason, got.wait) == (Verdict.CONGESTION, "rule throttling", 1.0)


def test_a_timeout_named_in_a_stream_event_is_transient() -> None:
    got = late("archestra-ai/archestra/pull/5511")
    assert got == Classification(Verdict.TRANSIENT, "rule stream-timeout")


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        # the shapes of justlovemaki/AIClient2API#667, mozilla-ai/otari#1407 and Bedrock's
        # 'model identifier is invalid', as a server with other words would send them
        ("Could not resolve the project for this key", "could not resolve the project"),
        ("the server refused our schema", "refused our schema"),
        ("the configured region is unknown", "region is unknown"),
    ],
)
def test_a_negative_said_of_a_setup_thing_names_a_cause(body: str, cause: str) -> None:
    assert run(openai_error(body)) == Classification(
        Verdict.FATAL, f"shape: names a cause ({cause!r})"
    )
    assert run(openai_error(body), 502).verdict is Verdict.FATAL


def test_a_count_mismatch_names_a_cause() -> None:
    # mistralai/client-ts#106
    body = openai_error("Not the same number of function calls and responses")
    assert run(body) == Classification(
        Verdict.FATAL, "shape: names a cause ('not the same number')"
    )


def test_new_apis_upstream_status_in_param_is_no_parameter() -> None:
    # new-api puts the upstream's status in param (songquanpeng/one-api#1290 shows a 422)
    body = '{"error":{"message":"bad response status code 503","type":"upstream_error",'
    body += '"param":"503","code":"bad_response_status_code"}}'
    assert run(body).verdict is Verdict.UNRECOGNISED
    assert run(body.replace("503", "422")).verdict is Verdict.FATAL


# ---- more real bodies sampled from trackers while the batches came in (after the held-out-11..14
# fixes), each labelled from its thread before it was run (tests/data/sampled-while-batches.json,
# not a corpus file): six sets scored 6/7, 6/7, 10/11, 11/12, 10/10 and 4/4 (one hard failure in
# each of the first, second and fourth); the rules each miss showed are above (a 5xx that names a
# cause, lowerCamel AWS exception names, a count mismatch, a 5xx repeating its own status). A
# seventh set (sample-7), sampled after the held-out-19/20 fixes from threads in no corpus file,
# scored 6/6 before any change.

SAMPLED_LATER = json.loads(
    (Path(__file__).parent / "data" / "sampled-while-batches.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize(
    "row", SAMPLED_LATER, ids=[f"{row['source']}-{n}" for n, row in enumerate(SAMPLED_LATER)]
)
def test_bodies_sampled_while_the_batches_came_in(row: dict[str, object]) -> None:
    status = row["status"]
    got = run(str(row["body"]), 400 if status is None else int(str(status)))
    assert retried(got) is row["retryable"], (row["source"], got.reason)


def retried(got: Classification) -> bool:
    """Whether the default policy retries this verdict: retryable, and any wait it names
    within ``max_retry_after`` (a longer one is handed back at once, as a quota is)."""
    too_long = got.wait is not None and got.wait > RetryPolicy().max_retry_after
    return got.verdict.retryable and not too_long


@pytest.mark.parametrize(
    ("message", "rule"),
    [
        ("リクエストが多すぎます。しばらくしてから再試行してください。", "throttling"),
        ("Demasiadas solicitudes, inténtelo más tarde", "throttling"),
        ("Muitas requisições. Tente novamente mais tarde.", "throttling"),
        ("Trop de requêtes, réessayez plus tard", "throttling"),
        ("Zu viele Anfragen, bitte später erneut versuchen", "throttling"),
        ("Слишком много запросов, попробуйте позже", "throttling"),
        ("サーバーが混雑しています", "overloaded"),
        ("서버 과부하", "overloaded"),
        ("El modelo está sobrecargado", "overloaded"),
        ("Der Server ist überlastet", "overloaded"),
    ],
)
def test_congestion_in_other_languages(message: str, rule: str) -> None:
    # localised front ends (LobeChat, Cherry Studio, Open WebUI) render the upstream's error
    assert run(openai_error(message), 200, stream=True) == Classification(
        Verdict.CONGESTION, f"rule {rule}"
    )


def test_a_5xx_repeating_its_own_status_is_still_judged_by_its_shape() -> None:
    # llama.cpp's 500 for a request it always fails (ggml-org/llama.cpp#17316)
    body = '{"error":{"code":500,"message":"Invalid input batch.","type":"server_error"}}'
    assert run(body, 500) == Classification(
        Verdict.FATAL, "shape: names a cause ('invalid i') inside a 500"
    )


def test_coheres_unsafe_request_498_is_content_policy() -> None:
    # Cohere's 498 (cohere-ai/cohere-developer-experience#189); Groq's 498 names capacity
    body = (
        '{"message":"Unsafe Request: blocked due to potential violations of the Usage Guidelines"}'
    )
    assert run(body, 498) == Classification(Verdict.FATAL, "rule content-policy")
    groq = openai_error("Flex tier capacity exceeded. Please try again later.")
    assert run(groq, 498).verdict is Verdict.CONGESTION


@pytest.mark.parametrize(
    "body",
    [
        '{"error":{"message":"Unexpected error: expected a response from upstream but got none"}}',
        '{"error":{"message":"Invalid response from upstream server"}}',
    ],
)
def test_a_5xx_naming_the_path_behind_it_keeps_its_default(body: str) -> None:
    assert run(body, 502) == Classification(Verdict.CONGESTION, "status 502")


@pytest.mark.parametrize(
    "body",
    [
        '{"error":{"message":"The model is not available at the moment"}}',
        '{"error":{"message":"Not enough GPUs available right now"}}',
        '{"error":{"message":"Request requires a warm worker; none is free"}}',
    ],
)
def test_a_refusal_qualified_by_time_is_no_cause(body: str) -> None:
    assert run(body) == Classification(Verdict.UNRECOGNISED, "shape: names a transient cause")


# ---- general rules written before held-out-19 and -20 were scored --------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # Chanzhaoyu/chatgpt-web#1574, tried as a 400 (the body alone must decide)
        ('{"errorMessage":"Access token has expired."}', 400),
        # ztjhz/BetterChatGPT#419
        (
            '{"error":{"code":"error","message":{"code":"token_expired","message":"Your '
            'authentication token has expired. Please try signing in again."}}}',
            400,
        ),
        # Zhipu 1309 (docs.z.ai API error codes), on a 429 with no rate word
        ('{"error":{"code":"1309","message":"Your GLM Coding Plan package has expired"}}', 429),
        ('{"error":"Your free trial has ended. Please add a payment method."}', 429),
    ],
)
def test_an_expired_credential_or_plan_is_fatal_on_any_status(body: str, status: int) -> None:
    got = run(body, status)
    assert got.verdict is Verdict.FATAL
    assert got.reason in {"rule access-ended", "field code=1309 (numbered-error-code)"}


def test_an_expired_deadline_is_no_expired_access() -> None:
    # held-out-17: a gateway timeout, retried
    assert run("504 Deadline expired before operation could complete.", 504).verdict.retryable
    assert run('{"error":"Upstream session expired, please retry"}', 503).verdict.retryable


def test_a_paused_model_service_is_fatal() -> None:
    # Volcengine Ark's SetLimitExceeded (Ark public error codes)
    body = (
        '{"error":{"code":"SetLimitExceeded","message":"Your account has reached the set '
        "inference limit for the model, and the model service has been paused. To continue "
        "using it, please visit the Model Activation page to adjust or close the 'Safe "
        'Experience Mode\'.","param":"","type":"Forbidden"}}'
    )
    assert run(body, 429) == Classification(Verdict.FATAL, "rule access-ended")


@pytest.mark.parametrize(
    "body",
    [
        '{"message":"You have used up all your credits"}',
        '{"error":"You have exhausted the free quota of this model"}',
    ],
)
def test_a_quota_used_up_is_fatal_with_the_verb_first(body: str) -> None:
    assert run(body, 429) == Classification(Verdict.FATAL, "rule quota-exhausted")


@pytest.mark.parametrize(
    "body",
    [
        "Quota exceeded for this API key. Your plan allows 100 requests/day.",
        '{"message":"You are using a Trial key, which is limited to 1000 API calls / month."}',
        '{"error":"Limit reached: 50 messages a day on the free plan"}',
    ],
)
def test_a_period_written_with_a_slash_or_an_article_is_a_period(body: str) -> None:
    assert run(body, 429) == Classification(Verdict.FATAL, "rule quota-period")


def test_a_per_minute_limit_written_with_a_slash_stays_congestion() -> None:
    # Cohere's trial key (tracker-error-bodies.jsonl words it the same way)
    body = '{"message":"You are using a Trial key, which is limited to 10 API calls / minute."}'
    assert run(body, 429).verdict is Verdict.CONGESTION


@pytest.mark.parametrize(
    ("body", "status", "field", "verdict"),
    [
        # docs.z.ai API error codes: a relay that rewords the message keeps the code
        ('{"error":{"code":"1304","message":"request refused"}}', 429, "code=1304", "fatal"),
        ('{"error":{"code":"1113","message":"Forbidden"}}', 429, "code=1113", "fatal"),
        ('{"error":{"code":"1302","message":"refused"}}', 400, "code=1302", "congestion"),
        # Baidu Qianfan error codes
        ('{"error_code":17,"error_msg":"request refused"}', 429, "error_code=17", "fatal"),
        ('{"error_code":336100,"error_msg":"try again later"}', 400, "error_code=336100", None),
    ],
)
def test_numbered_error_codes_are_read_in_their_providers_shape(
    body: str, status: int, field: str, verdict: str | None
) -> None:
    finding = next(found for found in read(body, {}) if found.reader == "numbered-error-code")
    assert finding.field == field
    if verdict is not None:
        assert run(body, status) == Classification(
            Verdict(verdict), f"field {field} (numbered-error-code)"
        )
    else:
        assert run(body, status).verdict is Verdict.TRANSIENT


@pytest.mark.parametrize(
    "body",
    [
        # Cloudflare's 1015 is a rate limit: an unquoted number is no Zhipu code
        '{"errors":[{"code":1015,"message":"You are being rate limited"}]}',
        # a Zhipu-shaped code that the table does not list
        '{"error":{"code":"1120","message":"Unable to access your account, please try later"}}',
        # Baidu's number without Baidu's error_msg
        '{"error_code":17,"message":"seventeen"}',
    ],
)
def test_a_number_outside_its_providers_shape_is_not_read(body: str) -> None:
    assert all(found.reader != "numbered-error-code" for found in read(body, {}))


@pytest.mark.parametrize(
    ("body", "status", "verdict"),
    [
        # Volcengine Ark public error codes, the message reworded by a relay
        ('{"error":{"code":"AccountOverdueError","message":"refused"}}', 403, Verdict.FATAL),
        ('{"error":{"code":"InputTextRiskDetection","message":"refused"}}', 400, Verdict.FATAL),
        ('{"error":{"code":"ServerOverloaded","message":"refused"}}', 400, Verdict.CONGESTION),
        # Moonshot (MoonshotAI/kimi-cli#901)
        (
            "Error code: 429 - {'error': {'message': \"We're receiving too many requests at the "
            "moment.\", 'type': 'rate_limit_reached_error'}}",
            429,
            Verdict.CONGESTION,
        ),
        # OpenAI's parameter codes
        ('{"error":{"message":"x","code":"unsupported_value"}}', 400, Verdict.FATAL),
        # TGI's error_type
        ('{"error":"Input validation error","error_type":"validation"}', 422, Verdict.FATAL),
    ],
)
def test_documented_provider_codes_decide(body: str, status: int, verdict: Verdict) -> None:
    assert run(body, status).verdict is verdict


def test_sensitive_information_in_the_input_is_a_content_refusal() -> None:
    # Volcengine Ark's InputTextSensitiveContentDetected message (Ark public error codes)
    body = (
        '{"error":{"message":"The request failed because the input text may contain sensitive '
        'information."}}'
    )
    assert run(body) == Classification(Verdict.FATAL, "rule content-policy")


@pytest.mark.parametrize("status", [507, 508, 598, 599])
def test_a_5xx_no_table_lists_is_retried_once(status: int) -> None:
    assert run("", status) == Classification(Verdict.TRANSIENT, f"status {status}")


@pytest.mark.parametrize("status", [501, 505, 525, 526, 530])
def test_a_5xx_that_says_the_request_cannot_be_served_is_fatal(status: int) -> None:
    assert run("", status) == Classification(Verdict.FATAL, f"status {status}")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # OpenAI's 500, which METR/vivaria#875 and #881 retry
        (
            '{"error":{"message":"The model produced invalid content. Consider modifying your '
            'prompt if you are seeing this error persistently.","type":"model_error"}}',
            500,
        ),
        (
            '{"error":"model output must contain either output text or tool calls, these '
            'cannot both be empty"}',
            500,
        ),
        ('{"error":{"message":"Unable to parse the model output as JSON"}}', 400),
        ('{"message":"Invalid JSON in response from model provider"}', 502),
        ('{"error":{"message":"Model returned malformed tool call"}}', 200),
    ],
)
def test_a_fault_of_the_models_output_is_one_more_draw(body: str, status: int) -> None:
    got = run(body, status, stream=status == 200)
    assert got == Classification(Verdict.TRANSIENT, "rule model-output-fault", attempts=2)


def test_the_shape_rule_never_makes_a_models_output_fault_fatal() -> None:
    body = "model output must contain either output text or tool calls"
    assert judge_400(body) == Classification(
        Verdict.UNRECOGNISED, "shape: names a fault of the model's output"
    )


def test_a_request_setting_named_after_the_output_is_no_output_fault() -> None:
    body = '{"error":{"message":"Model response format is invalid: json_schema requires a schema"}}'
    assert run(body).verdict is Verdict.FATAL


@pytest.mark.parametrize(
    ("body", "status", "inner"),
    [
        # new-api's code for an upstream's failed status (its error-code docs: "retry")
        (
            '{"error":{"message":"bad response status code 503","type":"upstream_error",'
            '"code":"bad_response_status_code"}}',
            404,
            503,
        ),
        # claude-code-router stamps the provider's failure with a status of its own
        (
            'API Error: 404 {"error":{"message":"Error from provider: 503 Service Unavailable",'
            '"type":"api_error"}}',
            404,
            503,
        ),
        ('{"detail":"Upstream returned 502 Bad Gateway"}', 422, 502),
        ('{"error":{"message":"Error from provider(429): slow down"}}', 403, 429),
    ],
)
def test_a_relays_refused_status_around_an_upstream_5xx_is_judged_by_the_upstream(
    body: str, status: int, inner: int
) -> None:
    got = run(body, status)
    assert got.reason == f"upstream status {inner} inside a {status}"
    assert got.verdict is STATUS_DEFAULTS[inner]


def test_a_refused_status_naming_only_itself_keeps_its_default() -> None:
    assert run('{"error":{"code":404,"message":"Not Found"}}', 404) == Classification(
        Verdict.FATAL, "status 404"
    )


def test_a_501_naming_its_own_status_keeps_its_default() -> None:
    assert run('{"code": 501, "message": "Not Implemented"}', 501) == Classification(
        Verdict.FATAL, "status 501"
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"error":"Too many requests"}', 503),
        ('{"error":{"message":"Too many concurrent requests, max 4"}}', 503),
        ('{"error":"too many open connections"}', 502),
        ('{"error":{"message":"Maximum number of concurrent requests exceeded"}}', 503),
        ('{"error":{"message":"the number of pending requests exceeds the limit of 64"}}', 500),
        ('{"error":{"message":"Too many concurrent requests"}}', 400),
    ],
)
def test_a_limit_on_work_in_flight_is_load_and_no_cause_of_the_request(
    body: str, status: int
) -> None:
    # the 5xx shape rule once read "too many" and "exceeds" here as a refused request's words
    assert run(body, status) == Classification(Verdict.CONGESTION, "rule throttling")


def test_a_500s_own_boilerplate_does_not_spare_a_named_cause() -> None:
    # held-out-13: Ollama Cloud's proxy could not parse a reply it got because of the login
    body = "Error: 500 Internal Server Error: unmarshal: invalid character 'I' looking for value"
    assert run(body, 500).verdict is Verdict.FATAL


@pytest.mark.parametrize(
    "body",
    [
        '{"error":{"message":"Thinking mode is not compatible with forced tool use"}}',
        '{"error":{"message":"Only one of max_tokens and max_completion_tokens can be set"}}',
        '{"error":{"message":"temperature and top_p cannot both be specified for this model"}}',
        '{"error":{"message":"reasoning_effort and thinking are mutually exclusive"}}',
        '{"error":{"code":"1215","message":"a and b cannot be set simultaneously"}}',
        '{"error":{"message":"Could not process image"}}',
        '{"error":{"message":"Please use a different model"}}',
    ],
)
def test_settings_that_exclude_each_other_name_a_cause(body: str) -> None:
    assert run(body).verdict is Verdict.FATAL


@pytest.mark.parametrize(
    ("body", "status", "rule"),
    [
        ('{"error":{"message":"调用次数已用完"}}', 429, "balance-exhausted"),
        ('{"error":{"message":"免费用量已用尽"}}', 429, "balance-exhausted"),
        ('{"error":{"message":"该模型需要订阅会员才能使用"}}', 429, "plan-required"),
        ('{"error":{"message":"请升级套餐以继续使用"}}', 429, "plan-required"),
        ('{"error":{"message":"无权访问该模型"}}', 400, "auth"),
        ('{"error":{"message":"账户未激活"}}', 400, "auth"),
        ('{"error":{"message":"请先完成实名认证"}}', 400, "auth"),
    ],
)
def test_the_chinese_relays_words_for_a_used_up_count_a_plan_and_access(
    body: str, status: int, rule: str
) -> None:
    assert run(body, status) == Classification(Verdict.FATAL, f"rule {rule}")


def test_a_chinese_per_minute_ceiling_stays_congestion() -> None:
    assert run('{"error":{"message":"已达到每分钟请求上限"}}', 429).verdict is Verdict.CONGESTION


# ---- general rules shown by held-out-19 and -20 ---------------------------------------------


@pytest.mark.parametrize("source", ["QwenLM/Qwen3/issues/998", "microsoft/autogen/issues/2163"])
def test_the_servers_own_code_failing_on_the_request_is_fatal(source: str) -> None:
    # vLLM's NameError in a 400, LiteLLM's KeyError text as a 500's whole message
    assert late(source) == Classification(Verdict.FATAL, "rule server-code-defect")


def test_a_code_defect_beside_a_broken_connection_is_no_defect() -> None:
    body = "litellm.APIConnectionError: 'NoneType' object has no attribute 'get'"
    assert run(body, 500).verdict.retryable


def test_a_param_that_is_no_parameter_name_names_no_cause() -> None:
    # tgpt's relay put an API key in param on a 500 that cleared by itself
    assert late("aandrew-me/tgpt/issues/149").verdict.retryable
    assert run('{"error":{"message":"x","param":"messages[0].content"}}').verdict is Verdict.FATAL


def test_a_model_still_loading_is_never_made_fatal_by_its_shape() -> None:
    assert late("BerriAI/litellm/issues/1242") == Classification(
        Verdict.UNRECOGNISED, "shape: names a transient cause", 20.0
    )


def test_a_per_day_limit_inside_an_identifier_is_a_period() -> None:
    # OpenRouter's 'Rate limit exceeded: limit_rpd/…' on a free model
    assert late("BerriAI/litellm/issues/9035") == Classification(Verdict.FATAL, "rule quota-period")


def test_a_relays_mapped_message_yields_to_the_upstream_detail_it_quotes() -> None:
    got = late("Alishahryar1/free-claude-code/issues/1327")
    assert got == Classification(
        Verdict.FATAL, "shape: names a cause ('must be') (upstream detail)"
    )


def test_a_mapped_message_without_a_specific_upstream_detail_stays_transient() -> None:
    body = "Mapped message: Invalid request sent to provider.\n  Upstream error: {}"
    assert run(body) == Classification(Verdict.TRANSIENT, "rule provider-invalid-request")


def test_new_apis_upstream_400_is_a_refused_request() -> None:
    got = late("smallmain/vscode-unify-chat-provider/issues/100")
    assert got == Classification(Verdict.FATAL, "rule sdk-client-error")


def test_cloudflares_origin_dns_error_is_fatal() -> None:
    assert late("lobehub/lobehub/issues/996") == Classification(Verdict.FATAL, "status 530")


def test_openais_quota_sentence_beside_alibabas_name_is_dashscopes_throttle() -> None:
    assert late("anomalyco/opencode/issues/23687") == Classification(
        Verdict.CONGESTION, "field Alibaba quota (dashscope-error-code)"
    )
    openai = '{"error":{"message":"You exceeded your current quota, please check your plan."}}'
    assert run(openai, 429).verdict is Verdict.FATAL


# ---- general rules shown by held-out-21 and -22 ---------------------------------------------


def test_an_enumeration_constraint_names_a_cause() -> None:
    # Bailian's invalid_parameter_error: "developer is not one of ['system', 'assistant', …]"
    assert late("proma-ai/Proma/issues/1244") == Classification(
        Verdict.FATAL, "shape: names a cause ('not one of')"
    )
    assert run(openai_error("role must be one of ['system', 'user']")).verdict is Verdict.FATAL


def test_a_keyerror_behind_a_detail_field_or_a_servers_prefix_is_a_code_defect() -> None:
    # Xinference's 500 "[xinference] Error: 'server_url'" in a detail field, SDK-rendered
    got = late("chatchat-space/Langchain-Chatchat/issues/4332")
    assert got == Classification(Verdict.FATAL, "rule server-code-defect")
    assert run('{"detail":"\'choices\'"}', 500) == got
    assert run('{"detail":"[vllm] Error: \'usage\'"}', 500) == got
    # a quoted word beside other words is no KeyError's text
    assert run('{"detail":"Error: \'server_url\' went away"}', 500) == Classification(
        Verdict.CONGESTION, "status 500"
    )


def test_gos_runtime_words_for_a_code_defect_are_fatal() -> None:
    # one-hub's recovered panic, tried as a 400 (no status in the thread)
    got = late("MartialBE/one-hub/issues/55")
    assert got == Classification(Verdict.FATAL, "rule server-code-defect")
    panic = "Panic detected, error: runtime error: index out of range [51] with length 48."
    assert run(openai_error(panic, "new_api_panic"), 500) == got


def test_a_nil_pointer_or_a_nil_interface_is_no_code_defect() -> None:
    # Go code dereferences a nil response on the error path of a timeout: a retry clears it
    for text in (
        "Panic detected, error: runtime error: invalid memory address or nil pointer dereference.",
        "panic: interface conversion: interface {} is nil, not *http.Response",
    ):
        assert run(openai_error(text, "one_api_panic"), 500).verdict.retryable


@pytest.mark.parametrize(
    "body",
    [
        "google.api_core.exceptions.PermissionDenied: the caller does not hold the grant",
        '{"error":{"message":"ModelAccessDeniedException: no grant for this model"}}',
    ],
)
def test_a_camelcase_error_name_spelling_a_refused_grant_is_fatal(body: str) -> None:
    assert run(body, 500) == Classification(Verdict.FATAL, "rule auth")


def test_sparks_app_id_without_a_grant_is_fatal() -> None:
    # iFlytek Spark's websocket code 11200, tried as a 400 (no status in the thread)
    got = late("CCLMSY/nonebot-plugin-sparkapi/issues/8")
    assert got == Classification(Verdict.FATAL, "rule auth")
    # the words in lower case are no error name
    assert run("noauth mode: error while starting", 500) == Classification(
        Verdict.CONGESTION, "status 500"
    )


@pytest.mark.parametrize("source", ["vercel/ai/issues/8857", "riverscuomo/cuomputer/issues/95"])
def test_the_servers_own_download_timing_out_is_worth_one_retry(source: str) -> None:
    # OpenAI's 400 "Timeout while downloading …" under invalid_value / invalid_image_url
    got = late(source)
    assert got == Classification(
        Verdict.TRANSIENT, "field 'Timeout while downloading' (input-fetch-timeout)", None, 2
    )


def test_a_remote_input_that_cannot_be_fetched_stays_fatal() -> None:
    # OpenAI words an unreachable URL otherwise: no timeout named, the error type decides
    message = "Error while downloading https://x.invalid/a.png."
    body = openai_error(message, "invalid_request_error", "invalid_image_url")
    assert run(body) == Classification(Verdict.FATAL, "rule invalid-request")
    slow = openai_error("Fetching the image at https://x.invalid/a.png timed out")
    assert run(slow).attempts == 2
    # a relay's own fetch from its upstream is the path's timeout: the status decides
    relay = openai_error("timeout while fetching response from upstream")
    assert run(relay, 504) == Classification(Verdict.CONGESTION, "status 504")


def test_content_named_as_a_risk_is_a_content_refusal() -> None:
    # DeepSeek's 'Content Exists Risk' in a bare FastAPI detail
    assert late("deepseek-ai/DeepSeek-V2/issues/30") == Classification(
        Verdict.FATAL, "rule content-policy"
    )


def test_two_parameters_that_cannot_both_be_given_name_a_cause() -> None:
    # Cohere's "cannot specify both message and tool_results in multistep mode"
    assert late("cohere-ai/cohere-python/issues/525") == Classification(
        Verdict.FATAL, "shape: names a cause ('cannot specify both')"
    )


def test_a_server_error_named_in_a_400_is_a_per_request_fault() -> None:
    # Cerebras's 400 "Encountered a server error, please try again"
    assert late("elizaOS/eliza/pull/10122") == Classification(
        Verdict.TRANSIENT, "rule internal-error"
    )


def test_a_broken_http2_stream_behind_a_relay_is_a_path_fault() -> None:
    # chatgpt2api's 502: curl (92) "HTTP/2 stream 1 was not closed cleanly"
    assert late("basketikun/chatgpt2api/issues/369") == Classification(
        Verdict.TRANSIENT, "rule connection-fault"
    )
    assert run("curl: (56) Recv failure: Connection reset by peer", 502).verdict is (
        Verdict.TRANSIENT
    )


# ---- general rules shown by held-out-23 to -25 ----------------------------------------------


def test_an_upstream_400_inside_a_relays_internal_error_label_is_judged_by_its_words() -> None:
    # Letta's "INTERNAL_SERVER_ERROR: Bad request to Anthropic: Error code: 400 - …"
    assert late("letta-ai/letta-code/pull/725") == Classification(
        Verdict.FATAL, "shape: names a cause ('messages.1') (upstream 400)"
    )
    # claude-code-router's api_error around SambaNova's 400
    assert late("musistudio/claude-code-router/issues/965") == Classification(
        Verdict.FATAL, "shape: names a cause ('expected') (upstream 400)"
    )
    # the label with an upstream 400 that names nothing is an unknown 400 (the capped retry,
    # held-out-34's Warp row); the label alone stays a server fault
    label = openai_error("internal error: upstream said status code 400", "api_error")
    assert run(label) == Classification(Verdict.UNRECOGNISED, "shape: generic (upstream 400)")
    assert run(openai_error("Internal server error", "api_error")).verdict is Verdict.TRANSIENT


def test_an_invalid_request_type_with_a_suffix_is_a_refused_request() -> None:
    # Mistral's invalid_request_message_order via LiteLLM
    assert late("onyx-dot-app/onyx/issues/6458") == Classification(
        Verdict.FATAL, "rule invalid-request"
    )
    busy = openai_error("capacity exceeded, try again later", "invalid_request_overloaded")
    assert run(busy).verdict is not Verdict.FATAL


def test_an_api_key_said_to_be_invalid_with_words_between_is_an_auth_refusal() -> None:
    assert late("run-llama/llama_index/issues/21087") == Classification(Verdict.FATAL, "rule auth")
    # a key named in a sentence about something else's state is not
    assert run(openai_error("API key quota check is unavailable. The server is busy")).verdict is (
        Verdict.CONGESTION
    )


def test_retry_inside_a_dotted_code_name_is_no_transient_word() -> None:
    # Spring AI's org.springframework.ai.retry.NonTransientAiException around vLLM's FastAPI
    # "Field required" list
    assert late("spring-projects/spring-ai/issues/3775") == Classification(
        Verdict.FATAL, "shape: names a cause ('field required')"
    )
    body = (
        "org.springframework.ai.retry.NonTransientAiException: 400 - "
        '{"message":"Unknown argument: foo","type":"Bad Request"}'
    )
    assert run(body) == Classification(Verdict.FATAL, "shape: names a cause ('unknown argument')")
    assert run("upstream failed, retry later").verdict is Verdict.UNRECOGNISED


# ---- general rules shown by held-out-26 to -28 ----------------------------------------------


def test_a_negated_more_than_n_and_an_illegal_part_name_a_cause() -> None:
    # vLLM's "Cannot request more than 5 logprobs." behind lm-evaluation-harness
    assert late("EleutherAI/lm-evaluation-harness/issues/1735") == Classification(
        Verdict.FATAL, "shape: names a cause ('cannot request more than 5')"
    )
    # a relay's "\"messages\" in request are illegal." behind Codex
    assert late("openai/codex/issues/4270") == Classification(
        Verdict.FATAL, "shape: names a cause ('are illegal')"
    )
    # "more than" that is no bound of the request, or no number, names nothing
    assert run("the upstream took more than 30 seconds").verdict is Verdict.UNRECOGNISED
    assert run("cannot serve more than usual").verdict is Verdict.UNRECOGNISED


def test_a_typeerror_of_the_servers_code_is_a_code_defect() -> None:
    # vLLM's "can only concatenate str (not "dict") to str" behind Spring AI's
    # org.springframework.ai.retry.NonTransientAiException (no retry word, for all its ".retry.")
    assert late("spring-projects/spring-ai/issues/3438") == Classification(
        Verdict.FATAL, "rule server-code-defect"
    )
    body = "unsupported operand type(s) for +: 'int' and 'NoneType'"
    assert run(body, 500) == Classification(Verdict.FATAL, "rule server-code-defect")


def test_a_later_or_a_retry_word_excuses_a_code_defect() -> None:
    # gpt_academic's own TypeError above the chatanywhere relay's "come back later"
    assert late("chatanywhere/GPT_API_free/issues/129") == Classification(
        Verdict.UNRECOGNISED, "shape: generic"
    )
    assert run("'NoneType' object is not subscriptable, 请稍后再试").verdict is not Verdict.FATAL
    assert run("'NoneType' object is not subscriptable, please retry").verdict is not (
        Verdict.FATAL
    )


def test_a_per_minute_limit_beats_a_clients_exhausted_quota_prefix() -> None:
    # k8sgpt's "exhausted API quota for AI provider openai" around OpenAI's per-minute limit
    assert late("k8sgpt-ai/k8sgpt/issues/543") == Classification(
        Verdict.CONGESTION, "rule throttling", 20.0
    )
    # the prefix alone, or a quota used up per day, stays a quota
    assert run("exhausted API quota for AI provider openai", 429) == Classification(
        Verdict.FATAL, "rule quota-exhausted"
    )
    daily = "You have used up all your credits: 200 requests per day"
    assert run(daily, 429).verdict is Verdict.FATAL


def test_the_ai_sdks_failed_check_of_a_response_leaves_the_providers_error_to_decide() -> None:
    # the AI SDK's TypeValidationError around Anthropic's overloaded_error stream event
    assert late("vercel/ai/issues/2453") == Classification(Verdict.CONGESTION, "rule overloaded")
    # a validation failure of the request itself stays fatal
    assert run("Validation failed: messages must not be empty").verdict is Verdict.FATAL


def test_one_apis_stand_in_for_an_upstream_429_is_a_bare_429() -> None:
    # one-api's "负载已满 … 或升级账户以提升服务质量" for a refused key
    assert late("songquanpeng/one-api/issues/130") == Classification(
        Verdict.CONGESTION, "rule relay-hidden-429", None, BARE_429_ATTEMPTS
    )
    saturated = "当前分组负载已饱和\uff0c请稍后再试\uff0c或升级账户以提升服务质量\u3002"
    assert run(saturated, 429).attempts == BARE_429_ATTEMPTS
    # one-api's load words without the stand-in's advice keep every attempt
    plain = run("当前分组上游负载已饱和\uff0c请稍后再试", 429)
    assert (plain.verdict, plain.attempts) == (Verdict.CONGESTION, None)


def test_a_429s_reason_phrase_alone_names_nothing() -> None:
    # .NET's rendering for an expired trial, and an app's prefix for a used-up free credit
    for source in ("PawanOsman/ChatGPT.Net/issues/38", "bob-plugin-openai-translator/issues/87"):
        assert late(source) == Classification(
            Verdict.CONGESTION, "status 429 (nothing else named)", None, BARE_429_ATTEMPTS
        )
    # the phrase with a word of load or a rate-limit header keeps every attempt
    assert run("Too Many Requests: rate limited", 429).attempts is None
    assert run("Too Many Requests", 429, {"x-ratelimit-reset-requests": "1s"}).attempts is None


# ---- general rules shown by held-out-29 to -31 ----------------------------------------------


def test_retry_with_something_else_asks_for_another_request() -> None:
    # Bedrock's "… with on-demand throughput isn\u2019t supported. Retry your request with the ID or
    # ARN of an inference profile …" (a contracted negative names the cause)
    assert late("anthropics/anthropic-sdk-python/issues/894") == Classification(
        Verdict.FATAL, "shape: names a cause ('isn\u2019t supported')"
    )
    assert run("Retry your request with a smaller prompt.").reason == "shape: generic"
    assert run("Try again with another model").reason == "shape: generic"
    # a plain retry, or one with a manner rather than another request, is still a transient word
    assert run("upstream failed, retry with backoff").reason == "shape: names a transient cause"
    assert run("please try again").reason == "shape: names a transient cause"


def test_a_place_a_model_is_unavailable_in_and_a_clients_retry_log_are_no_passing_state() -> None:
    # Snowflake Cortex: "The model you requested is unavailable in your region …; request
    # retries: 0; response time (last retry): 15.38ms"
    assert late("NickAkincilar/Snowflake_AI_DEMO/issues/2") == Classification(
        Verdict.FATAL, "shape: names a cause ('unavailable in your region')"
    )
    assert run("model unavailable right now").reason == "shape: names a transient cause"
    assert run("gateway gave up (last retry)").reason == "shape: generic"


def test_an_identifier_said_to_be_invalid_names_a_cause() -> None:
    # Cloudflare 7003 "Could not route to …, perhaps your object identifier is invalid?" behind
    # claude-code-router
    assert late("musistudio/claude-code-router/issues/1630") == Classification(
        Verdict.FATAL, "shape: names a cause ('identifier is invalid')"
    )


def test_a_feature_gated_on_an_api_version_names_a_cause() -> None:
    # Azure: "response_format value as json_schema is enabled only for api versions
    # 2024-08-01-preview and later", behind browser-use
    assert late("browser-use/browser-use/issues/12") == Classification(
        Verdict.FATAL, "shape: names a cause ('only for api versions')"
    )
    assert run("this endpoint is enabled only for the api version 2024-10-21").verdict is (
        Verdict.FATAL
    )


# ---- general rules shown by held-out-32 to -34 ----------------------------------------------


def test_a_quota_said_exceeded_and_nothing_more_is_spent() -> None:
    # Copilot for JetBrains: "Unhandled status from server:,429,quota exceeded"
    assert late("copilot-intellij-feedback/issues/90") == Classification(
        Verdict.FATAL, "rule quota-exhausted"
    )
    # a quota named with its metric or window is not
    per_minute = "Quota exceeded for quota metric 'Generate Content requests per minute'"
    assert run(per_minute, 429).verdict is Verdict.CONGESTION


def test_a_maximum_reached_for_this_month_is_a_quota_period() -> None:
    # Amazon Q's ThrottlingException "Maximum … reached for this month."
    assert late("aws/amazon-q-developer-cli/issues/1736") == Classification(
        Verdict.FATAL, "rule quota-period"
    )


def test_a_seat_quota_only_an_administrator_can_raise_needs_a_plan() -> None:
    # Gemini Code Assist's 429 "Individual quota reached. Contact your administrator to enable
    # overages"
    assert late("google-gemini/gemini-cli/issues/27761") == Classification(
        Verdict.FATAL, "rule plan-required"
    )
    assert run("Service busy. Contact your administrator if this persists", 503).verdict is (
        Verdict.CONGESTION
    )


def test_a_permission_denied_label_around_a_rate_limit_is_the_limit() -> None:
    # Windsurf: "Permission denied: Reached message rate limit for this model. Please try
    # again later. Resets in: 30m0s"
    assert late("dwgx/WindsurfAPI/issues/11") == Classification(
        Verdict.CONGESTION, "rule throttling"
    )
    assert run("Permission denied: this key cannot call the model", 403).reason == "rule auth"


def test_a_chat_template_the_server_cannot_render_is_fatal_on_any_status() -> None:
    # llama.cpp's 500 "Cannot subscript null at row 23, column 40:" over Qwen3's Jinja source
    assert late("ggml-org/llama.cpp/issues/13178") == Classification(
        Verdict.FATAL, "rule template-render-failed"
    )
    assert run("jinja2.exceptions.TemplateSyntaxError: unexpected '}'", 500).verdict is (
        Verdict.FATAL
    )
    assert run("prompt template service busy, try again", 503).verdict is Verdict.CONGESTION


def test_a_process_that_cannot_start_is_a_runner_that_cannot_start() -> None:
    # llama-swap's "unable to start process: health check failed after 15s" and its "Process
    # can not ProxyRequest, state is failed" afterwards
    for index in (0, 1):
        assert late("mostlygeek/llama-swap/issues/92", index) == Classification(
            Verdict.FATAL, "rule runner-cannot-start"
        )


def test_japanese_words_of_a_requirement_name_a_cause() -> None:
    # MulmoCast's wording of OpenAI's "organization must be verified to use gpt-image-1"
    assert late("receptron/mulmocast-app/issues/1258").verdict is Verdict.FATAL
    assert run("このモデルはサポートされていません").verdict is Verdict.FATAL
    assert run("混雑しています。しばらくしてから再度お試しください").verdict.retryable


def test_an_upstream_400_that_names_nothing_inside_an_internal_error_keeps_the_capped_retry() -> (
    None
):
    # Warp's "Response stream finished unexpectedly with internal error: POST …: 400 Bad
    # Request {"origin":"provider","message":"Bad Request"}"
    assert late("warpdotdev/warp/issues/15634") == Classification(
        Verdict.UNRECOGNISED, "shape: generic (upstream 400)"
    )


# ---- general rules shown by held-out-38 to -40 ----------------------------------------------


def test_a_model_without_a_free_tier_needs_a_plan() -> None:
    # Gemini's 429 "Gemini 2.5 Pro Preview doesn't have a free quota tier. Please use …"
    assert late("ai-christianson/RA.Aid/issues/182") == Classification(
        Verdict.FATAL, "rule plan-required"
    )


def test_an_api_or_model_that_was_removed_is_withdrawn() -> None:
    # Cohere: "Generate API was removed on September 15 2025. Please migrate to Chat API." (no
    # status) and "model 'command' was removed on September 15, 2025" (a 404)
    for source in ("pydantic/pydantic-ai/pull/3201", "opensearch-project/ml-commons/pull/4174"):
        assert late(source) == Classification(Verdict.FATAL, "rule withdrawn")
    assert run("the message was removed from the queue, retry").verdict is not Verdict.FATAL


def test_a_budget_crossed_verb_first_is_spent() -> None:
    # LiteLLM's 429 "No deployments available - crossed budget: Exceeded budget for deployment"
    assert late("BerriAI/litellm/issues/14144") == Classification(
        Verdict.FATAL, "rule quota-exhausted"
    )


def test_a_host_name_that_does_not_resolve_is_fatal_and_a_resolver_hiccup_is_not() -> None:
    # LiteLLM's 500 "Cannot connect to host …-aiplatform.googleapis.com:443 … [Name or service
    # not known]" for a region without that endpoint
    assert late("BerriAI/litellm/issues/22965") == Classification(
        Verdict.FATAL, "rule host-not-found"
    )
    assert run("dial tcp: lookup api.example.invalid: no such host", 502).verdict is Verdict.FATAL
    hiccup = "getaddrinfo EAI_AGAIN api.example.com"
    assert run(hiccup, 502) == Classification(Verdict.TRANSIENT, "rule connection-fault")


def test_no_api_key_found_is_a_missing_setting() -> None:
    # Helicone's {"error": "No API key found", "trace": "isAuthenticated.error"}
    assert late("Helicone/helicone/issues/2760") == Classification(
        Verdict.FATAL, "rule setup-required"
    )


# ---- general rules shown by held-out-41 to -43 ----------------------------------------------


def test_an_abuse_block_is_a_refusal_whatever_it_says_about_later() -> None:
    # ChatGPT's web backend behind ChatGPTBox: "Our systems have detected unusual activity from
    # your system. Please try again later." (for two weeks, until a client fix), and
    # ElevenLabs' "Unusual activity detected. Free Tier usage disabled."
    for source in (
        "ChatGPTBox-dev/chatGPTBox/issues/677",
        "elevenlabs/elevenlabs-python/issues/119",
    ):
        assert late(source) == Classification(Verdict.FATAL, "rule restricted-access")
    assert run("unusual traffic, slow down", 429).verdict is Verdict.CONGESTION


def test_a_retryable_false_flag_and_a_misconfigured_setting_name_a_cause() -> None:
    # LiveKit's "Bad Request (status_code=400, request_id=None, body=None, retryable=False)"
    assert late("livekit/agents/issues/2941") == Classification(
        Verdict.FATAL, "shape: names a cause ('retryable=false')"
    )
    # ElevenLabs: "The AI agent you are trying to reach appears to be misconfigured;"
    assert late("elevenlabs/examples/issues/137") == Classification(
        Verdict.FATAL, "shape: names a cause ('misconfigured')"
    )
    # a flag that says retry may help stays a transient word
    assert run("upstream hiccup (retryable=True)").reason == "shape: names a transient cause"


# ---- general rules shown by held-out-44 to -46 ----------------------------------------------


def test_an_upstream_4xx_after_a_relays_own_words_is_judged_from_its_status_on() -> None:
    # LiteLLM's 503 "litellm.ServiceUnavailableError: … litellm.BadRequestError: … 400 …
    # Function call is missing a thought_signature": the relay's class name says
    # "unavailable", the upstream's own words name the cause
    assert late("danny-avila/LibreChat/issues/10566") == Classification(
        Verdict.FATAL, "shape: names a cause ('is missing') inside a 503"
    )
    # a relay's 503 around an upstream 400 that names nothing keeps the status default
    body = "ServiceUnavailableError: BadRequestError: Error code: 400 - upstream said no"
    assert run(body, 503).verdict is Verdict.CONGESTION


def test_an_overdue_account_in_plain_words_is_a_billing_state() -> None:
    # Volcengine Ark's "AccountOverdueError: 403 Forbidden" as a log line
    assert late("volcengine/OpenViking/issues/729") == Classification(
        Verdict.FATAL, "rule balance-exhausted"
    )
    assert run("Your account is overdue, please pay", 429).verdict is Verdict.FATAL


def test_undicis_socket_closed_by_the_other_side_is_a_connection_fault() -> None:
    # LobeChat's "failed to pipe response … TypeError: terminated … SocketError: other side
    # closed … UND_ERR_SOCKET"
    assert late("lobehub/lobehub/issues/8136") == Classification(
        Verdict.TRANSIENT, "rule connection-fault"
    )
