"""A PostgreSQL wire-protocol proxy that records what clients send to the server.

`RecordingProxy` listens on 127.0.0.1 (an ephemeral port) and relays every connection to one
PostgreSQL server, bytes unchanged in both directions. The client→server stream is split
into protocol messages (`FrontendParser`) and each message goes to a `QueryRecorder` before
it is forwarded, so a statement is recorded before the server can have answered it. What is
recorded is therefore exactly what reaches the server, whether the driver's Python code, its
C code or libpq sent it.

Only the simple query protocol is understood: a Query message is one query string, recorded
as sent (a string with several statements is one entry, as it is one round trip). A message
of the extended protocol (Parse, Bind, Execute, ...) or of the function-call protocol is
recorded as a problem instead, because its SQL and parameters could not be replayed as text.

The proxy cannot read an encrypted stream, so it keeps connections in plain text: to an
SSLRequest or GSSENCRequest it answers 'N' (not supported) itself, as a server without TLS or
GSSAPI would, and does not forward it. A client with `sslmode=prefer` then continues in plain
text; one with `sslmode=require` gives up, which is the right outcome for a capture. The
connection to the server is plain too, so the server must accept non-TLS connections.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

# Request codes that take the place of the protocol version in a startup-phase packet.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
STARTUP_PACKETS = {
    SSL_REQUEST: "SSLRequest",
    GSSENC_REQUEST: "GSSENCRequest",
    CANCEL_REQUEST: "CancelRequest",
}
STARTUP_MESSAGE = "StartupMessage"
ENCRYPTION_REQUESTS = ("SSLRequest", "GSSENCRequest")
QUERY = "Q"
# Frontend messages of the extended query protocol, and the fast-path function call.
UNSUPPORTED_MESSAGES = {
    "P": "Parse",
    "B": "Bind",
    "E": "Execute",
    "D": "Describe",
    "C": "Close",
    "S": "Sync",
    "H": "Flush",
    "F": "FunctionCall",
}
LENGTH_BYTES = 4
RECEIVE_BYTES = 65536
ACCEPT_POLL_SECONDS = 0.1
CONNECT_SECONDS = 10.0
JOIN_SECONDS = 5.0

Upstream = tuple[str, int] | str  # (host, port), or the path of a Unix-domain socket


class ProtocolError(ValueError):
    """The client sent bytes that are not a valid frontend message."""


@dataclass(frozen=True)
class FrontendMessage:
    """One client→server message: `kind` is its type byte (e.g. "Q"), or for the untyped
    startup-phase packets `StartupMessage`, `SSLRequest`, `GSSENCRequest` or `CancelRequest`.
    `payload` follows the length field; `raw` is the whole message as received."""

    kind: str
    payload: bytes
    raw: bytes

    def query_text(self) -> str:
        """The query string of a Query message (its payload is NUL-terminated)."""
        if self.kind != QUERY or not self.payload.endswith(b"\0"):
            raise ProtocolError(f"not a Query message: {self.raw[:40]!r}")
        return self.payload[:-1].decode("utf-8")


class FrontendParser:
    """Splits the client→server byte stream into messages, wherever the reads cut it.

    Until the StartupMessage, packets have no type byte (int32 length including itself, then
    an int32 code); after it, each message is a type byte, an int32 length including itself,
    and the payload.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_startup_phase = True

    def feed(self, data: bytes) -> list[FrontendMessage]:
        """The messages `data` completes, in order; an incomplete tail waits for more."""
        self._buffer += data
        messages = []
        while (message := self._next_message()) is not None:
            messages.append(message)
        return messages

    def _next_message(self) -> FrontendMessage | None:
        type_bytes = 0 if self._in_startup_phase else 1
        header_bytes = type_bytes + LENGTH_BYTES
        if len(self._buffer) < header_bytes:
            return None
        length = int.from_bytes(self._buffer[type_bytes:header_bytes], "big")
        if length < LENGTH_BYTES:
            raise ProtocolError(f"message length {length} is below the minimum of 4")
        total = type_bytes + length
        if len(self._buffer) < total:
            return None
        raw = bytes(self._buffer[:total])
        del self._buffer[:total]
        payload = raw[header_bytes:]
        if not self._in_startup_phase:
            return FrontendMessage(chr(raw[0]), payload, raw)
        return FrontendMessage(self._startup_kind(payload), payload, raw)

    def _startup_kind(self, payload: bytes) -> str:
        if len(payload) < LENGTH_BYTES:
            raise ProtocolError("startup packet without a protocol version or request code")
        kind = STARTUP_PACKETS.get(int.from_bytes(payload[:LENGTH_BYTES], "big"))
        if kind is None:
            self._in_startup_phase = False
            return STARTUP_MESSAGE
        return kind


class QueryRecorder:
    """The query strings clients sent, in the order the proxy received them (all
    connections together), and anything that makes the record incomplete. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queries: list[str] = []
        self._problems: list[str] = []

    def record(self, message: FrontendMessage) -> None:
        if message.kind == QUERY:
            self._record_query(message)
        elif message.kind in UNSUPPORTED_MESSAGES:
            self.report_problem(
                f"the client sent a {UNSUPPORTED_MESSAGES[message.kind]} message: the capture"
                " only supports the simple query protocol"
            )

    def _record_query(self, message: FrontendMessage) -> None:
        try:
            text = message.query_text()
        except UnicodeDecodeError:
            self.report_problem(f"a query is not UTF-8: {message.payload[:80]!r}")
            return
        with self._lock:
            self._queries.append(text)

    def report_problem(self, problem: str) -> None:
        with self._lock:
            self._problems.append(problem)

    def clear_queries(self) -> None:
        with self._lock:
            self._queries.clear()

    def queries(self) -> list[str]:
        with self._lock:
            return list(self._queries)

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)


def connect_upstream(upstream: Upstream) -> socket.socket:
    if isinstance(upstream, str):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(upstream)
        except OSError:
            connection.close()
            raise
    else:
        connection = socket.create_connection(upstream, timeout=CONNECT_SECONDS)
    connection.settimeout(None)
    return connection


def shut_down(connection: socket.socket) -> None:
    """End both directions now; a thread blocked in recv() on it returns."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down or never connected


class RecordingProxy:
    """Relays connections on `address` to `upstream`, giving `recorder` every client message.

    Use as a context manager: leaving it stops accepting, cuts any connection still open and
    joins the proxy's threads (which are daemons, so none can keep the process alive)."""

    def __init__(self, upstream: Upstream, recorder: QueryRecorder) -> None:
        self.upstream = upstream
        self.recorder = recorder
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open_sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="pgwire-accept", daemon=True
        )

    def __enter__(self) -> RecordingProxy:
        self._accept_thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        if self._accept_thread.is_alive():
            self._accept_thread.join()
        self._listener.close()
        with self._lock:
            still_open = list(self._open_sockets)
            threads = list(self._threads)
        for connection in still_open:
            shut_down(connection)
        for thread in threads:
            thread.join(JOIN_SECONDS)

    def _accept_loop(self) -> None:
        # Polls so that close() needs no platform-specific way to interrupt accept().
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            self._track(client)
            self._start_thread(self._serve, client, name="pgwire-frontend")

    def _start_thread(
        self, target: Callable[..., None], *args: socket.socket, name: str
    ) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [known for known in self._threads if known.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _serve(self, client: socket.socket) -> None:
        try:
            server = connect_upstream(self.upstream)
        except OSError as error:
            self.recorder.report_problem(f"the proxy cannot reach {self.upstream}: {error}")
            self._untrack(client)
            client.close()
            return
        self._track(server)
        backend_relay = self._start_thread(
            self._relay_backend, server, client, name="pgwire-backend"
        )
        try:
            self._relay_frontend(client, server)
        finally:
            shut_down(server)
            shut_down(client)
            backend_relay.join()
            self._untrack(client, server)
            server.close()
            client.close()

    def _relay_frontend(self, client: socket.socket, server: socket.socket) -> None:
        parser = FrontendParser()
        try:
            while data := client.recv(RECEIVE_BYTES):
                for message in parser.feed(data):
                    self.recorder.record(message)
                    if message.kind in ENCRYPTION_REQUESTS:
                        client.sendall(b"N")  # stay in plain text, which the proxy can read
                    else:
                        server.sendall(message.raw)
        except ProtocolError as error:
            self.recorder.report_problem(f"unreadable client message: {error}")
        except OSError:
            pass  # one side went away; _serve closes both

    def _relay_backend(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(RECEIVE_BYTES):
                client.sendall(data)
        except OSError:
            pass
        finally:
            shut_down(client)  # the server hung up: so does the proxy, which ends the frontend

    def _track(self, *connections: socket.socket) -> None:
        with self._lock:
            self._open_sockets.update(connections)
            if self._stopping.is_set():  # close() may have missed them: cut them here
                for connection in connections:
                    shut_down(connection)

    def _untrack(self, *connections: socket.socket) -> None:
        with self._lock:
            self._open_sockets.difference_update(connections)
