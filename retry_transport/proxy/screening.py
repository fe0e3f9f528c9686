"""What the sidecar refuses before a request reaches a route, and how a path stays confined.

`Screen` wraps the whole app. It accepts the absolute-form target (``GET http://host/path``,
RFC 9112 3.2.2) as its path, and refuses, with a JSON error, ``x-should-retry: false``, one log
line and the connection closed: ``CONNECT`` (405), the asterisk-form ``*`` and any other target
that is not a path (400), a request framed by both ``Content-Length`` and
``Transfer-Encoding`` (400: the two could disagree about where the body ends, the stuff of
request smuggling), and a request that already passed through this sidecar (508, from its
``Via`` header: a loop). `confine` resolves a path's dot segments within an upstream's mount.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from .replies import path_for_log, printable, send_error

__all__ = ["Screen", "confine", "has_via"]

logger = logging.getLogger("retry_transport.proxy")

_ABSOLUTE = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://[^/?#]*")
_DECODINGS = 3
"""Percent-decodings tried on a segment to find a dot segment hidden in it."""


def has_via(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    """Whether a ``Via`` header names ``token`` as a proxy the message passed through."""
    for name, value in headers:
        if name.lower() != b"via":
            continue
        for entry in value.split(b","):
            parts = entry.split()
            if len(parts) >= 2 and parts[1].lower() == token.lower():
                return True
    return False


def _hides_a_dot_segment(segment: bytes) -> bool:
    """Whether ``segment``, percent-decoded and split at ``/`` or ``\\`` as a server behind
    us might, holds a ``.`` or ``..``."""
    if b"%" not in segment and b"\\" not in segment:  # the common case, answered at once
        return segment in (b".", b"..")
    for _ in range(_DECODINGS + 1):
        if any(part in (b".", b"..") for part in re.split(rb"[/\\]", segment)):
            return True
        decoded = unquote_to_bytes(segment)
        if decoded == segment:
            return False
        segment = decoded
    return True  # still encoded after that many rounds: nothing can be said about it


def confine(path: bytes) -> bytes | None:
    """``path`` (percent-encoded: empty, or starting with ``/``) with its ``.`` and ``..``
    segments resolved, or None if it would climb above its root, or holds a dot segment that
    is percent-encoded or behind a backslash (which an upstream may resolve where we cannot
    see it)."""
    if not path:
        return path
    segments = path.split(b"/")[1:]
    kept: list[bytes] = []
    for segment in segments:
        if segment == b".":
            continue
        if segment == b"..":
            if not kept:
                return None
            kept.pop()
        elif _hides_a_dot_segment(segment):
            return None
        else:
            kept.append(segment)
    resolved = b"/" + b"/".join(kept)
    if segments[-1] in (b".", b"..") and kept:
        resolved += b"/"  # "/a/b/.." is "/a/", a directory
    return resolved


class Screen:
    """ASGI middleware: normalises the absolute-form target and refuses what cannot be
    forwarded safely (see the module's docstring)."""

    def __init__(self, app: ASGIApp, via_token: bytes) -> None:
        self._app = app
        self._token = via_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self._app(scope, receive, send)
            return
        await self.refuse(scope, send, refusal)

    async def refuse(self, scope: Scope, send: Send, refusal: tuple[int, str, str]) -> None:
        """Answer a request `refusal` refused (and log it)."""
        status, kind, message = refusal
        logger.warning(
            "%s %s: refused with %d: %s",
            printable(scope["method"]),
            path_for_log(scope),
            status,
            message,
        )
        await send_error(send, status, kind, message, close=True)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """Why the HTTP request of ``scope`` is refused (status, error type, message), or None;
        an absolute-form target is rewritten to its path in ``scope``."""
        if scope["method"] == "CONNECT":
            return 405, "method_not_allowed", "CONNECT is not served: this is a reverse proxy"
        raw: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
        if not raw.startswith(b"/"):
            absolute = _ABSOLUTE.match(raw)
            if absolute is None:
                if raw == b"*":
                    return 400, "invalid_request", "the asterisk-form target (*) is not served"
                return (
                    400,
                    "invalid_request",
                    "the request target must be a path starting with / or an http(s) URL",
                )
            raw = raw[absolute.end() :] or b"/"
            if not raw.startswith(b"/"):
                return 400, "invalid_request", "the URL in the request target has no valid path"
            scope["raw_path"] = raw
            scope["path"] = unquote(raw.decode("latin-1"))
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        sized = chunked = via = False
        for name, _ in headers:  # one pass: names only (has_via reads the Via values)
            lower = name.lower()
            if lower == b"content-length":
                sized = True
            elif lower == b"transfer-encoding":
                chunked = True
            elif lower == b"via":
                via = True
        if sized and chunked:
            return (
                400,
                "invalid_request",
                "a request with both Content-Length and Transfer-Encoding is refused",
            )
        if via and has_via(headers, self._token):
            return (
                508,
                "loop_detected",
                "this request already passed through this sidecar (its Via header names it): "
                "an --upstream points back at it",
            )
        return None
