"""Did an event stream end with its protocol's final event? A watcher that costs next to nothing.

:class:`TerminalWatcher` is pure and incremental. It recognises the stream's protocol from the
start of the stream (the first event's name or the first data line's type), then keeps only a
window of the stream's last bytes: references to the last chunks (no copy) and the first bytes
of the line that straddles the window's left edge. Nothing of a chunk is searched while the
stream flows; at the end, the window alone is searched for the terminal event, which every
recognised protocol sends last (followed at most by a usage chunk, ``data: [DONE]`` or
keep-alive comments). Memory is bounded by the window, however long the stream.

A protocol it does not recognise, or a stream that is not an event stream after all, is left
alone: the watcher then reports nothing. The result does not depend on how the bytes were split
into chunks, as long as fewer than `WINDOW` bytes follow the end of the terminal event's line.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

__all__ = ["HEAD", "PROTOCOLS", "WINDOW", "StreamProtocol", "TerminalWatcher"]

WINDOW = 65536
"""Bytes at the stream's end that are searched for the terminal event."""
HEAD = 512
"""Bytes kept of the start of the line cut by the window's left edge (one huge final event)."""
_DETECT_LIMIT = 65536  # bytes of comments, ids and blank lines before the protocol is given up
_FIRST_LINE = 4096  # bytes of the first event line or data line that decide the protocol


@dataclass(frozen=True, slots=True)
class StreamProtocol:
    """An event-stream protocol with a documented final event."""

    name: str
    """Its name, as messages print it ("Anthropic Messages")."""
    terminal: str
    """Its final event(s), as messages print them ("message_stop")."""
    pattern: re.Pattern[bytes]
    """Matches a complete line (terminated) that is, or carries, a final event."""


def _terminal(names: str, data: str) -> re.Pattern[bytes]:
    """A line that is ``event: <one of names>`` or a data line carrying ``data``, terminated."""
    return re.compile(
        rb"^(?:event:[ ]?(?:" + names.encode() + rb")[ \t]*|data:[^\r\n]*?"
        rb"(?:" + data.encode() + rb")[^\r\n]*)(?:\r|\n)",
        re.MULTILINE,
    )


_TYPE = r'"type"\s*:\s*"(?:{})"'

ANTHROPIC = StreamProtocol(
    "Anthropic Messages",
    "message_stop",
    _terminal("message_stop|error", _TYPE.format("message_stop|error")),
)
RESPONSES = StreamProtocol(
    "OpenAI Responses",
    "response.completed, response.incomplete or response.failed",
    _terminal(
        r"response\.completed|response\.incomplete|response\.failed|error",
        _TYPE.format(r"response\.completed|response\.incomplete|response\.failed|error"),
    ),
)
CHAT = StreamProtocol(
    "OpenAI chat completions",
    "data: [DONE] or a chunk with a finish_reason",
    re.compile(
        rb'^data:[ ]?(?:\[DONE\][ \t]*|[^\r\n]*?(?:"finish_reason"\s*:\s*"|"error"\s*:\s*[{"])'
        rb"[^\r\n]*)(?:\r|\n)",
        re.MULTILINE,
    ),
)
GEMINI = StreamProtocol(
    "Gemini",
    "a candidate with a finishReason",
    re.compile(
        rb'^data:[^\r\n]*?(?:"finishReason"\s*:\s*"|"error"\s*:\s*\{)[^\r\n]*(?:\r|\n)',
        re.MULTILINE,
    ),
)
COHERE = StreamProtocol(
    "Cohere chat v2",
    "message-end",
    _terminal("message-end", _TYPE.format("message-end")),
)

PROTOCOLS = (ANTHROPIC, RESPONSES, CHAT, GEMINI, COHERE)
"""Every protocol the watcher recognises."""

_BY_EVENT = {
    b"message_start": ANTHROPIC,
    b"response.created": RESPONSES,
    b"response.queued": RESPONSES,
    b"response.in_progress": RESPONSES,
    b"message-start": COHERE,
}
_FIRST_TYPE = re.compile(rb'^\s*\{\s*"type"\s*:\s*"([\w.-]+)"')
_CHAT_DATA = re.compile(
    rb'"object"\s*:\s*"(?:chat\.completion\.chunk|text_completion)"|"choices"\s*:'
)
_GEMINI_DATA = re.compile(rb'^\s*\{\s*"candidates"\s*:')
_FIELDS = (b"id", b"retry")
_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LAST_LINES = 16
"""Lines at the window's end tried one by one for the terminal event, before the whole window
is searched (where a clean stream's terminal event is, at a fraction of a full search's cost)."""


def _ends_properly(pattern: re.Pattern[bytes], tail: bytes) -> bool:
    """Whether ``pattern`` matches in ``tail``: the same answer as ``pattern.search(tail)``,
    found in a clean stream's last lines first. (A match of a line-anchored pattern at a line's
    start is one that a search of the whole would also find; none there, the whole is
    searched.)"""
    stop = len(tail)
    for _ in range(_LAST_LINES):
        newline = tail.rfind(b"\n", 0, stop)
        if pattern.match(tail, newline + 1) is not None:
            return True
        if newline < 0:
            break
        stop = newline
    return pattern.search(tail) is not None


def _by_data(value: bytes) -> StreamProtocol | None:
    """The protocol a stream's first data line belongs to, if any."""
    first = _FIRST_TYPE.match(value)
    if first is not None:
        return _BY_EVENT.get(first.group(1))
    if _GEMINI_DATA.match(value):
        return GEMINI
    if _CHAT_DATA.search(value):
        return CHAT
    return None


class TerminalWatcher:
    """Watches one event stream for its protocol's final event.

    ``feed`` every chunk in order, then call ``missing`` once the stream ended (its body ended,
    or reading it failed): it names the final event the stream lacked, or returns ``None``
    (the stream was complete, or of no protocol the watcher knows).
    """

    __slots__ = ("_chunks", "_done", "_head", "_line", "_protocol", "_seen", "_size")

    def __init__(self) -> None:
        self._protocol: StreamProtocol | None = None
        self._done = False  # the protocol is decided (or given up): no more detection
        self._line = bytearray()  # the first lines' incomplete one, until the protocol is decided
        self._seen = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._head = b""

    @property
    def protocol(self) -> StreamProtocol | None:
        """The protocol recognised so far; ``None`` while undecided or if unknown."""
        return self._protocol

    @property
    def watching(self) -> bool:
        """False once the stream is known to be of no recognised protocol: feeding is moot."""
        return not self._done or self._protocol is not None

    def feed(self, chunk: bytes) -> None:
        """The stream's next bytes."""
        if not self._done:
            self._recognise(chunk)
        if self._protocol is None and self._done:
            self._chunks.clear()
            return
        chunks = self._chunks
        chunks.append(chunk)
        size = self._size + len(chunk)
        # Chunks that leave the window: keep the start of the line the window now begins in.
        while size - len(chunks[0]) >= WINDOW:
            old = chunks.popleft()
            size -= len(old)
            line = old.rfind(b"\n")
            if line >= 0:
                self._head = old[line + 1 : line + 1 + HEAD]
            elif len(self._head) < HEAD:
                self._head += old[: HEAD - len(self._head)]
        self._size = size

    def missing(self) -> str | None:
        """At the end: the final event the stream lacks, or ``None``."""
        protocol = self._protocol
        if protocol is None:
            if self._done:
                return None
            # Ended while still undecided: judge by what came.
            self._recognise(b"", final=True)
            protocol = self._protocol
            if protocol is None:
                return None
        tail = self._head + b"".join(self._chunks)
        if _ends_properly(protocol.pattern, tail):
            return None
        return f"the {protocol.name} stream ended without its final event ({protocol.terminal})"

    def _recognise(self, chunk: bytes, *, final: bool = False) -> None:
        """Decide the protocol from the stream's first event line or data line."""
        self._seen += len(chunk)
        lines = _LINE_END.split(chunk)
        lines[0] = bytes(self._line) + lines[0]
        if self._seen == len(chunk) and lines[0].startswith(_BOM):
            lines[0] = lines[0][len(_BOM) :]
        last = lines.pop()
        if final or len(last) >= _FIRST_LINE:
            lines.append(last)
            last = b""
        self._line = bytearray(last)
        for line in lines:
            # A "\r\n" split across chunks reads as one more blank line: skipped like others.
            if not line or line.startswith(b":"):
                continue  # blank lines and comments (keep-alives)
            name, colon, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"event" and colon:
                self._decide(_BY_EVENT.get(value.strip()))
                return
            if name == b"data" and colon:
                self._decide(_by_data(value[:_FIRST_LINE]))
                return
            if name not in _FIELDS:
                self._decide(None)  # not an event stream after all
                return
        if final or self._seen >= _DETECT_LIMIT:
            self._decide(None)

    def _decide(self, protocol: StreamProtocol | None) -> None:
        self._protocol = protocol
        self._done = True
        self._line = bytearray()
