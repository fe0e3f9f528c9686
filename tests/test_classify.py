"""The default classifier and its signature table: verdicts, near misses, robustness."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport._classify import classify, error_text
from retry_transport._signatures import RULES, STATUS_DEFAULTS, Rule, rules_markdown
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
        (409, Verdict.FATAL),
        (413, Verdict.FATAL),
        (422, Verdict.FATAL),
        (418, Verdict.FATAL),
        (501, Verdict.FATAL),
        (505, Verdict.FATAL),
    ],
)
def test_unmatched_body_gets_the_status_default(status: int, verdict: Verdict) -> None:
    reason = "shape: generic" if status == 400 else f"status {status}"
    assert run('{"error":{"message":"something"}}', status) == Classification(verdict, reason)


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
        ("farion1231/cc-switch/issues/761", "reserved"),
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
