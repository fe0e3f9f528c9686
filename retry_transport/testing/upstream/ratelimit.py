"""A provider's rate limiter for the upstream: token buckets per API key and model.

Give an `Upstream` a `ProviderRateLimit` and every request is first charged to the buckets of its
scope, the (API key, model) pair: one request and an estimate of its tokens. A request over
either limit is answered ``429`` in the provider's error shape (by path: Anthropic, Gemini or
OpenAI) without reaching the script; every answer, ``429`` or not, carries the rate-limit
headers of the chosen `Dialect`. Buckets refill continuously, ``requests`` (or ``tokens``) per
``window_seconds``, from a clock the test injects, so a 60-requests-per-minute limit can be
played in milliseconds of a fake clock, or in a short real window.
"""

from __future__ import annotations

import json as _json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeAlias, get_args
from urllib.parse import parse_qs, urlsplit

from .._received import Received
from .providers import anthropic_error, gemini_error, openai_error
from .wire import Reply

__all__ = ["DIALECTS", "Dialect", "ProviderRateLimit", "Scope", "ScopeCounts", "go_duration"]

Dialect: TypeAlias = Literal["openai", "anthropic", "azure", "groq", "ietf", "none"]
"""Which provider's rate-limit headers to send:

- ``"openai"`` and ``"groq"``: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``,
  resets as Go durations (``6m0s``, ``1.5s``, ``12ms``).
- ``"anthropic"``: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
  {limit,remaining,reset}``, resets as RFC 3339 times.
- ``"azure"``: ``x-ratelimit-remaining-requests`` and ``-tokens`` only, and ``retry-after-ms``
  next to ``retry-after`` on a 429. Azure OpenAI counts requests over 10 s (a sixth of the
  per-minute limit) and tokens over a minute: in this dialect ``window_seconds`` is the
  requests' window and the tokens' is six times as long (``window_seconds=10``, ``requests``
  a sixth of the RPM and ``tokens`` the TPM: as Azure does).
- ``"ietf"``: the IETF ``RateLimit-Policy`` and ``RateLimit`` structured fields (the httpapi
  working group's draft), one item per limit, named ``"requests"`` and ``"tokens"`` (the
  latter with ``qu="tokens"``); windows and resets in whole seconds, rounded up.
- ``"none"``: no header at all, not even ``retry-after`` on a 429.
"""

DIALECTS: tuple[Dialect, ...] = get_args(Dialect)
"""Every `Dialect`, for parametrised tests."""

_AZURE = re.compile(r"^/openai/deployments/([^/]+)/")
_GEMINI = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):")
_SLACK = 1e-6  # seconds: a wait this short is clock rounding (an epoch float has ~0.2 us steps)
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Scope:
    """What a bucket is kept for: an API key (``""``: none sent) and a model (``""``: none
    named)."""

    key: str
    model: str


@dataclass(frozen=True, slots=True)
class ScopeCounts:
    """What a `ProviderRateLimit` saw of one scope: ``requests`` received and ``limited`` of them
    answered ``429``."""

    requests: int = 0
    limited: int = 0


class _Bucket:
    """A token bucket: ``capacity`` units, refilled at ``capacity / window`` per second."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.level = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(float(self.capacity), self.level + elapsed * self.rate)
        self.updated = now

    def resize(self, capacity: int, window: float, now: float) -> None:
        self.refill(now)
        self.capacity = capacity
        self.rate = capacity / window
        self.level = min(self.level, float(capacity))

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` units are in the bucket (infinite if it cannot hold them)."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate)

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate

    @property
    def remaining(self) -> int:
        return math.floor(self.level)


class _State:
    __slots__ = ("input", "output", "requests", "tokens")

    def __init__(self, limit: ProviderRateLimit, now: float) -> None:
        window = limit.window_seconds
        self.requests = _Bucket(limit.requests, window, now) if limit.requests else None
        window = limit.tokens_window
        self.tokens = _Bucket(limit.tokens, window, now) if limit.tokens else None
        self.input = _Bucket(limit.tokens, window, now) if limit.tokens else None
        self.output = _Bucket(limit.tokens, window, now) if limit.tokens else None


class ProviderRateLimit:
    """Token-bucket rate limits per (API key, model), with provider rate-limit headers.

    ``requests`` and ``tokens`` are the limits per ``window_seconds`` (tokens per
    `tokens_window` in the Azure dialect; ``None``: that limit is not kept); each scope's
    buckets start full and refill continuously. A request costs one
    request and ``ceil(len(body) / 4)`` plus its ``max_tokens`` (or ``max_completion_tokens``,
    ``max_output_tokens``, Gemini's ``generationConfig.maxOutputTokens``) tokens, charged only
    when both buckets can pay. The Anthropic dialect's input- and output-token headers count
    those two parts in buckets of their own, each of ``tokens``.

    The key is the ``Authorization: Bearer`` token, else ``x-api-key``, ``api-key``,
    ``x-goog-api-key`` or a ``key`` query parameter; the model is the Azure deployment of
    ``/openai/deployments/{name}/...``, the Gemini model of ``/v1beta/models/{model}:...``,
    else the JSON body's ``model``.

    ``clock`` gives the time in seconds since the Unix epoch (the Anthropic dialect prints reset
    times from it); inject one to move time by hand. ``retry_after`` adds ``retry-after`` (whole
    seconds, rounded up) to a 429, except in the ``"none"`` dialect.

    ``azure_quirks`` (Azure dialect only) plays what Azure OpenAI has been seen to send: on an
    answer, ``x-ratelimit-limit-tokens: -1``, ``x-ratelimit-remaining-tokens: -1`` and
    ``x-ratelimit-reset-tokens: 0`` (no figure known); on a 429, no ``retry-after`` but
    ``x-rate-limit-reset-tokens`` (seconds, spelt with the extra hyphen).

    `counts` and `totals` tell what it saw. Use one instance per `Upstream`.
    """

    def __init__(
        self,
        *,
        requests: int | None = 60,
        tokens: int | None = None,
        window_seconds: float = 60.0,
        dialect: Dialect = "openai",
        clock: Callable[[], float] = time.time,
        retry_after: bool = True,
        azure_quirks: bool = False,
    ) -> None:
        for name, value in (("requests", requests), ("tokens", tokens)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if requests is None and tokens is None:
            raise ValueError("requests and tokens: a ProviderRateLimit needs at least one limit")
        if (
            isinstance(window_seconds, bool)
            or not isinstance(window_seconds, int | float)
            or not math.isfinite(window_seconds)
            or window_seconds <= 0
        ):
            raise ValueError(f"window_seconds must be a finite number > 0, got {window_seconds!r}")
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self.requests = requests
        self.tokens = tokens
        self.window_seconds = float(window_seconds)
        self.dialect: Dialect = dialect
        if azure_quirks and dialect != "azure":
            raise ValueError(f"azure_quirks is for the azure dialect, not {dialect!r}")
        self.retry_after = retry_after
        self.azure_quirks = azure_quirks
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[Scope, _State] = {}
        self._counts: dict[Scope, ScopeCounts] = {}

    @property
    def tokens_window(self) -> float:
        """Seconds the tokens limit is counted over: ``window_seconds``, six times that in the
        Azure dialect (tokens per minute against requests per 10 s)."""
        return 6.0 * self.window_seconds if self.dialect == "azure" else self.window_seconds

    def set_limits(self, *, requests: int | None = None, tokens: int | None = None) -> None:
        """Change the ``requests`` and/or ``tokens`` limit from now on (None: leave it), for
        every scope: an upstream whose capacity drops halfway through a run. Buckets keep their
        level, capped at the new limit. Only a limit that is kept can be changed."""
        changes = {"requests": requests, "tokens": tokens}
        for name, value in changes.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
            if getattr(self, name) is None:
                raise ValueError(f"{name}: this limit is not kept, so it cannot be changed")
        now = self._clock()
        with self._lock:
            for state in self._states.values():
                kinds = (
                    ("requests", (state.requests,), self.window_seconds),
                    ("tokens", (state.tokens, state.input, state.output), self.tokens_window),
                )
                for name, buckets, window in kinds:
                    value = changes[name]
                    for bucket in buckets:
                        if value is not None and bucket is not None:
                            bucket.resize(value, window, now)
            if requests is not None:
                self.requests = requests
            if tokens is not None:
                self.tokens = tokens

    # -- what it saw ---------------------------------------------------------------------------

    def counts(self) -> dict[Scope, ScopeCounts]:
        """Requests seen and 429s given, per scope."""
        with self._lock:
            return dict(self._counts)

    def totals(self) -> ScopeCounts:
        """Requests seen and 429s given, over every scope."""
        with self._lock:
            counts = list(self._counts.values())
        return ScopeCounts(sum(c.requests for c in counts), sum(c.limited for c in counts))

    # -- deciding -------------------------------------------------------------------------------

    def scope_of(self, request: Received) -> Scope:
        """The (API key, model) scope ``request`` is charged to."""
        return Scope(_key(request), _model(request))

    def cost_of(self, request: Received) -> tuple[int, int]:
        """The (input, output) tokens ``request`` is estimated to cost."""
        return math.ceil(len(request.content) / 4), _max_tokens(request)

    def admit(self, request: Received) -> tuple[tuple[tuple[str, str], ...], Reply | None]:
        """Charge ``request`` to its scope: the headers every answer to it carries, and the
        429 to send instead of the scripted answer when it is over a limit (else None)."""
        scope = self.scope_of(request)
        cost_in, cost_out = self.cost_of(request)
        cost = cost_in + cost_out
        now = self._clock()
        with self._lock:
            state = self._states.get(scope)
            if state is None:
                state = self._states[scope] = _State(self, now)
            buckets = [b for b in (state.requests, state.tokens, state.input, state.output) if b]
            for bucket in buckets:
                bucket.refill(now)
            waits = []
            if state.requests is not None:
                waits.append(("requests", state.requests.wait_for(1)))
            if state.tokens is not None:
                waits.append(("tokens", state.tokens.wait_for(cost)))
            over = [(name, wait) for name, wait in waits if wait > _SLACK]
            if not over:
                if state.requests is not None:
                    state.requests.level -= 1
                if state.tokens is not None and state.input and state.output:
                    state.tokens.level -= cost
                    state.input.level = max(0.0, state.input.level - cost_in)
                    state.output.level = max(0.0, state.output.level - cost_out)
            seen = self._counts.get(scope, ScopeCounts())
            self._counts[scope] = ScopeCounts(seen.requests + 1, seen.limited + bool(over))
            headers = self._headers(state, now)
        if not over:
            return headers, None
        wait = max(wait for _, wait in over)
        limit_name = max(over, key=lambda item: item[1])[0]
        return headers, self._refusal(request, scope, limit_name, wait, headers)

    # -- headers and refusals -------------------------------------------------------------------

    def _headers(self, state: _State, now: float) -> tuple[tuple[str, str], ...]:
        limits = [
            (name, bucket)
            for name, bucket in (
                ("requests", state.requests),
                ("tokens", state.tokens),
                ("input-tokens", state.input),
                ("output-tokens", state.output),
            )
            if bucket is not None
        ]
        dialect = self.dialect
        if dialect in ("openai", "groq"):
            core = [(n, b) for n, b in limits if n in ("requests", "tokens")]
            return (
                *((f"x-ratelimit-limit-{n}", str(b.capacity)) for n, b in core),
                *((f"x-ratelimit-remaining-{n}", str(b.remaining)) for n, b in core),
                *((f"x-ratelimit-reset-{n}", go_duration(b.until_full())) for n, b in core),
            )
        if dialect == "anthropic":
            headers: list[tuple[str, str]] = []
            for name, bucket in limits:
                reset = _rfc3339(now + bucket.until_full())
                headers += [
                    (f"anthropic-ratelimit-{name}-limit", str(bucket.capacity)),
                    (f"anthropic-ratelimit-{name}-remaining", str(bucket.remaining)),
                    (f"anthropic-ratelimit-{name}-reset", reset),
                ]
            return tuple(headers)
        if dialect == "azure":
            remaining = [
                (f"x-ratelimit-remaining-{n}", str(b.remaining))
                for n, b in limits
                if n in ("requests", "tokens") and not (self.azure_quirks and n == "tokens")
            ]
            if self.azure_quirks:
                remaining += [
                    ("x-ratelimit-limit-tokens", "-1"),
                    ("x-ratelimit-remaining-tokens", "-1"),
                    ("x-ratelimit-reset-tokens", "0"),
                ]
            return tuple(remaining)
        if dialect == "ietf":
            core = [(n, b) for n, b in limits if n in ("requests", "tokens")]
            window = math.ceil(self.window_seconds)
            unit = {"requests": "", "tokens": ';qu="tokens"'}
            policy = ", ".join(f'"{n}";q={b.capacity};w={window}{unit[n]}' for n, b in core)
            state_field = ", ".join(
                f'"{n}";r={b.remaining};t={math.ceil(b.until_full())}' for n, b in core
            )
            return (("ratelimit-policy", policy), ("ratelimit", state_field))
        return ()

    def _refusal(
        self,
        request: Received,
        scope: Scope,
        limit_name: str,
        wait: float,
        headers: Iterable[tuple[str, str]],
    ) -> Reply:
        extra = list(headers)
        per = self.window_seconds if limit_name == "requests" else self.tokens_window
        seconds = per if math.isinf(wait) else wait
        if self.azure_quirks:
            extra.append(("x-rate-limit-reset-tokens", str(max(1, math.ceil(seconds)))))
        elif self.dialect != "none" and self.retry_after:
            extra.append(("retry-after", str(max(1, math.ceil(seconds)))))
            if self.dialect == "azure":
                extra.append(("retry-after-ms", str(max(1, math.ceil(seconds * 1000)))))
        limit = self.requests if limit_name == "requests" else self.tokens
        model = scope.model or "this model"
        message = f"Rate limit reached for {model} on {limit_name} per {per:g} s: limit {limit}."
        path = urlsplit(request.url).path
        if path.startswith("/v1/messages"):
            return anthropic_error(429, "rate_limit_error", message, headers=extra)
        if _GEMINI.match(path):
            return gemini_error(429, message, "RESOURCE_EXHAUSTED", headers=extra)
        return openai_error(429, message, limit_name, "rate_limit_exceeded", headers=extra)


def go_duration(seconds: float) -> str:
    """``seconds`` the way Go prints a ``time.Duration``, to the millisecond: ``6m0s``,
    ``1.5s``, ``12ms``, ``1h0m0s``, ``0s`` (OpenAI's and Groq's reset headers)."""
    millis = round(seconds * 1000) if math.isfinite(seconds) else 0
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}" if not frac else f"{whole}.{frac:03d}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _rfc3339(epoch: float) -> str:
    moment = datetime.fromtimestamp(math.ceil(epoch), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(request: Received) -> str:
    authorization = request.header("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else authorization
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        value = request.header(name)
        if value:
            return value
    keys = parse_qs(urlsplit(request.url).query).get("key")
    return keys[0] if keys else ""


def _body(request: Received) -> dict[str, object]:
    try:
        body = _json.loads(request.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _model(request: Received) -> str:
    path = urlsplit(request.url).path
    match = _AZURE.match(path) or _GEMINI.match(path)
    if match:
        return match.group(1)
    model = _body(request).get("model")
    return model if isinstance(model, str) else ""


def _max_tokens(request: Received) -> int:
    body = _body(request)
    config = body.get("generationConfig")
    fields: list[object] = [body.get(name) for name in _MAX_TOKEN_FIELDS]
    if isinstance(config, dict):
        fields.append(config.get("maxOutputTokens"))
    for value in fields:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0
