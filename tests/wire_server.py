"""A scripted raw HTTP/1.1 server for the sidecar's pool tests: each request read off the wire,
answered with bytes given as they are (odd framings, resets, silence), on 127.0.0.1 in the
test's own event loop."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from dataclasses import dataclass, field
from types import TracebackType

import httpx

__all__ = ["Seen", "Step", "WireServer", "exchange"]


async def exchange(
    transport: httpx.AsyncBaseTransport, request: httpx.Request
) -> tuple[httpx.Response, bytes]:
    """``request`` sent through ``transport``: its response, and its body read to the end (raw)."""
    response = await transport.handle_async_request(request)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, body


@dataclass(frozen=True)
class Step:
    """What the server does with one request: write ``reply``, then ``then`` (``keep`` the
    connection, ``close`` it, ``reset`` it, or ``hang`` until the server stops). With
    ``read_body=False`` the body is not read (nor anything after the head)."""

    reply: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    then: str = "keep"
    read_body: bool = True


@dataclass
class Seen:
    """One request as the server read it, and the connection (numbered from 0) it came on."""

    connection: int
    head: bytes
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (any case), else None."""
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class WireServer:
    """Answers each request with the next `Step` (the default one once they run out)."""

    steps: list[Step] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    ended: list[int] = field(default_factory=list)
    """Connections the client closed (by number), in the order noticed."""
    sni: list[str | None] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def __aenter__(self) -> WireServer:
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = self._note_sni
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._server.close()
        for writer in self._writers:  # each handler then ends of itself (none is cancelled)
            writer.transport.abort()
        async with asyncio.timeout(30):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with TLS)."""
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _note_sni(self, ssl_object: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.sni.append(name)

    async def until(self, done: object) -> None:
        """Until ``done()`` is true (it is checked whenever the server saw something)."""
        assert callable(done)
        async with asyncio.timeout(30):  # a bound, so that a failing test fails, not hangs
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def _note(self) -> None:
        self._changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        number = self.connections
        self.connections += 1
        try:
            await self._exchanges(number, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            self._note()

    async def _exchanges(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                self.ended.append(number)
                return
            step = self.steps.pop(0) if self.steps else Step()
            seen = Seen(number, head, b"")
            if step.read_body:
                seen.body = await _body(reader, seen)
            self.seen.append(seen)
            self._note()
            writer.write(step.reply)
            await writer.drain()
            if step.then == "close":
                return
            if step.then == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if step.then == "hang":
                await self._stop.wait()
                return


async def _body(reader: asyncio.StreamReader, seen: Seen) -> bytes:
    length = seen.header(b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if seen.header(b"transfer-encoding") is None:
        return b""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return body[:-2]
        body = body[:-2]
