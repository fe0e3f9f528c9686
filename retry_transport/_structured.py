"""Structured error fields: what the major error formats already say, read as data.

Providers name their errors in fields before they word them: Google's ``error.status`` (the
canonical gRPC codes) and its ``details[]`` (``QuotaFailure`` quota ids, ``RetryInfo``,
``ErrorInfo`` reasons), AWS error types (the ``x-amzn-errortype`` header, ``__type`` / ``code``
/ ``name`` fields, and the exception name inside an SDK's message), the documented OpenAI and
Anthropic ``type`` / ``code`` values, and RFC 9457 problem details. SDKs and relays re-render
them (``Error code: 429 - {'error': {...}}``, Python-repr quoting, JSON inside a string field,
quotes left unescaped), so the readers do not parse: they find ``key: value`` pairs in the text
with every backslash removed, which reads all of those renderings alike.

Each reader is a row of :data:`READERS`; :func:`read` returns the first finding, in three
tiers the classifier interleaves with the phrase rules (see :mod:`retry_transport._classify`):
``FIRM`` findings decide at once, ``PERMANENT`` ones are deny verdicts that the phrase rules'
deny group cannot add to, ``RETRYABLE`` ones yield to a permanent cause named by a deny rule.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from ._verdict import Verdict
from ._waits import _duration

__all__ = ["READERS", "Finding", "Reader", "Tier", "named_wait", "read", "readers_markdown"]

_MAX_SCAN = 8192
"""Characters of the body the readers look at."""
_MAX_FIELDS = 256
"""``key: value`` pairs collected per body."""
SAMPLING_ATTEMPTS = 2
"""Total tries for a sampling failure: the first and one retry."""


class Tier(enum.Enum):
    """When a finding decides, relative to the phrase rules."""

    FIRM = "firm"
    """Decides at once: the field is more precise than any phrase (a quota id's period)."""
    PERMANENT = "permanent"
    """A deny verdict, checked with (before) the deny rules."""
    RETRYABLE = "retryable"
    """Checked after the deny rules, so a permanent cause named in the text still wins."""


@dataclass(frozen=True, slots=True)
class Finding:
    """What a reader found: the verdict, the tier, the reader and the field that decided."""

    verdict: Verdict
    tier: Tier
    reader: str
    field: str
    attempts: int | None = None


@dataclass(frozen=True, slots=True)
class Reader:
    """One structured-field reader, as the rules table shows it."""

    name: str
    fields: str
    verdicts: str
    seen: str


READERS: tuple[Reader, ...] = (
    Reader(
        "sampling-failure",
        "`code` / `type`: tool_use_failed, json_validate_failed",
        "transient, at most 2 attempts, never a block",
        "Groq tool_use_failed in a 400 and in a stream event (huggingface/smolagents#1119, "
        "anomalyco/opencode#1018): the same request succeeds on another draw",
    ),
    Reader(
        "input-fetch-timeout",
        "the error text: the server's own download of a remote input (an image URL, a file) "
        "timed out",
        "transient, at most 2 attempts, never a block (firm: it outranks the input's error code, "
        "invalid_image_url or invalid_value)",
        "OpenAI's 400 'Timeout while downloading <url>' (vercel/ai#8857, "
        "riverscuomo/cuomputer#95, held-out-21): the same attachment passes on another try; a "
        "URL that cannot be fetched at all words itself otherwise and stays fatal",
    ),
    Reader(
        "dashscope-error-code",
        "the error-code page anchor DashScope links (`error-code#token-limit`), "
        "`Throttling.*` codes",
        "token-limit, rate-limit, Throttling.*, and OpenAI's 'exceeded your current quota' "
        "beside Alibaba's name: congestion (firm: DashScope words its per-minute throttle as "
        "insufficient_quota); overdue-payment: fatal",
        "can1357/oh-my-pi#8476, hawkxtreme/mini-ai-1c#23, anomalyco/opencode#22994; a relay "
        "that cut the anchor away but kept 'Error from provider (Alibaba)' "
        "(anomalyco/opencode#23687, held-out-20)",
    ),
    Reader(
        "google-quota",
        "`QuotaFailure` quota ids / metrics, `quota_limit` metadata",
        "per day, week or month, a limit of 0 (`quota_limit_value`, 'limit: 0'), or an "
        "allocation quota (a metric counting GPUs, nodes, instances): fatal; "
        "per minute, second or hour: congestion; Google's 'You exceeded your current quota' "
        "or 'Quota exceeded for' with a retry delay and no long period or money: congestion",
        "Gemini QuotaFailure (googleapis/python-genai#2044, RooCodeInc/Roo-Code#3883); a "
        "per-minute quota of 0 in a region (tech-shrimp/gemini-playground#10); Gemini's "
        "per-minute 429s in OpenAI's exhausted-quota words (googleapis/python-genai#1875, "
        "dyad-sh/dyad#1469); Vertex custom jobs' GPU quota (gcloud, held-out-18)",
    ),
    Reader(
        "google-error-info",
        "`ErrorInfo.reason`, legacy `errors[].reason`",
        "MODEL_CAPACITY_EXHAUSTED: congestion (firm: it outranks a relay's wrapper prose); "
        "RATE_LIMIT_EXCEEDED, rateLimitExceeded: congestion; backendError: transient; "
        "API_KEY_INVALID, BILLING_DISABLED, SERVICE_DISABLED, CONSUMER_SUSPENDED, "
        "dailyLimitExceeded: fatal",
        "google.rpc.ErrorInfo; Vertex 429 (google-gemini/gemini-cli#14831); backendError on a "
        "499 CANCELLED and a 503 (google-gemini/gemini-cli#20309, #11196); "
        "MODEL_CAPACITY_EXHAUSTED under a relay's 'quota exhausted or request failed' "
        "(lbjlaq/Antigravity-Manager#186)",
    ),
    Reader(
        "google-status",
        "`status` (canonical gRPC code), `StatusCode.X`",
        "INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, NOT_FOUND, PERMISSION_DENIED, "
        "UNAUTHENTICATED, ALREADY_EXISTS, UNIMPLEMENTED: fatal; UNAVAILABLE: congestion; "
        "DEADLINE_EXCEEDED, INTERNAL, ABORTED, CANCELLED, UNKNOWN, DATA_LOSS: transient; "
        "RESOURCE_EXHAUSTED: congestion unless a quota decides",
        "google.rpc.Code; Gemini FAILED_PRECONDITION (Xeift/Telegram-Discord-Bot#4, "
        "OpenRouterTeam/ai-sdk-provider#187)",
    ),
    Reader(
        "aws-error-type",
        "header `x-amzn-errortype`, `__type` / `code` / `name`, `(XException)` in SDK text",
        "ThrottlingException, TooManyRequestsException, ServiceUnavailableException: "
        "congestion; ModelNotReadyException, InternalServerException, ModelStreamError"
        "Exception, ModelTimeoutException, ModelErrorException: transient; ValidationException, "
        "AccessDeniedException, ResourceNotFoundException, UnrecognizedClientException, "
        "ExpiredTokenException: fatal",
        "Bedrock runtime errors (anthropics/claude-code#1466, posit-dev/positron#7844)",
    ),
    Reader(
        "numbered-error-code",
        'Zhipu\'s quoted four-digit `code` (`"code":"1113"`), Baidu Qianfan\'s `error_code` '
        "beside `error_msg`",
        "Zhipu 1000-1004 (authentication), 1110-1113 and 1121 (account inactive, missing, "
        "locked, in arrears), 1211-1215, 1220-1222 (model, method or parameter refused), 1261 "
        "(prompt too long), 1301 (sensitive content), 1304 (daily call limit), 1309 (plan "
        "expired), 1310 (weekly or monthly limit): fatal; 1302, 1303, 1305 (concurrency, "
        "frequency, load): congestion. Baidu 17, 19 (daily and total request limits), 110, 111 "
        "(access token invalid or expired): fatal; 18, 336501, 336502 (QPS, RPM, TPM): "
        "congestion; 336100 (try again later): transient",
        "docs.z.ai API error codes (Zhipu 1113 on a 429, issue 12); Baidu Qianfan error codes; "
        "a relay that rewords the message keeps the code",
    ),
    Reader(
        "provider-error-type",
        "`type` / `code` / `error_type` values documented by OpenAI, Anthropic, Azure, "
        "Moonshot, Volcengine Ark, DashScope, TGI and others",
        "insufficient_quota, context_length_exceeded, authentication_error, permission_error, "
        "not_found_error, billing_error, model_not_available, Arrearage, "
        "exceeded_current_quota_error, unsupported_value, invalid_value, content_filter, "
        "Moonshot's invalid_authentication_error / permission_denied_error / "
        "resource_not_found_error, Ark's AccountOverdueError, AccessDenied, ModelNotOpen, "
        "SetLimitExceeded, InvalidEndpointOrModel.NotFound and its content-security codes "
        "(InputTextSensitiveContentDetected, InputTextRiskDetection), DashScope's InvalidApiKey "
        "and ModelNotFound, TGI's validation, and any name of a plan's limit "
        "(FreeUsageLimitError, quota_exceeded, UsageLimitExceeded) unless the text names a "
        "per-minute or per-second window: fatal; rate_limit_exceeded, rate_limit_error, "
        "rate_limited, rate_limit_reached_error, overloaded_error, engine_overloaded_error, "
        "Ark's ServerOverloaded and RPM / TPM codes, TGI's overloaded: congestion; api_error, "
        "server_error, internal_server_error, Ark's InternalServiceError: transient",
        "OpenAI and Anthropic error docs; Mistral rate_limited (cline/cline#9085), Together "
        "model_not_available (HeyPuter/puter#3168), DashScope Arrearage "
        "(QuantumNous/new-api#1401), OpenCode Zen FreeUsageLimitError under 'Rate limit "
        "exceeded' (anomalyco/opencode#42029); Moonshot rate_limit_reached_error "
        "(MoonshotAI/kimi-cli#901); Volcengine Ark public error codes; TGI error types",
    ),
    Reader(
        "problem-details",
        "RFC 9457 `status` beside `title` / `detail` / `type`",
        "the status inside the problem, when it is 429 or 5xx: congestion",
        "RFC 9457; NVIDIA NIM problem bodies (decolua/9router#2527)",
    ),
)
"""The structured readers in the order :func:`read` consults them."""

_PAIR = re.compile(
    r"""(?<![\w$@:.-])["']?(?P<key>[A-Za-z_$@:][\w$@:.-]{0,40})["']?\s{0,3}[:=]\s{0,3}["']?"""
    r"""(?P<value>[A-Za-z0-9_][\w.:/@#+-]{0,120})"""
)
_DASHSCOPE = re.compile(
    r"error-code#(?P<anchor>token-limit|rate-limit|overdue-payment)\b|"
    r"(?P<code>\bThrottling(?:\.[A-Za-z]{2,40})?)(?=\W|\Z)"
)
_GRPC_CODE = re.compile(r"\bStatusCode\.(?P<code>[A-Z_]{4,30})\b")
# Stream event types are lowerCamel (``modelStreamErrorException``), API errors UpperCamel.
_AWS_NAME = re.compile(r"\b(?P<name>[A-Za-z][A-Za-z]{2,60}Exception)\b")
_QUOTA_ID = re.compile(
    r"(?<![A-Za-z])(?:[A-Z][A-Za-z]*?)?Per(?P<camel>Day|Week|Month|Minute|Second|Hour)"
    r"(?=[A-Z]|[^A-Za-z]|\Z)|"
    r"[a-z]_per_(?P<snake>day|week|month|minute|second|hour)(?![a-z])"
)

_GOOGLE_STATUS: Mapping[str, Verdict] = MappingProxyType(
    {
        "INVALID_ARGUMENT": Verdict.FATAL,
        "FAILED_PRECONDITION": Verdict.FATAL,
        "OUT_OF_RANGE": Verdict.FATAL,
        "NOT_FOUND": Verdict.FATAL,
        "PERMISSION_DENIED": Verdict.FATAL,
        "UNAUTHENTICATED": Verdict.FATAL,
        "ALREADY_EXISTS": Verdict.FATAL,
        "UNIMPLEMENTED": Verdict.FATAL,
        "UNAVAILABLE": Verdict.CONGESTION,
        "RESOURCE_EXHAUSTED": Verdict.CONGESTION,
        "DEADLINE_EXCEEDED": Verdict.TRANSIENT,
        "INTERNAL": Verdict.TRANSIENT,
        "ABORTED": Verdict.TRANSIENT,
        # Sent by the server to a client that cancelled nothing: a server-side abort.
        "CANCELLED": Verdict.TRANSIENT,
        "UNKNOWN": Verdict.TRANSIENT,
        "DATA_LOSS": Verdict.TRANSIENT,
    }
)
_ERROR_INFO: Mapping[str, Verdict] = MappingProxyType(
    {
        "RATE_LIMIT_EXCEEDED": Verdict.CONGESTION,
        "ratelimitexceeded": Verdict.CONGESTION,
        "userratelimitexceeded": Verdict.CONGESTION,
        "backenderror": Verdict.TRANSIENT,
        "API_KEY_INVALID": Verdict.FATAL,
        "BILLING_DISABLED": Verdict.FATAL,
        "SERVICE_DISABLED": Verdict.FATAL,
        "CONSUMER_SUSPENDED": Verdict.FATAL,
        "dailylimitexceeded": Verdict.FATAL,
    }
)
_AWS: Mapping[str, Verdict] = MappingProxyType(
    {
        "ThrottlingException": Verdict.CONGESTION,
        "TooManyRequestsException": Verdict.CONGESTION,
        "ServiceUnavailableException": Verdict.CONGESTION,
        "ModelNotReadyException": Verdict.TRANSIENT,
        "InternalServerException": Verdict.TRANSIENT,
        "ModelStreamErrorException": Verdict.TRANSIENT,
        "ModelTimeoutException": Verdict.TRANSIENT,
        "ModelErrorException": Verdict.TRANSIENT,
        "ValidationException": Verdict.FATAL,
        "AccessDeniedException": Verdict.FATAL,
        "ResourceNotFoundException": Verdict.FATAL,
        "UnrecognizedClientException": Verdict.FATAL,
        "ExpiredTokenException": Verdict.FATAL,
    }
)
_CAPACITY_REASONS = frozenset({"MODEL_CAPACITY_EXHAUSTED", "CAPACITY_EXHAUSTED"})
_AWS_LOWER = {name.lower(): (name, verdict) for name, verdict in _AWS.items()}
_TYPES: Mapping[str, Verdict] = MappingProxyType(
    {
        "insufficient_quota": Verdict.FATAL,
        "context_length_exceeded": Verdict.FATAL,
        "invalid_api_key": Verdict.FATAL,
        "authentication_error": Verdict.FATAL,
        "permission_error": Verdict.FATAL,
        "not_found_error": Verdict.FATAL,
        "billing_error": Verdict.FATAL,
        "request_too_large": Verdict.FATAL,
        "model_not_found": Verdict.FATAL,
        "model_not_available": Verdict.FATAL,
        "billing_not_active": Verdict.FATAL,
        "arrearage": Verdict.FATAL,
        "exceeded_current_quota_error": Verdict.FATAL,
        "unsupported_country_region_territory": Verdict.FATAL,
        # documented codes the phrase rules may not see when a relay rewords the message:
        # OpenAI's parameter codes, Azure's content filter, Moonshot's types, Volcengine Ark's
        # and DashScope's CamelCase codes, TGI's error_type
        "unsupported_value": Verdict.FATAL,
        "invalid_value": Verdict.FATAL,
        "unsupported_parameter": Verdict.FATAL,
        "invalid_prompt": Verdict.FATAL,
        "account_deactivated": Verdict.FATAL,
        "content_filter": Verdict.FATAL,
        "invalid_authentication_error": Verdict.FATAL,
        "permission_denied_error": Verdict.FATAL,
        "resource_not_found_error": Verdict.FATAL,
        "accountoverdueerror": Verdict.FATAL,
        "accessdenied": Verdict.FATAL,
        "authenticationerror": Verdict.FATAL,
        "invalidendpointormodel.notfound": Verdict.FATAL,
        "invalidendpoint.notfound": Verdict.FATAL,
        "modelnotopen": Verdict.FATAL,
        "setlimitexceeded": Verdict.FATAL,
        "missingparameter": Verdict.FATAL,
        "invalidparameter": Verdict.FATAL,
        "invalidapikey": Verdict.FATAL,
        "modelnotfound": Verdict.FATAL,
        "model.accessdenied": Verdict.FATAL,
        "accessdenied.unpurchased": Verdict.FATAL,
        "validation": Verdict.FATAL,
        "serveroverloaded": Verdict.CONGESTION,
        "rate_limit_reached_error": Verdict.CONGESTION,
        "ratelimitexceeded.endpointrpmexceeded": Verdict.CONGESTION,
        "ratelimitexceeded.endpointtpmexceeded": Verdict.CONGESTION,
        "modelaccountrpmratelimitexceeded": Verdict.CONGESTION,
        "modelaccounttpmratelimitexceeded": Verdict.CONGESTION,
        "accountratelimitexceeded": Verdict.CONGESTION,
        "overloaded": Verdict.CONGESTION,
        "internalserviceerror": Verdict.TRANSIENT,
        "rate_limit_exceeded": Verdict.CONGESTION,
        "rate_limit_error": Verdict.CONGESTION,
        "rate_limited": Verdict.CONGESTION,
        "overloaded_error": Verdict.CONGESTION,
        "engine_overloaded_error": Verdict.CONGESTION,
        "api_error": Verdict.TRANSIENT,
        "server_error": Verdict.TRANSIENT,
        "internal_server_error": Verdict.TRANSIENT,
    }
)
_TYPE_KEYS = frozenset({"type", "code", "error_type", "errortype", "error_code", "errorcode"})
_AWS_KEYS = frozenset({"__type", "code", "name", "error_type", "errortype", ":exception-type"})
_SAMPLING = frozenset({"tool_use_failed", "json_validate_failed"})
_LONG = frozenset({"day", "week", "month"})


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for found in _PAIR.finditer(text):
        pairs.append((found.group("key").lower(), found.group("value")))
        if len(pairs) >= _MAX_FIELDS:
            break
    return pairs


def _sampling(pairs: list[tuple[str, str]]) -> Finding | None:
    for key, value in pairs:
        if key in _TYPE_KEYS and value.lower() in _SAMPLING:
            return Finding(
                Verdict.TRANSIENT,
                Tier.FIRM,
                "sampling-failure",
                f"{key}={value}",
                SAMPLING_ATTEMPTS,
            )
    return None


_INPUT = (
    r"(?:the |an? |your )?(?:image|file|url|media|document|attachment|audio|video|input|https?://)"
)
_FETCH_TIMEOUT = re.compile(
    # "Timeout while downloading <url>"; a fetch only of a named input: a relay's "timeout
    # while fetching" from its upstream is the path's, which the status and phrase rules read
    rf"\b(?:timeout|timed out|time-out) (?:while |when |during )?(?:downloading\b|"
    rf"(?:fetching|retrieving) {_INPUT})|"
    rf"\b(?:download|fetch|retriev)(?:ing|al|e)? (?:of )?{_INPUT}s?\b[^\n]{{0,80}}?"
    r"\b(?:timed out|timeout)\b",
    re.IGNORECASE,
)
_FETCH_WORDS = ("download", "fetch", "retriev")


def _fetch_timeout(scan: str) -> Finding | None:
    """The server's own fetch of a remote input timed out: the input may be fine."""
    low = scan.lower()
    if not any(word in low for word in _FETCH_WORDS):
        return None  # a cheap test before the pattern
    found = _FETCH_TIMEOUT.search(scan)
    if found is None:
        return None
    return Finding(
        Verdict.TRANSIENT,
        Tier.FIRM,
        "input-fetch-timeout",
        repr(found.group(0)),
        SAMPLING_ATTEMPTS,
    )


_ALIBABA = re.compile(r"\b(?:dashscope|aliyuncs|alibaba|bailian|model ?studio)\b", re.IGNORECASE)


def _dashscope(text: str) -> Finding | None:
    found = _DASHSCOPE.search(text)
    if found is None:
        if "exceeded your current quota" in text.lower() and _ALIBABA.search(text) is not None:
            # DashScope words its per-minute throttle in OpenAI's exhausted-quota sentence
            # (its token-limit anchor, hawkxtreme/mini-ai-1c#23); a relay that cuts the link
            # away still names the provider ("Error from provider (Alibaba): You exceeded your
            # current quota, please check you...", anomalyco/opencode#23687). Its own money
            # errors are Arrearage and overdue-payment, read above and by the deny rules.
            return Finding(Verdict.CONGESTION, Tier.FIRM, "dashscope-error-code", "Alibaba quota")
        return None
    anchor = found.group("anchor")
    if anchor is not None:
        if anchor.lower() == "overdue-payment":
            return Finding(Verdict.FATAL, Tier.FIRM, "dashscope-error-code", f"#{anchor}")
        return Finding(Verdict.CONGESTION, Tier.FIRM, "dashscope-error-code", f"#{anchor}")
    code = found.group("code")
    return Finding(Verdict.CONGESTION, Tier.FIRM, "dashscope-error-code", f"code {code}")


_ZERO_LIMIT = re.compile(
    r"""\bquota_limit_value["']?\s{0,3}[:=]\s{0,3}["']?0(?![.\d])|\blimit: 0(?![.\d])"""
)
_QUOTA_WORDS = re.compile(r"\bquota|Resource has been exhausted|RESOURCE_EXHAUSTED", re.IGNORECASE)
_GOOGLE = re.compile(
    r"RESOURCE_EXHAUSTED|ResourceExhausted|(?:generativelanguage|aiplatform)\.googleapis\.com|"
    r"ai\.google\.dev/gemini-api/docs/rate-limits"
)
_RETRY_DELAY = re.compile(r"retryDelay|retry_delay|\bPlease retry in \d", re.IGNORECASE)
_LONG_OR_MONEY = re.compile(
    r"per[ _-]?(?:day|week|month)|PerDay|PerWeek|PerMonth|daily|weekly|monthly|prepa(?:y|id)|"
    r"credits?\b|balance|BILLING_DISABLED|billing (?:is )?(?:disabled|not enabled)",
    re.IGNORECASE,
)


_ALLOCATION = re.compile(
    r"quota (?:metrics?|limits?)[^\n]{0,80}?[a-z_./]*?_(?:gpus?|tpus?|cpus?|nodes?|instances?|"
    r"replicas?|endpoints?|deployments?|disks?|storage)\b",
    re.IGNORECASE,
)


def _zero_limit(text: str) -> Finding | None:
    """A quota whose limit is 0 (``quota_limit_value: "0"``, "limit: 0"): no slot ever frees,
    whatever the period (tech-shrimp/gemini-playground#10)."""
    low = text.lower()
    if "quota" not in low and "exhausted" not in low:
        return None  # a cheap test first: both readers below need one of these words
    if _ZERO_LIMIT.search(text) is not None and _QUOTA_WORDS.search(text) is not None:
        return Finding(Verdict.FATAL, Tier.FIRM, "google-quota", "quota limit 0")
    allocation = _ALLOCATION.search(text)
    if allocation is not None:
        # an allocation quota (GPUs, nodes, instances) frees when someone raises it, not with
        # time: "The following quota metrics exceed quota limits: aiplatform.googleapis.com/
        # custom_model_training_nvidia_l4_gpus" (Vertex AI custom jobs, held-out-18)
        name = allocation.group(0).rsplit("/", 1)[-1].rsplit(" ", 1)[-1]
        return Finding(Verdict.FATAL, Tier.FIRM, "google-quota", f"allocation quota {name}")
    return _google_window(text, low)


def _google_window(text: str, low: str) -> Finding | None:
    """Google's quota sentence with a retry delay and no long period or money: a window.

    Gemini words its per-minute 429 as "You exceeded your current quota, please check your
    plan and billing details", OpenAI's sentence for an exhausted account, and adds the wait
    (``RetryInfo.retryDelay``, "Please retry in 30.6s"): googleapis/python-genai#1875,
    dyad-sh/dyad#1469. Without the delay the same sentence stays a deny rule's (an exhausted
    free tier names no wait)."""
    if "exceeded your current quota" not in low and "quota exceeded for" not in low:
        return None
    if _GOOGLE.search(text) is None:
        return None
    if _RETRY_DELAY.search(text) is None or _LONG_OR_MONEY.search(text) is not None:
        return None
    return Finding(Verdict.CONGESTION, Tier.FIRM, "google-quota", "Google quota with a retry delay")


def _quota(text: str) -> Finding | None:
    periods = []
    for found in _QUOTA_ID.finditer(text):
        periods.append(((found.group("camel") or found.group("snake")).lower(), found.group(0)))
        if len(periods) >= 16:
            break
    if not periods:
        return _zero_limit(text)
    low = text.lower()
    if "quota" not in low and "limit" not in low and "resource_exhausted" not in low:
        return None
    for period, token in periods:
        if period in _LONG:
            return Finding(Verdict.FATAL, Tier.FIRM, "google-quota", f"quota {token}")
    if _ZERO_LIMIT.search(text) is not None:
        # a per-minute quota whose limit is 0 never frees a slot
        return Finding(Verdict.FATAL, Tier.FIRM, "google-quota", "quota limit 0")
    return Finding(Verdict.CONGESTION, Tier.FIRM, "google-quota", f"quota {periods[0][1]}")


def _google_status(text: str, pairs: list[tuple[str, str]]) -> Finding | None:
    found: list[tuple[str, str]] = [
        ("status", value) for key, value in pairs if key == "status" and value in _GOOGLE_STATUS
    ]
    found += [("StatusCode", grpc.group("code")) for grpc in _GRPC_CODE.finditer(text)]
    known = [(key, value) for key, value in found if value in _GOOGLE_STATUS]
    if not known:
        return None
    for key, value in known:
        if _GOOGLE_STATUS[value] is Verdict.FATAL:
            return Finding(Verdict.FATAL, Tier.PERMANENT, "google-status", f"{key}={value}")
    key, value = known[0]
    return Finding(_GOOGLE_STATUS[value], Tier.RETRYABLE, "google-status", f"{key}={value}")


def _error_info(pairs: list[tuple[str, str]]) -> Finding | None:
    for key, value in pairs:
        if key != "reason":
            continue
        if value in _CAPACITY_REASONS:
            # the server's own capacity, named by the upstream: more precise than any prose
            # a relay wraps it in ("所有账号配额已耗尽或请求失败", lbjlaq/Antigravity-Manager#186)
            return Finding(Verdict.CONGESTION, Tier.FIRM, "google-error-info", f"reason={value}")
        verdict = _ERROR_INFO.get(value) or _ERROR_INFO.get(value.lower())
        if verdict is not None:
            tier = Tier.PERMANENT if verdict is Verdict.FATAL else Tier.RETRYABLE
            return Finding(verdict, tier, "google-error-info", f"reason={value}")
    return None


def _aws(text: str, pairs: list[tuple[str, str]], headers: Mapping[str, str]) -> Finding | None:
    candidates: list[tuple[str, str]] = []
    header = headers.get("x-amzn-errortype")
    if header is not None:
        candidates.append(("x-amzn-errortype", header.split(":", 1)[0].strip()))
    for key, value in pairs:
        if key in _AWS_KEYS:
            candidates.append((key, value.split("#")[-1]))
    candidates += [("exception", name.group("name")) for name in _AWS_NAME.finditer(text[:4096])]
    for where, value in candidates:
        known = _AWS_LOWER.get(value.lower())
        if known is not None:
            name, verdict = known
            tier = Tier.PERMANENT if verdict is Verdict.FATAL else Tier.RETRYABLE
            return Finding(verdict, tier, "aws-error-type", f"{where}={name}")
    return None


_PLAN_WORD = re.compile(r"free|usage|quota|credit|budget|billing|spend|balance|plan|subscription")
_LIMIT_WORD = re.compile(r"limit|exceed|exhaust|insufficient|reached|depleted|runout|notenough")


_SHORT_WINDOW = re.compile(
    r"(?:\bper|/|\ban?|\beach|\bevery)[ _-]?(?:minute|min|second|sec|hour)\b|"
    r"\b(?:rpm|tpm|rps|tps|qps|qpm)\b",
    re.IGNORECASE,
)


def _named_plan_limit(value: str) -> bool:
    """An error type or code whose name is a plan's or an account's limit, in any casing:
    ``FreeUsageLimitError`` (OpenCode Zen, anomalyco/opencode#42029), ``quota_exceeded``
    (GitHub Copilot's 402), ``UsageLimitExceeded``, ``CreditsExhausted``; a rate limit's
    name (``rate_limit_exceeded``, ``RateLimitError``) is not one. The caller drops it when
    the text names a short window: Cerebras' ``request_quota_exceeded`` and Together's
    ``credit_limit`` come with "Requests per minute limit exceeded" and "600 RPM"."""
    name = value.lower().replace("_", "").replace("-", "").replace(".", "")
    if "rate" in name or "throttl" in name or len(name) > 60:
        return False
    return _PLAN_WORD.search(name) is not None and _LIMIT_WORD.search(name) is not None


_ZHIPU_CODE = re.compile(r"""["']code["']\s{0,3}:\s{0,3}["'](?P<code>1[0-3]\d\d)["']""")
_BAIDU_CODE = re.compile(r"""["']error_code["']\s{0,3}:\s{0,3}(?P<code>\d{1,6})\b""")
_ZHIPU: Mapping[str, Verdict] = MappingProxyType(
    {
        **dict.fromkeys(("1000", "1001", "1002", "1003", "1004"), Verdict.FATAL),
        **dict.fromkeys(("1110", "1111", "1112", "1113", "1121"), Verdict.FATAL),
        **dict.fromkeys(("1211", "1212", "1213", "1214", "1215"), Verdict.FATAL),
        **dict.fromkeys(("1220", "1221", "1222", "1261", "1301"), Verdict.FATAL),
        **dict.fromkeys(("1304", "1309", "1310"), Verdict.FATAL),
        **dict.fromkeys(("1302", "1303", "1305"), Verdict.CONGESTION),
    }
)
_BAIDU: Mapping[str, Verdict] = MappingProxyType(
    {
        **dict.fromkeys(("17", "19", "110", "111"), Verdict.FATAL),
        **dict.fromkeys(("18", "336501", "336502"), Verdict.CONGESTION),
        "336100": Verdict.TRANSIENT,
    }
)


def _numbered(text: str) -> Finding | None:
    """A documented numbered error code: Zhipu's quoted four-digit ``code``, or Baidu
    Qianfan's ``error_code`` beside an ``error_msg``. A bare number means nothing across
    providers (Cloudflare's 1015 is a rate limit), so each table is read only in its own
    provider's shape: Zhipu quotes its codes, Cloudflare does not."""
    found = _ZHIPU_CODE.search(text)
    table, where = _ZHIPU, "code"
    if found is None or found.group("code") not in _ZHIPU:
        found = _BAIDU_CODE.search(text) if "error_msg" in text else None
        table, where = _BAIDU, "error_code"
    if found is None:
        return None
    verdict = table.get(found.group("code"))
    if verdict is None:
        return None
    tier = Tier.PERMANENT if verdict is Verdict.FATAL else Tier.RETRYABLE
    return Finding(verdict, tier, "numbered-error-code", f"{where}={found.group('code')}")


_SENSITIVE_CODE = re.compile(
    r"(?:Input|Output)(?:Text|Image|Video|Audio)(?:SensitiveContentDetected|RiskDetection)"
)
"""Volcengine Ark's content-security codes (``InputTextSensitiveContentDetected``)."""


def _types(pairs: list[tuple[str, str]], text: str) -> Finding | None:
    retryable = None
    for key, value in pairs:
        if key not in _TYPE_KEYS:
            continue
        verdict = _TYPES.get(value.lower())
        if verdict is None and _SENSITIVE_CODE.match(value) is not None:
            verdict = Verdict.FATAL
        if verdict is None and _named_plan_limit(value) and _SHORT_WINDOW.search(text) is None:
            verdict = Verdict.FATAL
        if verdict is Verdict.FATAL:
            return Finding(verdict, Tier.PERMANENT, "provider-error-type", f"{key}={value}")
        if verdict is not None and retryable is None:
            retryable = Finding(verdict, Tier.RETRYABLE, "provider-error-type", f"{key}={value}")
    return retryable


def _problem(document: dict[str, object]) -> Finding | None:
    status = document.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        return None
    if not ({"title", "detail"} & document.keys()):
        return None
    if status == 429 or 500 <= status <= 599:
        return Finding(Verdict.CONGESTION, Tier.RETRYABLE, "problem-details", f"status={status}")
    return None


_WAIT = re.compile(
    r"""\bplease wait (?P<num>\d{1,9}(?:\.\d{1,6})?) ?"""
    r"""(?P<unit>ms|s|sec|seconds?|m|min|minutes?|h|hours?)\b|"""
    r"""["']estimated_time["']\s{0,3}:\s{0,3}(?P<estimate>\d{1,9}(?:\.\d{1,17})?)""",
    re.IGNORECASE,
)
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


_RESET = re.compile(
    r"\b(?:will |should )?(?:resets?|renews?|refresh(?:es)?|be available again) (?:after|in)\s",
    re.IGNORECASE,
)


def named_wait(text: str) -> float | None:
    """A wait the body names in a form the header-style parsers do not read: "Please wait
    84152s" (a relay's cool-down), Hugging Face's ``estimated_time`` of a loading model, or
    when a quota resets ("Your quota will reset after 8h44m7s", google-gemini/gemini-cli via
    held-out-17: a wait that long is handed back at once)."""
    scan = text[:_MAX_SCAN]
    low = scan.lower()
    found = _WAIT.search(scan) if "wait" in low or "estimated_time" in low else None
    if found is None:
        if not any(word in low for word in ("reset", "renew", "refresh", "available again")):
            return None  # a cheap test before the pattern
        reset = _RESET.search(scan)
        return None if reset is None else _duration(scan, reset.end())
    if found.group("estimate") is not None:
        return float(found.group("estimate"))
    unit = found.group("unit").lower()
    scale = _SCALE["ms"] if unit == "ms" else _SCALE[unit[0]]
    return float(found.group("num")) * scale


def read(text: str, headers: Mapping[str, str]) -> list[Finding]:
    """Every finding the readers make in ``text`` (an error body) and ``headers``, in order."""
    scan = text[:_MAX_SCAN].replace("\\", "")
    pairs = _pairs(scan)
    findings = [
        _sampling(pairs),
        _fetch_timeout(scan),
        _dashscope(scan),
        _quota(scan),
        _error_info(pairs),
        _google_status(scan, pairs),
        _aws(scan, pairs, headers),
        _numbered(scan),
        _types(pairs, scan),
    ]
    stripped = text.lstrip()
    if stripped.startswith("{") and len(stripped) <= _MAX_SCAN:
        with contextlib.suppress(ValueError, RecursionError):
            # JSON text that starts with "{" decodes to an object or raises
            findings.append(_problem(cast("dict[str, object]", json.loads(stripped))))
    return [finding for finding in findings if finding is not None]


def readers_markdown() -> list[str]:
    """The README's table of the structured readers, as Markdown lines."""
    lines = [
        "| reader | reads | verdicts | seen |",
        "|---|---|---|---|",
    ]
    for reader in READERS:
        cells = (f"`{reader.name}`", reader.fields, reader.verdicts, reader.seen)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines
