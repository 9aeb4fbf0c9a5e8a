"""`BufferedThreadWorker`: gunicorn's gthread worker, with no thread ever waiting on a client.

gthread gives a thread to each new connection, which then waits up to 5 s for the first
bytes, and reads a request's head and body itself. Idle sockets (browsers' preconnects,
people between clicks) and slow clients (a header a byte a second) then hold the threads,
and everyone else waits behind them.

Here the event loop does all the waiting and reading, as nginx and waitress do:

- a new or kept-alive connection sits in the poller until it is readable, and is closed
  after `keepalive` seconds of silence;
- its bytes are read without blocking into a buffer until the request is complete (head,
  then body by `Content-Length` or chunked framing: `todo.serving.framing`), and only then
  handed to a thread, whose parser and application never wait on the socket;
- a request that takes longer than `request_read_timeout` to arrive is answered 408, a head
  too large 414 or 431 (problem+json, `todo.serving.refusals`), and its socket closed;
- `Expect: 100-continue` is answered by the loop when the body is within the application's
  limit; over the limit, the head alone goes to the application, which answers 413 at once,
  and the connection is closed;
- a connection ends with a half-close and a short linger that reads and discards what the
  client is still sending, in the loop: closing a socket with unread bytes makes the kernel
  send a reset, which can destroy the response before the client reads it (a 413 most of all).

Threads only run the application and write its response, with a bounded send time. HTTP/2
and TLS are not served (a proxy in front terminates them).
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from todo.serving.framing import CONTINUE, Limits, RequestFraming, Verdict
from todo.serving.refusals import refusal, status_of_parse_error

RECV_SIZE = 64 * 1024
ACCEPTS_PER_WAKEUP = 64
DEFAULT_BODY_LIMIT = 64 * 1024
REFUSALS: dict[Verdict, tuple[int, str]] = {
    Verdict.MALFORMED: (400, "malformed line ending or chunk"),
    Verdict.BODY_TOO_LARGE: (413, ""),
    Verdict.URI_TOO_LONG: (414, ""),
    Verdict.HEAD_TOO_LARGE: (431, ""),
}


class BufferedConnection(TConn):  # type: ignore[misc]  # gunicorn is untyped
    """A client connection and the bytes of its next request received so far."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 limits: Limits) -> None:
        super().__init__(cfg, sock, client, server)  # leaves the socket non-blocking
        # Appended in place: a request trickled a byte at a time costs linear copying.
        self.received = bytearray()
        self.framing = RequestFraming(limits)
        self.request = b""  # a complete request (and anything pipelined after it)
        self.close_after_response = False
        self.watched = False
        self.lingered = 0
        self.on_readable: Callable[[Any], None] | None = None


class BufferedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gthread whose event loop reads whole requests before a thread sees them."""

    request_read_timeout = 15.0  # first byte of a request to its last
    send_timeout = 10.0  # a thread writing a response to a client that does not read
    linger_seconds = 5.0  # reading what a client still sends after the last response
    linger_max_bytes = 1024 * 1024

    @classmethod
    def configure(cls, **settings: float) -> type[BufferedThreadWorker]:
        """A subclass with these class attributes changed (for gunicorn.conf.py)."""
        unknown = [name for name in settings if not hasattr(cls, name)]
        if unknown:
            raise TypeError(f"unknown worker settings: {', '.join(unknown)}")
        return type(cls.__name__, (cls,), {"__module__": cls.__module__, **settings})

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl or cfg.http2_cleartext != "off":
            raise RuntimeError(
                f"{cls.__name__} serves plain HTTP/1.1 only; terminate TLS and HTTP/2 in a "
                "proxy in front, or choose another worker class"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each holds connections in the order of their deadlines (every entry of one map
        # gets the same delay), so expiry looks only at the front.
        self.idle: OrderedDict[BufferedConnection, float] = OrderedDict()
        self.reading: OrderedDict[BufferedConnection, float] = OrderedDict()
        self.lingering: OrderedDict[BufferedConnection, float] = OrderedDict()
        self.limits = Limits()
        self.listener_addresses: dict[socket.socket, Any] = {}

    def _application_body_limit(self) -> int:
        """The application's own body limit (Flask's `MAX_CONTENT_LENGTH`), so the loop
        never buffers a body the application would refuse."""
        config = getattr(self.wsgi, "config", None)
        limit = config.get("MAX_CONTENT_LENGTH") if isinstance(config, dict) else None
        return int(limit) if limit else DEFAULT_BODY_LIMIT

    def _limit_of(self, status: int) -> int:
        """The limit a refusal with this status names."""
        return {
            413: self.limits.body, 414: self.limits.request_line, 431: self.limits.head
        }.get(status, 0)

    # ------------------------------------------------------------------ event loop

    def run(self) -> None:
        self.limits = Limits(body=self._application_body_limit())
        self.listener_addresses = {listener: listener.getsockname() for listener in self.sockets}
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=self._time_to_next_deadline())
            if not self.is_parent_alive():
                break
            self.expire_deadlines()
        self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        """Stop accepting, let requests in flight finish (and a request already on its way
        over a kept-alive connection, answered with `Connection: close`), then close."""
        self.set_accept_enabled(False)
        # Each worker has its own listening socket (SO_REUSEPORT): while it stays open the
        # kernel keeps queueing new connections on it, which would be reset when the worker
        # exits. Take what is queued now, then close it, so new connections go to the other
        # workers (or are refused, which a proxy may retry with any method).
        for listener in self.sockets:
            while self.nr_conns < self.worker_connections and self._accepted_one(listener):
                pass
            listener.close()
        linger_until = time.monotonic() + STOP_KEEPALIVE_LINGER
        for conn, deadline in self.idle.items():
            self.idle[conn] = min(deadline, linger_until)
        give_up_at = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < give_up_at:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=min(self._time_to_next_deadline(), 0.2))
            self.expire_deadlines()
        for waiting in (self.idle, self.reading, self.lingering):
            for conn in list(waiting):
                self.close(conn)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def _time_to_next_deadline(self) -> float:
        now = time.monotonic()
        timeout = 1.0
        for waiting in (self.idle, self.reading, self.lingering):
            if waiting:
                timeout = min(timeout, next(iter(waiting.values())) - now)
        return max(timeout, 0.0)

    def expire_deadlines(self) -> None:
        now = time.monotonic()
        expiries: tuple[tuple[OrderedDict[BufferedConnection, float],
                              Callable[[BufferedConnection], None]], ...] = (
            (self.idle, self.close),
            (self.reading, self.request_timed_out),
            (self.lingering, self.close),
        )
        for waiting, expire in expiries:
            while waiting:
                conn, deadline = next(iter(waiting.items()))
                if deadline > now:
                    break
                expire(conn)

    def accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if not self._accepted_one(listener) or self.nr_conns >= self.worker_connections:
                return

    def _accepted_one(self, listener: socket.socket) -> bool:
        """Accept one queued connection and wait for its request; False when none is queued."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno == errno.ECONNABORTED:  # gone before it was accepted: next one
                return True
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            raise
        self.nr_conns += 1
        conn = BufferedConnection(
            self.cfg, client_sock, client_addr, self.listener_addresses[listener], self.limits
        )
        conn.on_readable = partial(self.on_readable, conn)
        self.wait_for_request(conn)
        return True

    def wait_for_request(self, conn: BufferedConnection) -> None:
        """Watch the connection until its next request is complete: `keepalive` seconds for
        its first byte, then `request_read_timeout` for the rest."""
        if conn.received:
            self.reading[conn] = time.monotonic() + self.request_read_timeout
        else:
            self.idle[conn] = time.monotonic() + (
                self.cfg.keepalive if self.alive else STOP_KEEPALIVE_LINGER
            )
        self._watch(conn, conn.on_readable)

    def on_readable(self, conn: BufferedConnection, _sock: Any = None) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if not data:
            self.close(conn)  # the client closed (between requests, or gave up on one)
            return
        if not conn.received:
            self.idle.pop(conn, None)
            self.reading[conn] = time.monotonic() + self.request_read_timeout
        conn.received += data
        self.examine(conn)

    def examine(self, conn: BufferedConnection) -> None:
        """Hand the request to a thread if it is complete; answer it here if it cannot be."""
        verdict = conn.framing.feed(conn.received)
        if conn.framing.send_continue:
            conn.framing.send_continue = False
            try:
                conn.sock.send(CONTINUE)
            except OSError:
                self.close(conn)
                return
        if verdict is Verdict.INCOMPLETE:
            return
        refused = REFUSALS.get(verdict)
        if refused is not None:
            self.refuse(conn, *refused)
            return
        self.reading.pop(conn, None)
        self._unwatch(conn)
        conn.request = conn.framing.without_expectation(conn.received)
        conn.close_after_response = verdict is Verdict.HAND_OVER_AND_CLOSE
        conn.received = bytearray()
        conn.framing.reset()
        self.enqueue_req(conn)

    def request_timed_out(self, conn: BufferedConnection) -> None:
        self.refuse(conn, 408, "")

    def refuse(self, conn: BufferedConnection, status: int, reason: str) -> None:
        """Answer from the loop and end the connection. The socket's send buffer is empty
        between requests, so a small answer goes out in one non-blocking send."""
        self.reading.pop(conn, None)
        response = self.refusal(conn.client, status, reason)
        try:
            conn.sock.send(response)
        except OSError:
            self.close(conn)
            return
        self.linger(conn)

    def linger(self, conn: BufferedConnection) -> None:
        """Half-close, then read and discard what the client still sends until it closes,
        for `linger_seconds` at most (RFC 9112 section 9.6)."""
        self.idle.pop(conn, None)
        self.reading.pop(conn, None)
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        self.lingering[conn] = time.monotonic() + self.linger_seconds
        self._watch(conn, partial(self.on_lingering_readable, conn))

    def on_lingering_readable(self, conn: BufferedConnection, _sock: Any = None) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered > self.linger_max_bytes:
            self.close(conn)

    def close(self, conn: BufferedConnection) -> None:
        for waiting in (self.idle, self.reading, self.lingering):
            waiting.pop(conn, None)
        self._unwatch(conn)
        conn.close()
        self.nr_conns -= 1

    def _watch(self, conn: BufferedConnection, callback: Any) -> None:
        if conn.watched:
            self.poller.modify(conn.sock, selectors.EVENT_READ, callback)
        else:
            self.poller.register(conn.sock, selectors.EVENT_READ, callback)
            conn.watched = True

    def _unwatch(self, conn: BufferedConnection) -> None:
        if conn.watched:
            conn.watched = False
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def finish_request(self, conn: BufferedConnection, future: Future[bool]) -> None:
        """Back on the loop after a thread answered: wait for the next request (pipelined
        bytes the parser read ahead are examined first), or end the connection."""
        try:
            keep_alive = not future.cancelled() and future.result()
        except Exception:
            keep_alive = False
        if not keep_alive:
            self.linger(conn)
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            self.close(conn)
            return
        conn.received = bytearray(conn.parser.unreader.take_buffered())
        self.wait_for_request(conn)
        if conn.received:
            self.examine(conn)

    # ------------------------------------------------------------------ worker threads

    def handle(self, conn: BufferedConnection) -> bool:
        """Serve the buffered request (in a worker thread); whether to keep the connection."""
        request = None
        try:
            conn.init()  # the parser, once per connection; it makes the socket blocking
            conn.sock.settimeout(self.send_timeout)
            conn.parser.unreader.unread(conn.request)
            conn.request = b""
            request = next(conn.parser)
            if conn.close_after_response:
                request.must_close = True  # the rest of the body was never read
            if not self.handle_request(request, conn):
                return False
            # A body the application did not read is in the parser's buffer, not on the
            # socket: discarding it never waits on the client.
            return bool(conn.parser.finish_body(deadline=time.monotonic() + self.send_timeout))
        except (http.errors.NoMoreData, StopIteration):
            return False
        except (TimeoutError, ssl.SSLError):
            return False
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
            return False
        except Exception as error:
            self.handle_error(request, conn.sock, conn.client, error)
            return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        """gunicorn's answer to a request it could not parse or serve, as problem+json."""
        status = status_of_parse_error(exc)
        if status == 500:
            self.log.exception("Error handling request")
        try:
            client.sendall(self.refusal(addr, status, str(exc)))
        except OSError:
            self.log.debug("Failed to send error message.")

    def refusal(self, addr: Any, status: int, reason: str) -> bytes:
        """The refusal's bytes, logged as gunicorn logs a request it refuses."""
        response, request_id = refusal(status, reason=reason, limit=self._limit_of(status))
        host = addr[0] if isinstance(addr, tuple) else addr
        self.log.warning("Invalid request from ip=%s: %s %s (request id %s)",
                         host, status, reason or "refused", request_id)
        return response
