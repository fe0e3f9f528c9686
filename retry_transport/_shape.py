"""A 400 that no rule knows, judged by its shape.

The evidence (tests/data/*.jsonl, and issue 12's held-out set): the 400s that later succeeded
unchanged say nothing about the request. They are empty, generic ("Bad Request", "Provider
returned error", "Invalid request sent to provider", "Upstream request failed"), HTML from a
proxy, or a relay's boilerplate around an upstream failure (NIM's DEGRADED 400 behind
free-claude-code, OpenRouter's opaque metadata.raw). The 400s that failed again are the
opposite: a structured error that names what is wrong with the request, a parameter (a
non-empty ``param`` field), a value ("got -160"), a constraint ("must be at least 1", "at most
1 image per prompt", "is a reserved keyword") or a feature ("is not supported", "not
available", "unknown field"). So an unknown 400 that names a cause is ``FATAL``; any other keeps
``UNRECOGNISED`` (the capped retry, ``unclassified_400_attempts``). A body that also names a
transient cause ("temporarily", "try again", "overloaded", "timeout") is never made fatal here.
"""

from __future__ import annotations

import re

from ._verdict import Classification, Verdict

__all__ = ["GENERIC", "SPECIFIC", "TRANSIENT", "judge_400"]

SPECIFIC = re.compile(
    r"\bmust (?:be|not|have|contain|include|match|specify|provide|start|end)\b|"
    r"\bshould (?:be|not|have|contain)\b|\bgot\s{0,3}[-+\d'\"`]|\bexpected\b|"
    r"\b(?:is |are )?not (?:supported|available|allowed|permitted|enabled|valid|recognized|"
    r"accessible)\b|"
    r"\bunsupported\b|\bis required\b|\brequired (?:field|parameter|property|argument)\b|"
    r"\bunknown (?:field|parameter|name|argument|property|tool|variant|value)\b|"
    r"\bexceeds?\b|\bat (?:most|least)\b|"
    r"\btoo (?:long|large|many|short|big|small)\b|\breserved\b|"
    r"\bdoes not (?:exist|support|match|contain)\b|\bno such\b|\bnot found\b|"
    r"\bonly supports?\b|\bout of range\b|\bmalformed\b|\binvalid (?!request\b)\w|"
    r"^param: \S",
    re.IGNORECASE | re.MULTILINE,
)
"""A 400 that names a parameter, a value, a constraint or a feature."""

TRANSIENT = re.compile(
    r"temporar|try again|retry|busy|overload|unavailable|time ?out|timed out|capacity|"
    r"rate[ _-]?limit|throttl|upstream (?:error|failure)|bad gateway|暂时|稍后|繁忙",
    re.IGNORECASE,
)
"""A transient cause named anywhere: never judged fatal by shape."""

GENERIC = re.compile(r"<(?:!doctype|html|head|body)\b", re.IGNORECASE)
"""An HTML page (a proxy's error page): says nothing about the request."""

_LABELS = re.compile(
    r"^(?:type|code|status|status_code|statuscode|error_code|object): [^\n]*$", re.M
)


_MAX_MESSAGE = 2048


def judge_400(text: str) -> Classification:
    """The verdict for a 400 whose error ``text`` matched no rule and no structured reader."""
    if GENERIC.search(text[:2048]) is not None:
        return Classification(Verdict.UNRECOGNISED, "shape: an HTML page")
    if TRANSIENT.search(text) is not None:
        return Classification(Verdict.UNRECOGNISED, "shape: names a transient cause")
    # Causes are named near the start; reading 2 KiB keeps a hostile body's cost bounded.
    message = _LABELS.sub("", text[:_MAX_MESSAGE])
    found = SPECIFIC.search(message)
    if found is not None:
        cause = found.group(0).strip()
        return Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")
    return Classification(Verdict.UNRECOGNISED, "shape: generic")
