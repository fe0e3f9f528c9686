"""The loopback server: an HTTP/1.1 `Upstream` on 127.0.0.1 and its lifecycle.

`Upstream` runs in background threads (one to accept, one per connection), so sync, asyncio
and trio code can all talk to it. Each request path takes its next `Reply` from a script;
unscripted requests to the LLM paths get a canned, SDK-parseable success (see
`retry_transport.testing.upstream.providers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeAlias

from .._received import Received
from .providers import _canned
from .ratelimit import ProviderRateLimit
from .wire import (
    _NO_BODY_STATUSES,
    _RECV,
    Reply,
    _BadRequest,
    _error_head,
    _lingering_close,
    _read_request,
    _Reader,
    _route,
    _status_head,
)

__all__ = ["Responder", "Upstream"]

Responder: TypeAlias = Callable[[Received], Reply]
"""A function that makes the answer to one request (see `Upstream.respond`)."""

_JOIN_TIMEOUT = 10.0  # seconds stop() gives each connection thread


class _Script:
    """The replies queued for one path; the last one repeats once it has been served."""

    __slots__ = ("replies", "served_last")

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.served_last = False

    def add(self, replies: Iterable[Reply]) -> None:
        if self.served_last:
            # The repeating reply has had its turn: new replies take over from it.
            self.replies.clear()
            self.served_last = False
        self.replies.extend(replies)

    def take(self) -> Reply:
        if len(self.replies) > 1:
            return self.replies.popleft()
        self.served_last = True
        return self.replies[0]


class Upstream:
    """A scriptable HTTP/1.1 server on 127.0.0.1, run in background threads.

    Use it as a context manager (``with Upstream() as up:``) or call `start` and `stop`.
    `stop` closes every open connection and joins every thread. Connections are kept alive
    between requests unless the client asks otherwise; request bodies may be sent with a
    ``Content-Length`` or chunked.

    Requests to a path take the replies given to `script` in turn. An unscripted path is
    answered by the ``"*"`` script if there is one, else with a canned success: for ``POST``
    to ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/messages`` the matching LLM reply
    (streamed if the request body has ``"stream": true``), to Gemini's
    ``/v1beta/models/{model}:generateContent`` its answer (``:streamGenerateContent``: its
    ``alt=sse`` stream), for anything else ``200 {"ok": true}``.

    With a ``rate_limit`` (also settable later as the `rate_limit` attribute), every request
    is first charged to it: over a limit, it is answered ``429`` and its script is not
    consumed; every answer carries the limit's headers.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, rate_limit: ProviderRateLimit | None = None
    ) -> None:
        self._host = host
        self.rate_limit = rate_limit
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None
        self._open: dict[socket.socket, threading.Thread] = {}
        self._accepted = 0
        self._scripts: dict[str, _Script | Responder] = {}
        self.responder_errors: list[Exception] = []
        self._received: list[Received] = []
        self._base = f"http://{host}:{port}"
        self._silent = [0, 0]  # replies that went silent (a hang or a stall), silences ended

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Upstream:
        """Bind (port 0: a free port), listen and start accepting; returns self."""
        if self._listener is not None:
            raise RuntimeError("Upstream is already running")
        self._stopping = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(1024)
            listener.setblocking(False)
            wake = socket.socketpair()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._wake = wake
        self._port = listener.getsockname()[1]
        self._base = f"http://{self._host}:{self._port}"
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener, wake[0]), name="upstream-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and join every thread.

        Replies waiting in a delay, a hang or a stall are cut short. Scripts and records are kept.
        """
        listener, wake, acceptor = self._listener, self._wake, self._acceptor
        if listener is None or wake is None or acceptor is None:
            return
        self._stopping.set()
        wake[1].send(b"x")
        acceptor.join()
        listener.close()
        wake[0].close()
        wake[1].close()
        self._listener = self._wake = self._acceptor = None
        with self._lock:
            threads = list(self._open.values())
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=_JOIN_TIMEOUT)
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            raise RuntimeError(f"Upstream connection threads did not stop: {stuck}")

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting and records ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the OS once started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``, with no trailing slash."""
        if self._listener is None:
            raise RuntimeError("Upstream is not running: call start() or use it in a with block")
        return f"http://{self._host}:{self._port}"

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted so far (never reset)."""
        with self._lock:
            return self._accepted

    def script(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for requests to ``path`` (without query; ``"*"``: any other path).

        Each request takes the next reply; the last one then repeats for every later request,
        so ``script(p, Reply(503), Reply(503), Reply(200))`` serves 503, 503, then 200 forever.
        Calling it again for the same path appends to the queue, or replaces the last reply
        if that one has already been served.
        """
        if path != "*" and (not path.startswith("/") or "?" in path):
            raise ValueError(f"path must start with '/' and have no query, or be '*': {path!r}")
        if not replies:
            raise ValueError("script needs at least one reply")
        if not all(isinstance(reply, Reply) for reply in replies):
            raise ValueError("replies must be Reply instances")
        with self._lock:
            entry = self._scripts.get(path)
            if not isinstance(entry, _Script):
                entry = self._scripts[path] = _Script()
            entry.add(replies)

    def respond(self, path: str, responder: Responder) -> None:
        """Answer every request to ``path`` (without query; ``"*"``: any other path) with
        ``responder(request)``, called afresh for each request, in the connection's thread.

        For answers that depend on the request, or a seeded random mix of faults in a soak.
        It replaces a script of the same path (and `script` replaces it in turn). A responder
        that raises, or returns something other than a `Reply`, gets its request a ``500``
        and the error appended to `responder_errors`.
        """
        if path != "*" and (not path.startswith("/") or "?" in path):
            raise ValueError(f"path must start with '/' and have no query, or be '*': {path!r}")
        if not callable(responder):
            raise TypeError(f"responder must be callable, got {type(responder).__name__}")
        with self._lock:
            self._scripts[path] = responder

    def received(self, path: str | None = None) -> list[Received]:
        """The requests read so far, oldest first; only those to ``path`` (no query) if given."""
        with self._lock:
            records = list(self._received)
        if path is None:
            return records
        return [record for record in records if _route(record.path) == path]

    def wait_received(self, count: int, path: str | None = None, *, timeout: float = 5.0) -> None:
        """Block until at least ``count`` requests (to ``path``, if given) have been read.

        For a test that must act while a reply is still pending (a hang, a delay). Raises
        `TimeoutError` after ``timeout`` seconds.
        """

        def enough() -> bool:
            if path is None:
                return len(self._received) >= count
            return sum(_route(record.path) == path for record in self._received) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                raise TimeoutError(f"{count} request(s) to {path or 'any path'} not received")

    def wait_stalled(self, count: int = 1, *, ended: bool = False, timeout: float = 5.0) -> None:
        """Block until at least ``count`` replies have gone silent (a ``"hang"`` or a
        ``"stall"`` fault: everything they will send has been sent); with ``ended``, until
        ``count`` such silences have ended, because the client left or the server stopped.

        Raises `TimeoutError` after ``timeout`` seconds.
        """
        index = 1 if ended else 0
        with self._changed:
            if not self._changed.wait_for(lambda: self._silent[index] >= count, timeout):
                what = "ended" if ended else "started"
                raise TimeoutError(f"{count} silence(s) not {what}")

    @property
    def silent(self) -> int:
        """How many replies are silent right now (a hang or a stall the client still holds)."""
        with self._lock:
            return self._silent[0] - self._silent[1]

    def count(self, path: str | None = None) -> int:
        """How many requests were read so far (to ``path`` only, if given)."""
        return len(self.received(path))

    def reset(self) -> None:
        """Forget every script, responder and recorded request."""
        with self._lock:
            self._scripts.clear()
            self._received.clear()

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        self._accepted += 1
                        thread = threading.Thread(
                            target=self._serve,
                            args=(conn, self._accepted),
                            name=f"upstream-conn-{self._accepted}",
                            daemon=True,
                        )
                        self._open[conn] = thread
                    thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = _Reader(conn)
        try:
            # No stop check between requests: stop() shuts the socket down, so the next read
            # ends the loop (a check here would only race with it).
            while True:
                try:
                    request = _read_request(reader, conn)
                except _BadRequest as bad:
                    conn.sendall(_error_head(bad.status))
                    _lingering_close(conn)
                    return
                if request is None:
                    return
                method, target, headers, body, wants_close = request
                url = target if target.startswith(("http://", "https://")) else self._base + target
                record = Received(method, url, headers, body, time.monotonic(), number)
                limit = self.rate_limit
                extra, refusal = limit.admit(record) if limit is not None else ((), None)
                with self._lock:
                    self._received.append(record)
                    self._changed.notify_all()
                    answer = refusal or self._reply_for(record)
                reply = answer if isinstance(answer, Reply) else self._call(answer, record)
                if extra and refusal is None:
                    reply = dataclasses.replace(reply, headers=(*reply.headers, *extra))
                if not self._respond(conn, method, reply, wants_close):
                    return
        except OSError:
            # The client went away, or stop() shut the socket down under us.
            return
        finally:
            with self._lock:
                # Closed under the lock so stop() never shuts down a reused descriptor.
                self._open.pop(conn, None)
                conn.close()

    def _reply_for(self, record: Received) -> Reply | Responder:
        route = _route(record.path)
        entry = self._scripts.get(route) or self._scripts.get("*")
        if isinstance(entry, _Script):
            return entry.take()
        if entry is not None:
            return entry
        return _canned(record.method, route, record.content)

    def _call(self, responder: Responder, record: Received) -> Reply:
        try:
            reply: object = responder(record)
        except Exception as error:
            return self._responder_failed(error)
        if not isinstance(reply, Reply):
            return self._responder_failed(
                TypeError(f"responder returned {type(reply).__name__}, not a Reply")
            )
        return reply

    def _responder_failed(self, error: Exception) -> Reply:
        with self._lock:
            self.responder_errors.append(error)
        return Reply(500, f"responder failed: {error!r}".encode())

    def _respond(self, conn: socket.socket, method: str, reply: Reply, wants_close: bool) -> bool:
        """Send ``reply``; whether the connection may serve another request."""
        if reply.delay and self._stopping.wait(reply.delay):
            return False
        fault = reply.fault
        if fault == "drop":
            return False
        if fault == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if fault == "hang":
            self._go_silent(conn)
            return False

        names = {name.lower() for name, _ in reply.headers}
        close = wants_close or any(
            name.lower() == "connection" and "close" in value.lower()
            for name, value in reply.headers
        )
        extra: list[tuple[str, str]] = []
        if "content-length" not in names and "transfer-encoding" not in names:
            if reply.chunks is not None:
                extra.append(("transfer-encoding", "chunked"))
            elif reply.status not in _NO_BODY_STATUSES:
                extra.append(("content-length", str(len(reply.body))))
        if wants_close and "connection" not in names:
            extra.append(("connection", "close"))
        head = _status_head(reply.status, (*reply.headers, *extra))

        if fault == "drop_mid_headers":
            line_end = head.index(b"\r\n") + 2
            next_end = head.index(b"\r\n", line_end)
            conn.sendall(head[: line_end + (next_end - line_end) // 2])
            return False
        no_body = method == "HEAD" or reply.status in _NO_BODY_STATUSES
        if fault == "stall" and reply.chunks is None:
            conn.sendall(head)
            self._go_silent(conn)
            return False
        if reply.chunks is None:
            body = b"" if no_body else reply.body
            if fault == "drop_mid_body":
                conn.sendall(head + body[: len(body) // 2])
                return False
            conn.sendall(head + body)
            return not close
        conn.sendall(head)
        if no_body:
            return not close
        items = reply.chunks() if callable(reply.chunks) else reply.chunks
        if fault == "drop_mid_body":
            listed = list(items)
            items = listed[: len(listed) // 2]
        first = True
        for item in items:
            if not item:
                continue
            if not first and reply.chunk_delay and self._stopping.wait(reply.chunk_delay):
                return False
            first = False
            conn.sendall(b"%x\r\n" % len(item) + item + b"\r\n")
        if fault == "drop_mid_body":
            return False
        if fault == "stall":
            self._go_silent(conn)
            return False
        conn.sendall(b"0\r\n\r\n")
        return not close

    def _go_silent(self, conn: socket.socket) -> None:
        """Send nothing until the client closes the connection or `stop` shuts it down."""
        with self._changed:
            self._silent[0] += 1
            self._changed.notify_all()
        try:
            while conn.recv(_RECV):
                pass
        finally:
            with self._changed:
                self._silent[1] += 1
                self._changed.notify_all()
