"""Pooled connections are checked at checkout without a round trip (todo/data/connection_check.py):
one the server has closed is replaced before a request can fail on it."""

from __future__ import annotations

import socket
import time

import psycopg2
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task
from todo.data.connection_check import server_has_spoken
from todo.extensions import db

USER = "checked-user"


def test_an_idle_socket_is_quiet_and_one_the_peer_wrote_to_or_closed_is_not() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not server_has_spoken(ours)
        theirs.sendall(b"E")  # what PostgreSQL sends first when it ends a session
        assert server_has_spoken(ours)
    closed_ours, closed_theirs = socket.socketpair()
    with closed_ours:
        closed_theirs.close()
        assert server_has_spoken(closed_ours)


def pooled_backend_pid(app: Flask) -> int:
    with app.app_context(), db.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(direct_url: str, pid: int) -> None:
    """End that server process from outside, as a restart or an idle timeout would."""
    admin = psycopg2.connect(direct_url.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                row = cursor.fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.02)
    finally:
        admin.close()
    raise AssertionError(f"backend {pid} still running")


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_pooled_connection_the_server_ended_is_replaced_not_used(
    app: Flask, client: FlaskClient, database_url: str, method: str
) -> None:
    headers = bearer(USER)
    task = new_task(client, USER, title="before")
    # The test client serves one request at a time, so the pool holds a single connection.
    old_pid = pooled_backend_pid(app)
    assert pooled_backend_pid(app) == old_pid
    terminate(database_url, old_pid)

    if method == "GET":
        response = client.get(f"/api/{USER}/tasks/{task['id']}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
    else:
        response = client.post(f"/api/{USER}/tasks", headers=headers, json={"title": "after"})
        assert response.status_code == 201, response.get_data(as_text=True)
    assert pooled_backend_pid(app) != old_pid
