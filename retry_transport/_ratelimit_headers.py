"""Rate-limit headers of every dialect, read into one neutral `Headroom` per dimension.

Pure: no I/O, no clock of its own. Each dialect names a limit, what is left of it and when
it is whole again; this module turns them into `Headroom(limit, remaining, reset_at, window)`
on the caller's monotonic timeline, per dimension (``requests``, ``tokens``,
``input_tokens``, ``output_tokens``). Garbage is skipped, never an error, and no header value
is read past `MAX_VALUE` characters.

Dialects:

- OpenAI and Groq: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; resets are Go
  durations (``6m0s``, ``1h2m3.5s``, ``12ms``, ``1.5s``) or plain seconds.
- Azure OpenAI: ``x-ratelimit-remaining-{requests,tokens}`` alone (no limit, no reset).
  Azure counts a deployment's requests over 10 s windows (its remaining requests are what is
  left of a sixth of the per-minute limit: a 120 RPM deployment answers 19 after one request)
  and its tokens over the minute: such a remaining gets the window of `AZURE_WINDOWS`. ``-1``
  means "not reported" and is skipped; a remaining with no reset gets `UNKNOWN_RESET`
  seconds, so a ``0`` is probed again soon, not waited out for a minute.
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
  remaining,reset}``; resets are RFC 3339 times, converted with the wall clock.
- IETF ``draft-ietf-httpapi-ratelimit-headers``: the older ``RateLimit-Limit``,
  ``RateLimit-Remaining``, ``RateLimit-Reset`` (delta seconds) trio; the intermediate
  ``RateLimit: limit=.., remaining=.., reset=..``; and the structured fields
  ``RateLimit: "name";r=..;t=..`` with ``RateLimit-Policy: "name";q=..;w=..[;qu="..."]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AZURE_WINDOWS",
    "DIMENSIONS",
    "MAX_VALUE",
    "RATE_LIMIT_NAMES",
    "UNKNOWN_RESET",
    "Headroom",
    "parse_duration",
    "parse_headroom",
    "parse_rfc3339",
    "rate_limit_pairs",
]

DIMENSIONS = ("requests", "tokens", "input_tokens", "output_tokens")
"""The dimensions a `Headroom` may describe."""

MAX_VALUE = 512
"""Longest header value read; a longer one is skipped as garbage."""

UNKNOWN_RESET = 1.0
"""Seconds assumed until a remaining with no reset time (Azure's) is worth asking again."""

AZURE_WINDOWS = {"requests": 10.0, "tokens": 60.0}
"""Seconds over which Azure OpenAI counts what its ``x-ratelimit-remaining-*`` headers tell
(sent with no limit and no reset): requests per 10 s, tokens per minute."""

_MAX_NUMBER = 1e15  # a limit or count above this is nonsense

_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6}
_GO_UNITS["ns"] = 1e-9
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")


@dataclass(frozen=True, slots=True)
class Headroom:
    """What one dimension of a scope has left, as the provider reported it.

    ``limit`` is the quota (None when not sent), ``remaining`` what is left of it, ``reset_at``
    the monotonic time at which it is whole again (None when not sent) and ``window`` the
    seconds the quota is counted over when the dialect names it (IETF ``w``), else None.
    ``continuous`` is True where the provider refills its bucket steadily (OpenAI, Anthropic,
    Azure) and False for the IETF fields' fixed windows (all of ``limit`` again at the reset).
    ``coarse`` is True when the reset was given in whole seconds (an RFC 3339 time without a
    fraction): the true reset may be up to a second off.
    """

    limit: float | None
    remaining: float | None
    reset_at: float | None
    window: float | None = None
    continuous: bool = True
    coarse: bool = False


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration (``1h2m3.5s``, ``12ms``, ``0s``) or a plain number; else None."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if 0.0 <= seconds < _MAX_NUMBER else None
    total = 0.0
    pos = 0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        return None
    return total


def parse_rfc3339(text: str) -> float | None:
    """A POSIX timestamp from an RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``)."""
    text = text.strip()
    if not 20 <= len(text) <= 40 or text[10:11] not in ("T", "t", " "):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _number(text: str) -> float | None:
    text = text.strip()
    if not text or len(text) > 32:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or abs(value) >= _MAX_NUMBER:
        return None
    return value


def rate_limit_pairs(raw: Iterable[tuple[bytes, bytes, bytes]]) -> list[tuple[str, str]] | None:
    """The rate-limit headers of an httpx/httpx2 raw header list, as (lower name, value) pairs.

    ``raw`` is the headers' ``_list`` of (name, lower-case name, value). One scan over the
    names; None when none is a rate-limit header, so a response without them costs that scan.
    """
    found: list[tuple[str, str]] | None = None
    for _, name, value in raw:
        if b"ratelimit" in name and len(value) <= MAX_VALUE:
            if found is None:
                found = []
            found.append((name.decode("latin-1"), value.decode("latin-1")))
    return found


class _Draft:
    """Fields of one dimension gathered while reading."""

    __slots__ = ("continuous", "limit", "remaining", "reset_in", "window")

    def __init__(self, continuous: bool = True) -> None:
        self.limit: float | None = None
        self.remaining: float | None = None
        self.reset_in: float | None = None
        self.window: float | None = None
        self.continuous = continuous


_OPENAI = re.compile(r"x-ratelimit-(limit|remaining|reset)-(requests|tokens)")
_ANTHROPIC = re.compile(
    r"anthropic-ratelimit-(requests|tokens|input-tokens|output-tokens)-(limit|remaining|reset)"
)
_IETF_TRIO = {"ratelimit-limit": "limit", "ratelimit-remaining": "remaining"}
_IETF_TRIO["ratelimit-reset"] = "reset"

RATE_LIMIT_NAMES = frozenset(
    name.encode("latin-1")
    for name in (
        *(
            f"x-ratelimit-{f}-{d}"
            for f in ("limit", "remaining", "reset")
            for d in ("requests", "tokens")
        ),
        *(
            f"anthropic-ratelimit-{d}-{f}"
            for d in ("requests", "tokens", "input-tokens", "output-tokens")
            for f in ("limit", "remaining", "reset")
        ),
        *_IETF_TRIO,
        "ratelimit",
        "ratelimit-policy",
    )
)
"""Every lower-case header name the dialects read (a response with none of them tells no
headroom): for a look in C, ``RATE_LIMIT_NAMES.isdisjoint(names)``, before any scan."""
_SF_ITEM = re.compile(r'^\s*(?:"((?:[^"\\]|\\.){0,64})"|([A-Za-z*][\w*.:/%-]{0,63}))\s*((?:;.*)?)$')
_SF_PARAM = re.compile(r'^\s*([a-z*][a-z0-9_.*-]{0,31})\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?\s*$')


def _dimension(unit: str | None) -> str | None:
    if unit is None or unit == "requests":
        return "requests"
    unit = unit.replace("-", "_")
    return unit if unit in DIMENSIONS else None


def _sf_params(text: str) -> dict[str, str] | None:
    """``;k=v;k2=v2`` into a dict (quotes removed); None when malformed."""
    params: dict[str, str] = {}
    for part in text.split(";")[1:]:
        match = _SF_PARAM.match(part)
        if match is None:
            return None
        value = match.group(2) or ""
        if value.startswith('"'):
            value = value[1:-1]
        params[match.group(1)] = value.strip()
    return params


def _sf_list(text: str) -> list[tuple[str, dict[str, str]]]:
    """The items of a structured-field list: (name, params); malformed items are skipped."""
    items = []
    for member in text.split(","):
        match = _SF_ITEM.match(member)
        if match is None:
            continue
        params = _sf_params(match.group(3))
        if params is None:
            continue
        items.append((match.group(1) or match.group(2) or "", params))
    return items


def _first_number(text: str) -> float | None:
    """The leading number of an older-draft value such as ``100, 100;w=60``."""
    return _number(text.split(",", 1)[0].split(";", 1)[0])


class _Reader:
    """Gathers every dialect's fields, then settles them into `Headroom` values."""

    def __init__(self) -> None:
        self.drafts: dict[str, _Draft] = {}
        self.openai: set[str] = set()  # dimensions told by x-ratelimit-* headers
        self.rfc_resets: dict[str, tuple[float, bool]] = {}
        self.ietf_limit: str | None = None
        self.ietf_policy: str | None = None

    def draft(self, dimension: str) -> _Draft:
        found = self.drafts.get(dimension)
        if found is None:
            found = self.drafts[dimension] = _Draft()
        return found

    def read(self, name: str, value: str) -> None:
        if len(value) > MAX_VALUE:
            return
        if name.startswith("x-ratelimit-"):
            self._openai(name, value)
        elif name.startswith("anthropic-ratelimit-"):
            self._anthropic(name, value)
        elif name in _IETF_TRIO:
            field = _IETF_TRIO[name]
            number = _first_number(value)
            if number is None or number < 0:
                return
            draft = self.draft("requests")
            draft.continuous = False
            if field == "limit":
                draft.limit = number
                for member in value.split(","):  # "100, 100;w=60": the window is a parameter
                    params = _sf_params(member) or {}
                    window = _number(params.get("w", ""))
                    if window is not None and window > 0:
                        draft.window = window
            elif field == "remaining":
                draft.remaining = number
            else:
                draft.reset_in = number
        elif name == "ratelimit":
            self.ietf_limit = value
        elif name == "ratelimit-policy":
            self.ietf_policy = value

    def _openai(self, name: str, value: str) -> None:
        match = _OPENAI.fullmatch(name)
        if match is None:
            return
        field, dimension = match.groups()
        draft = self.draft(dimension)
        self.openai.add(dimension)
        if field == "reset":
            draft.reset_in = parse_duration(value)
            return
        number = _number(value)
        if number is None or number < 0:  # Azure's -1: not reported
            return
        if field == "limit":
            draft.limit = number
        else:
            draft.remaining = number

    def _anthropic(self, name: str, value: str) -> None:
        match = _ANTHROPIC.fullmatch(name)
        if match is None:
            return
        dimension = match.group(1).replace("-", "_")
        field = match.group(2)
        draft = self.draft(dimension)
        if field == "reset":
            at = parse_rfc3339(value)
            if at is not None:
                self.rfc_resets[dimension] = (at, "." not in value)
            return
        number = _number(value)
        if number is None or number < 0:
            return
        if field == "limit":
            draft.limit = number
        else:
            draft.remaining = number

    def _ietf(self) -> None:
        policies: dict[str, tuple[str, float | None, float | None]] = {}
        if self.ietf_policy is not None:
            for name, params in _sf_list(self.ietf_policy):
                dimension = _dimension(params.get("qu"))
                if dimension is not None:
                    quota = _number(params.get("q", ""))
                    window = _number(params.get("w", ""))
                    policies[name] = (dimension, quota, window)
        if self.ietf_limit is None:
            return
        text = self.ietf_limit
        if "limit=" in text or "remaining=" in text or "reset=" in text:
            self._ietf_dictionary(text)
            return
        for name, params in _sf_list(text):
            remaining = _number(params.get("r", ""))
            reset_in = _number(params.get("t", ""))
            if remaining is None or remaining < 0:
                continue
            dimension, quota, window = policies.get(name, ("requests", None, None))
            draft = _Draft(continuous=False)
            draft.remaining = remaining
            draft.reset_in = None if reset_in is None or reset_in < 0 else reset_in
            draft.limit = None if quota is None or quota < 0 else quota
            draft.window = None if window is None or window <= 0 else window
            previous = self.drafts.get(dimension)
            if previous is None or _tighter(draft, previous):
                self.drafts[dimension] = draft

    def _ietf_dictionary(self, text: str) -> None:
        draft = self.draft("requests")
        draft.continuous = False
        for member in text.split(","):
            key, _, raw = member.partition("=")
            number = _number(raw)
            if number is None or number < 0:
                continue
            key = key.strip()
            if key == "limit":
                draft.limit = number
            elif key == "remaining":
                draft.remaining = number
            elif key == "reset":
                draft.reset_in = number

    def settle(self, now: float, wall_now: float) -> dict[str, Headroom]:
        self._ietf()
        coarse = set()
        for dimension, (at, whole) in self.rfc_resets.items():
            self.draft(dimension).reset_in = max(0.0, at - wall_now)
            if whole:
                coarse.add(dimension)
        result = {}
        for dimension, draft in self.drafts.items():
            if draft.remaining is None and draft.limit is None:
                continue
            reset_in = draft.reset_in
            window = draft.window
            if reset_in is None and draft.limit is None and dimension in self.openai:
                window = AZURE_WINDOWS.get(dimension)  # Azure: a remaining alone
            if reset_in is None and draft.remaining is not None:
                reset_in = UNKNOWN_RESET if draft.remaining <= 0 else None
            result[dimension] = Headroom(
                limit=draft.limit,
                remaining=draft.remaining,
                reset_at=None if reset_in is None else now + reset_in,
                window=window,
                continuous=draft.continuous,
                coarse=dimension in coarse,
            )
        return result


def _tighter(draft: _Draft, other: _Draft) -> bool:
    """Whether ``draft`` leaves less to spend per second until its reset than ``other``."""

    def pace(item: _Draft) -> float:
        remaining = item.remaining if item.remaining is not None else math.inf
        return remaining / max(item.reset_in or 0.0, 1e-3)

    return pace(draft) < pace(other)


def parse_headroom(
    headers: Iterable[tuple[str, str]], *, now: float, wall_now: float
) -> dict[str, Headroom]:
    """The headroom per dimension that ``headers`` report (an empty dict when none do).

    ``headers`` are (lower-case name, value) pairs; ``now`` is the monotonic time the
    response arrived and ``wall_now`` the POSIX time then (for RFC 3339 resets). Never raises
    on any header text.
    """
    reader = _Reader()
    for name, value in headers:
        reader.read(name, value)
    return reader.settle(now, wall_now)
