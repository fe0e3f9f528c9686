"""The default classifier: one attempt's outcome in, a verdict and its reason out."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence

from ._exceptions import meaning_of
from ._shape import judge_400, upstream_4xx, wraps_a_4xx
from ._signatures import BARE_429_ATTEMPTS, RULES, Rule, status_default
from ._structured import Finding, Tier, named_wait, read
from ._verdict import Classification, Outcome, Verdict
from ._waits import body_wait

__all__ = ["classify", "error_text"]

_MAX_BODY = 262144
# The rules read at most this many characters of error text, and of each JSON field: real
# error messages are far shorter (the longest error text of the corpus's 1,031 real bodies is
# 1,436 characters), and 31 patterns over a 64 KiB garbage body cost ~100 ms of CPU, which an
# event loop should not spend on one error response.
_MAX_TEXT = 4096
_MAX_LINE = 2048
"""Bytes of a body looked at, whatever the caller passed."""
_MAX_DEPTH = 32
"""Nesting levels of JSON walked."""
_MAX_NODES = 4096
"""JSON values visited per body, nested string-encoded JSON included."""
_MAX_ENCODED = 3
"""Levels of JSON found inside JSON strings that are decoded."""
_MAX_LINES = 512

_KEYS = frozenset(
    {
        "message",
        "msg",
        "type",
        "code",
        "status",
        "status_code",
        "statuscode",
        "detail",
        "details",
        "title",
        "error",
        "error_code",
        "errorcode",
        "error_type",
        "error_message",
        "errormessage",
        "error_msg",
        "errmsg",
        "err_msg",
        "error_description",
        "status_msg",
        "status_message",
        "reason",
        "raw",
        "description",
        "param",
        "internalcode",
        "quotaid",
        "exception-type",
        ":exception-type",
    }
)
"""Fields whose values carry the error (compared lower-case)."""

_SPACE = re.compile(r"\s+")


class _Walk:
    """Collects ``key: value`` lines from a decoded JSON document, within fixed bounds."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.nodes = 0

    def value(self, node: object, key: str | None, depth: int, encoded: int) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES or depth > _MAX_DEPTH or len(self.lines) >= _MAX_LINES:
            return
        if isinstance(node, dict):
            for name, item in node.items():
                self.value(item, str(name).lower(), depth + 1, encoded)
        elif isinstance(node, list):
            for item in node:
                self.value(item, key, depth + 1, encoded)
        elif isinstance(node, str):
            self.string(node, key, depth, encoded)
        elif isinstance(node, int | float) and not isinstance(node, bool) and key in _KEYS:
            self.lines.append(f"{key}: {node}")

    def string(self, text: str, key: str | None, depth: int, encoded: int) -> None:
        if key is not None and key not in _KEYS:
            return
        if encoded < _MAX_ENCODED:
            inner = _json(text)
            if inner is not _NOT_JSON:
                self.value(inner, key, depth + 1, encoded + 1)
                return
        flat = _SPACE.sub(" ", text).strip()
        flat = flat[:_MAX_LINE]
        self.lines.append(flat if key is None else f"{key}: {flat}")
        if encoded < _MAX_ENCODED:
            embedded = _embedded(text)
            if embedded is not _NOT_JSON:
                self.value(embedded, None, depth + 1, encoded + 1)


_NOT_JSON = object()


def _json(text: str) -> object:
    """``text`` decoded as JSON if it is a JSON object or array, else ``_NOT_JSON``."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return _NOT_JSON
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _embedded(text: str) -> object:
    """The JSON object starting at the first ``{`` of free text ("Error 400: {...}")."""
    start = text.find("{")
    if start <= 0:
        return _NOT_JSON
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return _NOT_JSON
    return value


def _decode(body: bytes) -> str:
    return body[:_MAX_BODY].decode("utf-8", errors="replace").lstrip("\ufeff")


def error_text(body: bytes) -> str:
    """The text the rules' ``match`` patterns run over.

    A JSON body gives one ``key: value`` line per error-carrying field (string-encoded JSON
    and JSON embedded after a prefix are decoded too, to a bounded depth). Any other body gives
    its decoded text, followed by the lines of a JSON object embedded in it. At most 4096
    characters in all, and 2048 of any one field.
    """
    return _text_of(_decode(body))


def _text_of(text: str) -> str:
    return _gather(text)[:_MAX_TEXT]


def _gather(text: str) -> str:
    walk = _Walk()
    document = _json(text)
    if document is not _NOT_JSON:
        walk.value(document, None, 0, 1)
        return "\n".join(walk.lines) if walk.lines else text
    if text.lstrip().startswith('"'):
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, str):
            walk.string(decoded, None, 0, 1)
            return "\n".join(walk.lines)
    embedded = _embedded(text)
    if embedded is not _NOT_JSON:
        walk.value(embedded, None, 0, 1)
    return "\n".join([text, *walk.lines])


def _classify_exception(exception: BaseException) -> Classification:
    known = meaning_of(exception)
    if known is not None:
        return Classification(known.verdict, known.reason)
    return Classification(Verdict.FATAL, f"exception {type(exception).__name__}")


def _from_finding(finding: Finding, wait: float | None) -> Classification:
    reason = f"field {finding.field} ({finding.reader})"
    return Classification(finding.verdict, reason, wait, finding.attempts)


_ROLLING = frozenset({"quota-period", "upgrade-required"})
"""Deny rules whose limit is a window when the body names a wait: the wait decides.

A period or plan limit that says when it frees is a window: OpenAI's rolling per-day limit
names its 8.64 s; a relay's cool-down ("Please wait 84152s") is longer than
``max_retry_after`` and so is returned at once."""

_INNER_STATUS = re.compile(
    r"""(?<![\w-])["']?(?:code|status|status_code|statuscode|upstream_status|error_code)["']?"""
    r"""\s{0,3}[:=]\s{0,3}["']?(?P<status>[45]\d\d)(?![\w.])"""
)
"""A status code carried inside a stream error event (``{"error": {"code": 429, …}}``)."""


_SERVER_STATE = re.compile(
    r"out of memory|oomkill|oom-kill|cuda|resource|open files|loading|warming|starting|restart|"
    r"maintenance|deploy|traceback|panic|segfault|killed|"
    r"upstream|backend|gateway|origin|response from|no response|invalid response"
)
"""A 5xx that names the server's own state (memory, loading, a crash) or the path behind it
(an upstream, a backend, a gateway, a response that never came): its cause is not the request."""
_INNER_RETRYABLE = re.compile(
    r"""(?:status(?: code)?|code|http|param)["': =]{1,4}(?P<status>5\d\d|429)\b""",
)
"""A relay's 5xx that names the upstream's own 5xx or 429 ("bad response status code 503");
the response's own status repeated in its body (llama.cpp's ``"code": 500``) is not one."""


_UPSTREAM_RETRYABLE = re.compile(
    r"""(?:status(?: code)?|code|http|param)["': =]{1,4}(?P<a>5\d\d|429)\b|"""
    r"""\b(?:provider|upstream)\s?\((?P<b>5\d\d|429)\)|"""
    r"""\b(?:upstream|provider|backend) (?:returned|responded|answered|error)[: ]{1,3}"""
    r"""(?:with |status )?(?P<c>5\d\d|429)\b|"""
    r"""\b(?P<d>5\d\d) (?:bad gateway|service (?:temporarily )?unavailable|"""
    r"""gateway time-?out|internal server error)\b"""
)
"""An upstream 5xx or 429 named inside a relay's refused status (searched lower-cased)."""


def _upstream_retryable(lowered: str, status: int) -> int | None:
    """The upstream 5xx or 429 a relay's 403, 404, 422 … carries, if it names one.

    Relays answer with a status of their own and put the upstream's inside: claude-code-
    router's 404 "Error from provider: 503 Service Unavailable", new-api's "bad response
    status code 503", sub2api's "upstream error: status 503". The upstream's status says what
    happened; the relay's only that it relayed a failure. A deny rule or a permanent field
    has decided before this is asked."""
    for found in _UPSTREAM_RETRYABLE.finditer(lowered[:4096]):
        inner = int(next(group for group in found.groups() if group is not None))
        if inner != status:
            return inner
    return None


def _names_another_retryable(head: str, status: int) -> bool:
    return any(int(found.group("status")) != status for found in _INNER_RETRYABLE.finditer(head))


_MAPPED = frozenset({"provider-invalid-request"})
"""Rules that read a relay's own mapped message, which says nothing of the cause."""
_DETAIL = re.compile(r"\bupstream error:")


def _upstream_detail(lowered: str) -> Classification | None:
    """The shape rule's fatal verdict on the upstream error a relay's mapped message carries.

    free-claude-code maps every upstream 400 to "Invalid request sent to provider." and then
    quotes the upstream's own error under "Upstream error:"; when that error names a cause
    ("The `reasoning_content` in the thinking mode must be passed back", held-out-20), the
    upstream's words decide, not the relay's mapping."""
    found = _DETAIL.search(lowered)
    if found is None:
        return None
    part = lowered[found.end() :]
    shape = judge_400(part, part)
    return shape if shape.verdict is Verdict.FATAL else None


_PATH_RULES = frozenset({"connection-fault", "stream-timeout", "model-output-fault"})
"""Retryable rules that name a fault of the path or the draw, as congestion rules name load:
a 5xx either matches is not judged by the shape rule (a 500's own "internal server error"
boilerplate names neither)."""


def _as_a_400(
    text: str,
    lowered: str,
    headers: Mapping[str, str],
    wait: float | None,
    status: int,
    load: bool,
) -> Classification | None:
    """The shape rule's fatal verdict for a 5xx body, or ``None`` when the 5xx keeps its way.

    A relay's 5xx that carries an upstream 4xx is judged as a 400 is. Any other 5xx is too
    when it names no wait (no ``Retry-After``, none in the body), no upstream 5xx or 429 and
    nothing of the server's own state: the corpus's 5xx bodies that name a cause as a
    specific 400 does ("Requested input length 99009 exceeds maximum input length 8192",
    langchain-ai/langchain#25671; "Invalid llm model list", BerriAI/litellm#4143) fail again,
    and none of its 67 retryable 5xx bodies names one (tests/data, held-out-11 to -14).

    A 5xx that a retryable rule reads as load or as a fault of the path (``load``: "503 Too
    many requests", "Maximum number of concurrent requests exceeded", a connection reset) is
    never judged here: a rate's words ("too many", "exceeds the limit of 64") are not a
    refused request's, whatever the verbs they share."""
    inner = upstream_4xx(lowered)
    wrapped = inner is not None
    if not wrapped and (load or wait is not None or "retry-after" in headers):
        # a retryable rule knows this 5xx (load, throttling, a broken connection): "503 Too
        # many requests" names its cause as a rate does, not as a refused request does
        return None
    shape = judge_400(text, lowered)
    if shape.verdict is not Verdict.FATAL:
        if inner is not None and inner.start() > 0:
            # The relay's own words come before the upstream's 4xx (LiteLLM's
            # "ServiceUnavailableError: … BadRequestError: … Function call is missing a
            # thought_signature", held-out-44): the upstream's words, from its status on, decide.
            start = inner.start()
            tail = judge_400(text[start:], lowered[start:])
            if tail.verdict is Verdict.FATAL:
                return tail
        return None
    if wrapped:
        return shape
    head = lowered[:4096]
    if _SERVER_STATE.search(head) is not None or _names_another_retryable(head, status):
        return None
    return shape


def _stamp(finding: Finding, status: int | None, stream: bool) -> bool:
    """A relay's generic server-error type (``api_error``) on a refused 4xx: no rescue.

    claude-code-router stamps ``type: api_error`` on whatever the provider answered, a 404
    for a wrong base URL included (musistudio/claude-code-router#398); Ollama stamps it on
    every refusal. The status says more than the stamp there; on a 400 or a stream event,
    where the status says nothing, the stamp still counts."""
    return (
        finding.reader == "provider-error-type"
        and finding.verdict is Verdict.TRANSIENT
        and not stream
        and status != 400
    )


def _inner(text: str, lowered: str, wait: float | None) -> Classification | None:
    """A stream error event judged by the status it names, like a response of that status."""
    found = _INNER_STATUS.search(text)
    if found is None:
        return None
    inner = int(found.group("status"))
    if inner == 400:
        shape = judge_400(text, lowered)
        return Classification(shape.verdict, f"{shape.reason} (inner 400)", wait)
    return Classification(status_default(inner), f"inner status {inner}", wait)


def _from_rule(rule: Rule, wait: float | None) -> Classification:
    if wait is not None and rule.name in _ROLLING:
        # "requests per day (RPD) … Please try again in 8.64s": a rolling window that frees a
        # slot after the named wait. The policy retries a short wait and returns a long one at
        # once (wait > max_retry_after), as it does for any quota's wait.
        return Classification(Verdict.CONGESTION, f"rule {rule.name} (waits)", wait)
    return Classification(rule.verdict, f"rule {rule.name}", wait, rule.attempts)


@functools.lru_cache(maxsize=1024)
def _needle_letters(rule: Rule) -> tuple[frozenset[str], ...] | None:
    """The characters of each of ``rule``'s needles; ``None`` for a rule without needles or
    with an ``applies`` of its own."""
    if not rule.needles or type(rule).applies is not Rule.applies:
        return None
    return tuple(frozenset(needle) for needle in rule.needles)


def _may_apply(rule: Rule, letters: frozenset[str]) -> bool:
    """Whether one of ``rule``'s needles can be in a text made of ``letters``: a needle with a
    character the text lacks is not searched for, so a hostile run of a few characters costs
    no needle scan (of 4 KiB, for each of some 400 needles)."""
    needed = _needle_letters(rule)
    return needed is None or any(chars <= letters for chars in needed)


def _classify_response(outcome: Outcome, rules: Sequence[Rule]) -> Classification:
    decoded = _decode(outcome.body)
    text = _text_of(decoded)
    lowered = text.lower()
    letters = frozenset(lowered)
    wait = body_wait(decoded[: 2 * _MAX_TEXT])
    if wait is None:
        wait = named_wait(decoded)
    status = outcome.status
    if wait is not None and status is not None and 520 <= status <= 527 and "cloudflare" in decoded:
        # Cloudflare's own error page for an origin it cannot reach names a generic
        # retry_after (120 s for a 522, held-out-18): the edge's estimate, not the origin's
        # instruction, so the status's backoff decides, as for its HTML pages.
        wait = None
    headers = outcome.headers
    findings = read(decoded, headers)
    for finding in findings:
        if finding.tier is Tier.FIRM:
            return _from_finding(finding, wait)
    for rule in rules:
        if (
            rule.verdict is Verdict.FATAL
            and _may_apply(rule, letters)
            and rule.applies(status, headers, text, lowered)
        ):
            return _from_rule(rule, wait)
    for finding in findings:
        if finding.tier is Tier.PERMANENT:
            return _from_finding(finding, wait)
    allowed = next(
        (
            rule
            for rule in rules
            if rule.verdict is not Verdict.FATAL
            and _may_apply(rule, letters)
            and rule.applies(status, headers, text, lowered)
        ),
        None,
    )
    if status is not None and status >= 500:
        # A relay's 5xx around the upstream's 4xx, or a server that wraps its refusal in a
        # 5xx: a cause named as a 400 names it is judged as a 400 is.
        load = allowed is not None and (
            allowed.verdict is Verdict.CONGESTION or allowed.name in _PATH_RULES
        )
        shape = _as_a_400(text, lowered, headers, wait, status, load)
        if shape is not None:
            return Classification(Verdict.FATAL, f"{shape.reason} inside a {status}", wait)
    if allowed is not None:
        if status == 400 and allowed.name == "internal-error" and wraps_a_4xx(lowered):
            # A relay's server-error label around the upstream's own 400 (Letta's
            # "INTERNAL_SERVER_ERROR: Bad request to Anthropic: Error code: 400", claude-code-
            # router's api_error around SambaNova's 400, held-out-23/-24): the upstream's
            # words decide, as they do inside a relay's 5xx; words that name nothing keep an
            # unknown 400's capped retry (Warp's "finished unexpectedly with internal error: …
            # 400 Bad Request {"message":"Bad Request"}", held-out-34).
            shape = judge_400(text, lowered)
            return Classification(shape.verdict, f"{shape.reason} (upstream 400)", wait)
        if allowed.name in _MAPPED:
            detail = _upstream_detail(lowered)
            if detail is not None:
                return Classification(Verdict.FATAL, f"{detail.reason} (upstream detail)", wait)
        if allowed.name == "throttling":
            # the 429's reason phrase, "Too Many Requests", and nothing else
            bare = _bare_429(status, wait, lowered, headers)
            if bare is not None:
                return bare
        return _from_rule(allowed, wait)
    if outcome.stream_error or not status_default(status).retryable or status == 400:
        # A retryable field rescues a 400, a stream event or another refused status; a 429 or
        # 5xx keeps its status default (a 503's "server_error" still blocks, as a 503 should).
        for finding in findings:
            if not _stamp(finding, status, outcome.stream_error):
                return _from_finding(finding, wait)
    if outcome.stream_error:
        inner = _inner(text, lowered, wait)
        if inner is not None:
            return inner
        # A stream's error event says what a 400 would: a specific cause is as permanent
        # there (the corpus's stream events that name one all fail again: Bedrock's
        # "messages.1.content.0.type: Expected `thinking`" via Portkey, vLLM's "greater than
        # max allowed"); the rest keeps the capped retry.
        shape = judge_400(text, lowered)
        if shape.verdict is Verdict.FATAL:
            return Classification(Verdict.FATAL, f"{shape.reason} (stream event)", wait)
        return Classification(Verdict.UNRECOGNISED, "stream error event", wait)
    if status == 400:
        shape = judge_400(text, lowered)
        return Classification(shape.verdict, shape.reason, wait)
    bare = _bare_429(status, wait, lowered, headers)
    if bare is not None:
        return bare
    default = status_default(status)
    if not default.retryable and status is not None:
        upstream = _upstream_retryable(lowered, status)
        if upstream is not None:
            reason = f"upstream status {upstream} inside a {status}"
            return Classification(status_default(upstream), reason, wait)
    return Classification(default, f"status {status}", wait)


_REASON_PHRASE = re.compile(r"\(?too many requests\)?")
_WAIT_HEADERS = ("retry-after", "retry-after-ms", "x-ms-retry-after-ms")
_LOAD_WORDS = re.compile(
    r"slow down|concurren|exhaust|capacity|busy|traffic|overload|throttl|rate|limit|quota"
    r"|too many|try again|retry|later|稍后|频|繁忙|限|并发|配额|额度|过多|过大"
)
"""Words of load or of a limit: a 429 that says any of them is not bare, even where no rule
knows its wording ("slow down", "High concurrency usage of this API", Vertex's "Resource has
been exhausted (e.g. check quota)")."""


def _bare_429(
    status: int | None, wait: float | None, lowered: str, headers: Mapping[str, str]
) -> Classification | None:
    """Congestion of at most :data:`BARE_429_ATTEMPTS` tries for a 429 whose lower-cased error
    text and headers name nothing but the status (no wait, no rate-limit header, no word of
    load or limit, a generic or HTML shape); ``None`` for any other answer."""
    if status != 429 or wait is not None:
        return None
    if any(name in headers for name in _WAIT_HEADERS):
        return None
    if any("ratelimit" in name for name in headers):
        return None
    # The status's own reason phrase says no more than the status (.NET's "Response status code
    # does not indicate success: 429 (Too Many Requests).", an app's "接口响应错误 - Too Many
    # Requests" for a used-up free credit, held-out-26/-27).
    rest = _REASON_PHRASE.sub(" ", lowered[:_MAX_LINE])
    if _LOAD_WORDS.search(rest) is not None:
        return None
    if judge_400(rest, rest).reason not in {"shape: generic", "shape: an HTML page"}:
        return None
    return Classification(
        Verdict.CONGESTION, "status 429 (nothing else named)", None, BARE_429_ATTEMPTS
    )


def classify(outcome: Outcome, rules: Sequence[Rule] = RULES) -> Classification:
    """Classify one attempt's outcome; never raises.

    An exception is classified by its class names (httpx and httpx2 alike): connect errors,
    timeouts and dropped connections are ``TRANSIENT``, anything else ``FATAL``. A response (or
    the error event of a 200 stream, ``stream_error=True``) is read in this order: the firm
    structured fields, the deny rules, the permanent structured fields, for a 5xx the
    unknown-400 shape rule (see :func:`_as_a_400`), the allow rules, the retryable structured
    fields (for a 400, a stream event or a refused status), then for a stream event the status
    it carries and its shape, for a 400 its shape, for a refused status (403, 404, 422 …) the
    upstream 5xx or 429 a relay names inside it, for anything else its status's default (a 429
    that names nothing but its status: congestion of at most ``BARE_429_ATTEMPTS`` tries). The
    reason names the rule, field, shape or status; ``wait`` is a wait the body names.
    ``x-should-retry`` is not read here.
    """
    try:
        if outcome.exception is not None and outcome.status is None:
            return _classify_exception(outcome.exception)
        return _classify_response(outcome, rules)
    except Exception as error:  # a defect here must not turn a retryable hiccup into a crash
        return Classification(Verdict.UNRECOGNISED, f"classifier error {type(error).__name__}")
