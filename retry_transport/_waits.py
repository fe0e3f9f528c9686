"""Waits a server names: ``Retry-After`` and its kin in headers, and wait phrases in bodies.

Pure parsing: no I/O and no clock reads (the caller passes ``now``). Every function returns
``None`` for anything it cannot read with certainty, and otherwise a finite, non-negative
number of seconds, uncapped (capping is the policy's business).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["body_wait", "server_wait"]

_MAX_HEADER = 64
"""Header values longer than this are ignored unparsed, but for numbers (maybe too long)."""
_MAX_BODY = 131072
"""Only the start of a body is searched for a wait."""

_MS_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TOO_LONG = 1e20
"""The longest wait read, longer than any cap: what a number of 1e20 seconds or more (more than
20 integer digits, or too large for a float: ``1e999``) is read as."""

_UNITS: dict[str, float] = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}
_UNIT_WORDS = (
    r"(?P<unit>hours?|hrs?|h|minutes?|mins?|milliseconds?|msecs?|ms|m|"
    r"seconds?|secs?|s|microseconds?|us|µs|nanoseconds?|ns)(?![a-zA-Z])"
)
_COMPONENT = re.compile(r"\s{0,2}(?P<num>[0-9]{1,12}(?:\.[0-9]{1,9})?)\s{0,2}" + _UNIT_WORDS, re.I)
_PHRASE = re.compile(r"\b(?:try again|retry)\s{1,3}(?:in|after)\b", re.I)
_RETRY_DELAY = re.compile(
    r"retryDelay\\{0,3}[\"']?\s{0,3}[:=]\s{0,3}\\{0,3}[\"'](?P<num>[0-9]{1,12}(?:\.[0-9]{1,9})?)s"
)
_RETRY_FIELD = re.compile(
    r"[\"']retry[_-]?after(?P<ms>[_-]?ms)?(?:[_-]?seconds)?\\{0,3}[\"']\s{0,3}:\s{0,3}"
    r"(?P<num>[0-9]{1,12}(?:\.[0-9]{1,9})?(?:[eE][+-]?[0-9]{1,4})?)(?![0-9.eE])",
    re.I,
)
_MAX_COMPONENTS = 6


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) and value >= 0.0 else None


def _at_most_too_long(value: float) -> float:
    """A non-negative wait read from digits, at most `_TOO_LONG` (an overflow to ``inf``
    included: a server's number too large for a float still asks for a very long wait)."""
    return min(value, _TOO_LONG)


def _number(value: str) -> float | None:
    """A plain non-negative decimal ("12", "1.5", "1e3"), at most `_TOO_LONG`, else ``None``."""
    value = value.strip()
    if _NUMBER.fullmatch(value) is None:
        return None
    # Linear in the length, which the server's header size limit bounds.
    return _at_most_too_long(float(value))


def _date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # an aware datetime's timestamp() is plain timedelta arithmetic (it cannot raise), and the
    # caller passes a finite ``now``: the difference is always a finite number
    return _finite(max(when.timestamp() - now, 0.0))


def server_wait(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the response's headers ask the client to wait, or ``None``.

    ``retry-after-ms`` and ``x-ms-retry-after-ms`` (milliseconds) are preferred when valid;
    then ``retry-after`` as delta-seconds (integer or decimal, with or without an exponent, as
    the SDKs read it: ``1e3`` is 1000 s) or as an HTTP-date, relative to ``now`` (epoch seconds;
    a date in the past gives ``0.0``). A number of 1e20 seconds or more, however long (more
    than 20 integer digits, or too large for a float: ``1e999``), is read as 1e20 seconds,
    longer than any cap, so that the policy gives up at once rather than retry as if no wait
    were named.
    Garbage, negative values, the words ``inf`` and ``nan``, non-ASCII and other overlong
    values are ignored.
    """
    for name in _MS_HEADERS:
        raw = _header(headers, name)
        if raw is not None:
            millis = _number(raw)
            if millis is not None:
                return millis / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    return _date(raw, now) if math.isfinite(now) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    try:
        value = headers.get(name)
    except Exception:  # a hostile Mapping; headers are never worth a crash
        return None
    if not isinstance(value, str) or not value.isascii():
        return None
    if len(value) > _MAX_HEADER and _NUMBER.fullmatch(value.strip()) is None:
        return None
    return value


def _duration(text: str, start: int) -> float | None:
    """The duration written at ``text[start:]``: "7.5s", "20ms", "1m30s", "45 seconds"."""
    total = 0.0
    found = False
    position = start
    for _ in range(_MAX_COMPONENTS):
        component = _COMPONENT.match(text, position)
        if component is None:
            break
        unit = component.group("unit").lower()
        if unit.startswith("h"):
            scale = _UNITS["h"]
        elif unit.startswith(("ms", "msec", "milli")):
            scale = _UNITS["ms"]
        elif unit.startswith("m"):
            scale = _UNITS["m"]
        elif unit.startswith(("us", "µs", "micro")):
            scale = _UNITS["us"]
        elif unit.startswith(("ns", "nano")):
            scale = _UNITS["ns"]
        else:
            scale = _UNITS["s"]
        total += float(component.group("num")) * scale
        found = True
        position = component.end()
    return _finite(total) if found else None


def body_wait(text: str) -> float | None:
    """Seconds an error body asks the client to wait, or ``None``.

    Reads Google's ``RetryInfo`` (``"retryDelay": "38s"``), ``retry_after`` / ``retry_after_ms``
    JSON fields (a JSON number, an exponent allowed; one too large for a float is a wait longer
    than any cap), and phrases such as "try again in 7.5s", "try again in 20ms", "retry after 45
    seconds", "Please retry in 1m30s" or Go durations such as ``9m38.016s``. The first wait
    found wins, in that order of kinds.
    """
    text = text[:_MAX_BODY]
    delay = _RETRY_DELAY.search(text)
    if delay is not None:
        return _finite(float(delay.group("num")))
    field = _RETRY_FIELD.search(text)
    if field is not None:
        value = float(field.group("num"))  # an exponent may overflow it to inf
        return _at_most_too_long(value / 1000.0 if field.group("ms") else value)
    for phrase in _PHRASE.finditer(text):
        wait = _duration(text, phrase.end())
        if wait is not None:
            return wait
    return None
