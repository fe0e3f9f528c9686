"""The scope of a request: upstream origin x credential fingerprint x model.

Providers limit per key and per model, so the limiter keeps its shared state per scope. The
credential is never kept or shown: only a keyed hash of it (HMAC-SHA256 under a key drawn
at random for each process, truncated), which cannot be reversed and means nothing outside
the process. The model comes from the path where the API puts it there (Azure deployments,
Gemini, Bedrock), else from the JSON body's top-level ``model`` when the body is in memory and
no larger than `MAX_BODY`. Pure and cheap: no full parse on the common path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "MAX_BODY",
    "CostEstimate",
    "Fingerprinter",
    "Scope",
    "estimate_cost",
    "model_from_body",
    "model_from_path",
    "scope_of",
]

MAX_BODY = 4 * 1024 * 1024
"""Largest request body looked at for a model name or a token estimate."""

_MAX_NAME = 200  # longest model name kept
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key", b"api-key", b"x-goog-api-key")


class Scope(NamedTuple):
    """Where a request's rate limits are counted. Empty strings stand for "unknown"."""

    origin: str
    key: str
    model: str

    @property
    def origin_scope(self) -> Scope:
        """The scope of the whole origin (every key and model), for outages."""
        return Scope(self.origin, "", "")


class Fingerprinter:
    """Keyed, truncated hashes of credentials; remembers the last `size` it computed."""

    __slots__ = ("_cache", "_key", "_size")

    def __init__(self, key: bytes | None = None, size: int = 64) -> None:
        self._key = secrets.token_bytes(32) if key is None else key
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._size = size

    def __call__(self, secret: bytes) -> str:
        """16 hex digits standing for ``secret``; "" for an empty one."""
        if not secret:
            return ""
        found = self._cache.get(secret)
        if found is not None:
            return found
        digest = hmac.new(self._key, secret, hashlib.sha256).hexdigest()[:16]
        self._cache[secret] = digest
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return digest


_AZURE = re.compile(rb"/openai/deployments/([^/?#]{1,200})/")
_GEMINI = re.compile(rb"/models/([^/:?#]{1,200}):")
_BEDROCK = re.compile(rb"/model/([^/?#]{1,200})/(?:invoke|converse)")


def model_from_path(path: bytes) -> str:
    """The model or deployment named in an Azure, Gemini or Bedrock path, else ""."""
    if b"/deployments/" in path:
        match = _AZURE.search(path)
    elif b"/models/" in path:
        match = _GEMINI.search(path)
    elif b"/model/" in path:
        match = _BEDROCK.search(path)
    else:
        return ""
    return "" if match is None else match.group(1).decode("latin-1")


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,200})"')
_MAX_TOKENS = re.compile(
    rb'"(?:max_tokens|max_completion_tokens|max_output_tokens|maxOutputTokens)"\s*:\s*(\d{1,9})'
)


def model_from_body(body: bytes) -> str:
    """The top-level ``model`` of a JSON body, or "" (too large, not JSON, or none)."""
    if len(body) > MAX_BODY or b'"model"' not in body:
        return ""
    names = {match.group(1) for match in _MODEL.finditer(body)}
    if len(names) == 1:
        return _decode_name(names.pop())
    # Several "model" keys (a nested one too): only a real parse tells which is top level.
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model[:_MAX_NAME] if isinstance(model, str) else ""


def _decode_name(raw: bytes) -> str:
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    try:
        value = json.loads(b'"' + raw + b'"')
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


class CostEstimate(NamedTuple):
    """What a request is expected to spend: one request, input and output tokens."""

    requests: float
    input_tokens: float
    output_tokens: float

    @property
    def tokens(self) -> float:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


def estimate_cost(body: bytes | None) -> CostEstimate:
    """One request; input tokens as body bytes / 4; output tokens as the most it asks for
    (``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``, ``maxOutputTokens``)."""
    if not body:
        return CostEstimate(1.0, 0.0, 0.0)
    output = 0.0
    if len(body) <= MAX_BODY:
        match = _MAX_TOKENS.search(body)
        if match is not None:
            output = float(match.group(1))
    return CostEstimate(1.0, len(body) / 4.0, output)


def scope_of(
    origin: str,
    path: bytes,
    headers: Iterable[tuple[bytes, bytes, bytes]],
    body: bytes | None,
    fingerprint: Fingerprinter,
    query_key: bytes = b"",
) -> Scope:
    """The scope of one request.

    ``origin`` is scheme://host[:port]; ``path`` the raw path; ``headers`` the raw
    (name, lower-case name, value) list; ``body`` the in-memory body or None (streamed);
    ``query_key`` a key passed in the query string (Gemini's ``?key=``), if any.
    """
    secret = query_key
    for _, name, value in headers:
        if name in _CREDENTIAL_HEADERS:
            # "Authorization: Bearer K" and "x-api-key: K" name the same key K.
            if value[:7].lower() == b"bearer ":
                value = value[7:]
            secret = value.strip()
            break
    model = model_from_path(path)
    if not model and body is not None:
        model = model_from_body(body)
    return Scope(origin, fingerprint(secret), model)
