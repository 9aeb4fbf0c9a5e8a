"""The serving layer through real sockets: gunicorn with the shipped config and its worker
(`todo.serving.worker`), as production runs it.

Idle and slow clients must not hold up anyone else, oversized bodies must be answered 413
and that answer must reach the client, and errors found before the application runs are
problem+json like every other error.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import flask_migrate
import pytest

from tests.conftest import make_config, make_token, p95
from tests.gunicorn_server import Gunicorn
from todo import create_app
from todo.extensions import db

USER = "serving-user"


def auth() -> bytes:
    """The Authorization header line, with a fresh token (a module-level one could expire
    before a slow suite reaches these tests)."""
    return f"Authorization: Bearer {make_token(USER)}\r\n".encode()


def migrated_sqlite(directory: Path) -> str:
    url = f"sqlite:///{directory / 'todo.db'}"
    app = create_app(make_config(url))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    running = Gunicorn(migrated_sqlite(tmp_path_factory.mktemp("serving")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def task_id(server: Gunicorn) -> str:
    status, _, body = exchange(server, post_request(f"/api/{USER}/tasks", b'{"title": "t"}'))
    assert status == 201
    return str(json.loads(body)["id"])


# ---------------------------------------------------------------- raw HTTP


def connect(server: Gunicorn) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def get_request(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n".encode() + auth() + extra + b"\r\n"


def post_request(path: str, body: bytes, method: str = "POST", extra: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode()
    return head + auth() + extra + b"\r\n" + body


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def read_response(sock: socket.socket, buffered: bytearray | None = None) -> Response:
    """One response from `sock` (HTTP/1.1, Content-Length framing; 1xx are skipped)."""
    data = buffered if buffered is not None else bytearray()
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response; got {bytes(data)!r}")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            data[:] = rest
            continue
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the middle of a response body")
            rest += chunk
        data[:] = rest[length:]
        return Response(status, headers, rest[:length])


def exchange(server: Gunicorn, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with closing(connect(server)) as sock:
        sock.sendall(request)
        response = read_response(sock)
    return response.status, response.headers, response.body


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers.get("x-request-id")
    body: dict[str, Any] = json.loads(response.body)
    assert body["status"] == status and body["detail"]
    return body


def timed_requests(server: Gunicorn, path: str, count: int, clients: int = 4) -> list[float]:
    """Latencies of `count` GETs of `path`, from `clients` keep-alive connections at once."""
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            for _ in range(share):
                started = time.perf_counter()
                connection.request("GET", path, headers={"Authorization": f"Bearer {make_token(USER)}"})
                response = connection.getresponse()
                response.read()
                latencies.append(time.perf_counter() - started)
                assert response.status == 200, response.status
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(count // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    return latencies


@contextmanager
def open_sockets(server: Gunicorn, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(closing(connect(server)))
            if first_bytes:
                sock.sendall(first_bytes)
            sockets.append(sock)
        yield sockets


# ---------------------------------------------------------------- idle and slow clients


def test_a_thousand_idle_connections_do_not_delay_anyone(server: Gunicorn, task_id: str) -> None:
    path = f"/api/{USER}/tasks/{task_id}"
    with open_sockets(server, 1000) as idle:
        latencies = []
        for _ in range(100):  # each on a new connection, as a browser's next visitor
            started = time.perf_counter()
            status, _, _ = exchange(server, get_request(path))
            latencies.append(time.perf_counter() - started)
            assert status == 200
        assert max(latencies) < 1.0, max(latencies)
        # The idle connections are still open and still served when they speak.
        idle[0].sendall(get_request(path))
        assert read_response(idle[0]).status == 200


def test_slow_clients_do_not_slow_others_down(server: Gunicorn, task_id: str) -> None:
    path = f"/api/{USER}/tasks/{task_id}"
    timed_requests(server, path, 40)  # warm up
    before = p95(timed_requests(server, path, 200))
    stop = threading.Event()
    request = get_request(path)
    with open_sockets(server, 200, request[:1]) as slow:

        def trickle() -> None:  # a byte a second on each of the 200 sockets
            sent = 1
            while not stop.wait(1.0) and sent < len(request) - 1:
                for sock in slow:
                    sock.send(request[sent:sent + 1])
                sent += 1

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            time.sleep(1.5)
            during = p95(timed_requests(server, path, 200))
        finally:
            stop.set()
            trickler.join()
    assert during <= 2 * before + 0.02, (before, during)


def test_a_request_that_takes_too_long_to_arrive_is_answered_408(tmp_path: Path) -> None:
    server = Gunicorn(migrated_sqlite(tmp_path), GUNICORN_REQUEST_READ_TIMEOUT="1")
    try:
        with closing(connect(server)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHo")
            started = time.monotonic()
            response = read_response(sock)
            assert sock.recv(1) == b""  # then the connection is closed
        assert_problem(response, 408)
        assert response.headers["connection"] == "close"
        assert 0.9 < time.monotonic() - started < 5
    finally:
        server.stop()


def test_an_idle_connection_is_closed_after_keepalive_seconds(tmp_path: Path) -> None:
    server = Gunicorn(migrated_sqlite(tmp_path), GUNICORN_KEEPALIVE="1")
    try:
        with closing(connect(server)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).status == 200
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert 0.9 < time.monotonic() - started < 5
    finally:
        server.stop()


def test_stopping_answers_requests_in_flight_and_refuses_new_connections(tmp_path: Path) -> None:
    server = Gunicorn(migrated_sqlite(tmp_path), WEB_CONCURRENCY="1")
    try:
        request = post_request(f"/api/{USER}/tasks", b'{"title": "in flight"}')
        with closing(connect(server)) as sock:
            sock.sendall(request[:-5])  # the request is still arriving when the stop comes
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            # The listening socket is closed, so a new connection is refused (a proxy can try
            # another replica) rather than queued on a socket nobody will accept from.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2)
            sock.sendall(request[-5:])
            response = read_response(sock)
        assert response.status == 201 and response.headers["connection"] == "close"
        assert server.process.wait(10) == 0
    finally:
        server.stop()


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("expect_continue", [False, True])
def test_an_oversized_body_is_answered_413_and_the_client_reads_it(
    server: Gunicorn, task_id: str, expect_continue: bool
) -> None:
    body = b'{"title": "' + b"x" * 70_000 + b'"}'
    expect = b"Expect: 100-continue\r\n" if expect_continue else b""
    targets = [("POST", f"/api/{USER}/tasks"), ("PUT", f"/api/{USER}/tasks/{task_id}"),
               ("PATCH", f"/api/{USER}/tasks/{task_id}")]
    for _ in range(15):
        for method, path in targets:
            with closing(connect(server)) as sock:
                # A connection that has already served a request, as a browser's would be.
                sock.sendall(get_request(f"/api/{USER}/tasks/{task_id}"))
                pending = bytearray()
                assert read_response(sock, pending).status == 200
                request = post_request(path, body, method, expect)
                if expect_continue:  # the head, then wait for the answer: it comes at once
                    sock.sendall(request[: request.index(b"\r\n\r\n") + 4])
                else:
                    sock.sendall(request)
                response = read_response(sock, pending)
                problem = assert_problem(response, 413)
                assert "65536" in problem["detail"] or "too large" in problem["detail"].lower()
                assert response.headers["connection"] == "close"


def test_a_body_within_the_limit_after_100_continue_is_served(server: Gunicorn) -> None:
    request = post_request(f"/api/{USER}/tasks", b'{"title": "after continue"}',
                           extra=b"Expect: 100-continue\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    with closing(connect(server)) as sock:
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        response = read_response(sock)
    assert response.status == 201 and json.loads(response.body)["title"] == "after continue"


def test_a_chunked_body_is_read_whole_before_the_app_runs(server: Gunicorn) -> None:
    body = b'{"title": "chunked"}'
    head = (f"POST /api/{USER}/tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n").encode() + auth() + b"\r\n"
    with closing(connect(server)) as sock:
        sock.sendall(head)
        for piece in (body[:7], body[7:]):
            time.sleep(0.1)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        response = read_response(sock)
    assert response.status == 201 and json.loads(response.body)["title"] == "chunked"


def test_pipelined_requests_are_answered_in_order(server: Gunicorn, task_id: str) -> None:
    with closing(connect(server)) as sock:
        sock.sendall(get_request("/health") + get_request(f"/api/{USER}/tasks/{task_id}")
                     + get_request("/nope"))
        pending = bytearray()
        statuses = [read_response(sock, pending).status for _ in range(3)]
    assert statuses == [200, 200, 404]


# ---------------------------------------------------------------- errors before the app


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        # Chunked must be the final coding (RFC 9112 section 6.3).
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"10001\r\n" + b"x" * 65537 + b"\r\n0\r\n\r\n", 413),
    ],
    ids=["uri-too-long", "head-too-large", "request-line", "bare-lf", "version", "nul-header",
         "content-length", "coding-not-chunked", "chunked-too-large"],
)
def test_errors_before_the_app_are_problems(
    server: Gunicorn, request_bytes: bytes, status: int
) -> None:
    with closing(connect(server)) as sock:
        sock.sendall(request_bytes)
        response = read_response(sock)
    assert_problem(response, status)
    assert response.headers["connection"] == "close"


def test_a_listing_url_with_the_most_tag_filters_fits(server: Gunicorn) -> None:
    # 50 filters (the listing's maximum) of 50 characters that are 4 bytes each in UTF-8.
    tags = [f"{n:02d}" + "😀" * 48 for n in range(50)]
    query = urllib.parse.urlencode([("tags", tag) for tag in tags])
    assert len(query) > 29_000
    status, _, body = exchange(server, get_request(f"/api/{USER}/tasks?{query}"))
    assert status == 200, body
    assert json.loads(body)["total"] == 0
