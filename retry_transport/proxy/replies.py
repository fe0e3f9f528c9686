"""The sidecar's own answers and log text: JSON error replies, and paths made safe to log.

Every error the sidecar answers itself (a refused request, an unreachable upstream, a stalled
body) is a JSON body shaped like the providers' own errors, with ``x-should-retry: false`` so
that an SDK in front does not multiply the sidecar's attempts with its own.
"""

from __future__ import annotations

import json

from starlette.types import Scope, Send

__all__ = ["error_body", "path_for_log", "printable", "send_error"]


def printable(text: str) -> str:
    """``text`` with every non-printable character (CR, LF, ESC, NUL, U+2028, ...) escaped, so
    no value can start a forged line or send a terminal control sequence."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def path_for_log(scope: Scope) -> str:
    """The request's path as it came on the wire (still percent-encoded), without its query
    string (where some providers put keys), escaped for a log line."""
    raw: bytes | None = scope.get("raw_path")
    path = scope["path"] if raw is None else raw.decode("latin-1")
    return printable(path)


def error_body(kind: str, message: str) -> bytes:
    """The JSON body of an error of type ``kind`` that the sidecar answers itself."""
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": f"retry_transport proxy: {message}"}}
    ).encode()


async def send_error(
    send: Send,
    status: int,
    kind: str,
    message: str,
    *,
    close: bool = False,
) -> int:
    """Answer ``status`` with a JSON error of type ``kind``; the body's size in bytes.

    ``close`` asks the server to close the connection after the answer (for a request whose
    framing cannot be trusted, or whose body is still arriving).
    """
    body = error_body(kind, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-should-retry", b"false"),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return len(body)
