"""Reading the start of a 200 event stream: preamble, first content, or an early error.

:class:`PreambleScanner` is pure and incremental: fed the stream's bytes chunk by chunk, it
says when the first content-bearing event arrives (stop holding bytes back), when an error
event arrives before any content (the request may be retried), or that it needs more bytes.
It keeps no copy of the bytes it was fed beyond one incomplete line and one incomplete event.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

__all__ = ["CONTENT", "PreambleScanner", "ScanKind", "ScanResult"]


class ScanKind(enum.Enum):
    """What the start of a stream turned out to be."""

    CONTENT = "content"
    """Content arrived, the hold limit was passed, or the bytes are not an event stream."""
    ERROR = "error"
    """An error event arrived before any content."""
    END = "end"
    """The stream ended with neither content nor an error."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The scanner's answer; ``payload`` and ``event`` are set for ``ERROR`` only."""

    kind: ScanKind
    payload: bytes = b""
    """The data of the error event (its JSON, lines joined by newlines)."""
    event: str | None = None
    """The error event's ``event:`` name, if it had one."""


CONTENT = _CONTENT = ScanResult(ScanKind.CONTENT)
"""The scanner's one ``CONTENT`` result."""
_END = ScanResult(ScanKind.END)
_BOM = b"\xef\xbb\xbf"
_FIELDS = frozenset({b"event", b"data", b"id", b"retry"})
_ERROR_EVENTS = frozenset({"error", "response.failed"})
_ERROR_TYPES = frozenset({"error", "response.failed"})
_LIFECYCLE_TYPES = frozenset(
    {"ping", "message_start", "response.created", "response.in_progress", "response.queued"}
)
_EMPTY: tuple[object, ...] = (None, "", [], {})
# Fields of a content block / output item / delta that would carry something for the user.
_PAYLOAD_FIELDS = ("text", "thinking", "data", "input", "arguments", "content", "summary")
_DELTA_FIELDS = frozenset(
    {
        "role",
        "content",
        "refusal",
        "reasoning",
        "reasoning_content",
        "tool_calls",
        "function_call",
    }
)


def _empty(part: object) -> bool:
    """Whether a content block, output item or content part carries nothing yet."""
    if not isinstance(part, dict):
        return False
    return all(part.get(name) in _EMPTY for name in _PAYLOAD_FIELDS)


def _role_only(chunk: dict[str, object]) -> bool:
    """Whether an OpenAI chat chunk's choices carry only the role (or nothing at all)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") is not None:
            return False
        delta = choice.get("delta", {})
        if not isinstance(delta, dict):
            return False
        for name, value in delta.items():
            if name not in _DELTA_FIELDS or (name != "role" and value not in _EMPTY):
                return False
    return True


def _preamble(document: dict[str, object]) -> bool:
    """Whether a decoded event carries nothing for the user."""
    kind = document.get("type")
    if kind in _LIFECYCLE_TYPES:
        return True
    if kind == "content_block_start":
        return _empty(document.get("content_block"))
    if kind == "response.output_item.added":
        return _empty(document.get("item"))
    if kind == "response.content_part.added":
        return _empty(document.get("part"))
    if kind is None and "choices" in document:
        return _role_only(document)
    return False


def _is_error(document: dict[str, object]) -> bool:
    return document.get("type") in _ERROR_TYPES or document.get("error") not in (None, "", {})


def _session_event(document: dict[str, object]) -> bool:
    """Whether an event belongs to a long-lived session (it names its ``session_id``), as in
    the openai Agents session stream. An error there is part of the session's normal
    conversation (a turn failed, more events follow), not a failed start: it is content."""
    return "session_id" in document


class PreambleScanner:
    """Incremental scanner of a stream's preamble, holding at most ``limit`` bytes.

    ``feed`` returns ``None`` while only preamble has arrived (keep holding), and a
    :class:`ScanResult` once the start is decided; ``eof`` decides at the end of the stream.
    After a result, both return it again and ignore further bytes. Work is linear in the bytes
    fed, and the result does not depend on how the bytes were split into chunks.
    """

    __slots__ = (
        "_data",
        "_event",
        "_first_line",
        "_limit",
        "_line",
        "_result",
        "_seen",
        "_skip_lf",
    )

    def __init__(self, limit: int) -> None:
        """Hold at most ``limit`` bytes; one byte more and the result is ``CONTENT``."""
        if limit < 0:
            raise ValueError("limit must not be negative")
        self._limit = limit
        self._seen = 0
        self._line = bytearray()
        self._skip_lf = False
        self._first_line = True
        self._event: bytes | None = None
        self._data: list[bytes] | None = None
        self._result: ScanResult | None = None

    def feed(self, chunk: bytes) -> ScanResult | None:
        """Scan the next bytes of the stream; ``None`` means keep holding."""
        if self._result is not None:
            return self._result
        room = self._limit - self._seen
        part = chunk[:room] if len(chunk) > room else chunk
        self._seen += len(part)
        self._result = self._scan(part)
        if self._result is None and len(chunk) > room:
            self._result = _CONTENT
        return self._result

    def eof(self) -> ScanResult:
        """The stream ended: decide on what was held (an unterminated last event counts)."""
        if self._result is not None:
            return self._result
        result: ScanResult | None = None
        if self._line:
            result = self._take_line(bytes(self._line))
            self._line.clear()
        if result is None:
            result = self._dispatch()
        self._result = result or _END
        return self._result

    def _scan(self, part: bytes) -> ScanResult | None:
        if self._skip_lf and part:
            self._skip_lf = False
            if part[:1] == b"\n":
                part = part[1:]
        # Lines as "\r\n", "\r" and "\n" end them, each with its one line end.
        lines = part.splitlines(keepends=True)
        if not lines:
            return None
        if self._line:
            lines[0] = bytes(self._line) + lines[0]
            self._line.clear()
        if not lines[-1].endswith((b"\n", b"\r")):
            self._line += lines.pop()  # the start of a line still to come
        elif part.endswith(b"\r"):
            self._skip_lf = True  # a "\n" starting the next bytes ends no other line
        for line in lines:
            result = self._take_line(line.rstrip(b"\r\n"))
            if result is not None:
                return result
        return None

    def _take_line(self, line: bytes) -> ScanResult | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None  # a comment: keep-alives such as ": OPENROUTER PROCESSING"
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name not in _FIELDS:
            return _CONTENT  # not an event stream after all: pass everything through
        if name == b"event":
            self._event = value
        elif name == b"data":
            if self._data is None:
                self._data = []
            self._data.append(value)
        return None

    def _dispatch(self) -> ScanResult | None:
        """An event is complete: decide on it, or ``None`` for preamble."""
        event, data = self._event, self._data
        self._event, self._data = None, None
        if data is None:
            return None  # no data: nothing is dispatched (a bare "event: ping")
        payload = b"\n".join(data)
        try:
            name = None if event is None else event.decode("utf-8")
        except UnicodeDecodeError:
            return _CONTENT
        if name == "ping" or (name not in _ERROR_EVENTS and not payload.strip()):
            return None
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            document = None  # "[DONE]", plain text, garbage: not ours to hold back
        if not isinstance(document, dict):
            return ScanResult(ScanKind.ERROR, payload, name) if name in _ERROR_EVENTS else _CONTENT
        if name in _ERROR_EVENTS and not _session_event(document):
            return ScanResult(ScanKind.ERROR, payload, name)
        if _session_event(document):
            return _CONTENT
        if _is_error(document):
            return ScanResult(ScanKind.ERROR, payload, name)
        return None if _preamble(document) else _CONTENT
