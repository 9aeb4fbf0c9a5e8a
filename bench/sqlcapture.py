"""What the service sends to PostgreSQL for one request: every query string that reaches the
server, exactly as it arrives.

The capture is made on the wire. A recording proxy (`bench.pgwire.RecordingProxy`, threads in
this process, 127.0.0.1 on an ephemeral port) sits in front of the server of the app's
`DATABASE_URL`. The app is built in-process by `create_app()` from the same production
environment the bench gives gunicorn, with one change: its `DATABASE_URL` points at the proxy
(same user, password, database and parameters; `sslmode=disable` and `gssencmode=disable` so
the session stays plain text the proxy can read). Every Query message a connection sends is
recorded before it is forwarded: the statements SQLAlchemy and psycopg2 send from Python,
the `BEGIN`/`COMMIT`/`ROLLBACK` psycopg2 sends from C, `SET default_transaction_isolation`
from `set_isolation_level()`, SQLAlchemy's pool pre-ping, and anything libpq sends itself.
A query string holding several statements (`SET LOCAL ...; SELECT ...`) is one entry, as it
is one round trip and one line of the server's `log_statement` log. Any message of the
extended query protocol makes the capture fail: psycopg2 never uses it, and its SQL could not
be replayed as text.

The request is made twice and only the second is kept: the first opens the pooled
connection (and runs SQLAlchemy's dialect initialisation), as happens once per connection in
gunicorn too. The pooled connection stays open through the proxy for the second request.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import URL, make_url

from bench.pgwire import QueryRecorder, RecordingProxy, Upstream

DEFAULT_PORT = 5432
# The proxy's address replaces these; the rest of the URL's parameters are kept.
ADDRESS_PARAMETERS = ("host", "hostaddr", "port")
# channel_binding=require needs TLS, which the proxy cannot read through.
PLAIN_TEXT_PARAMETERS = {"sslmode": "disable", "gssencmode": "disable"}
DROPPED_PARAMETERS = (*ADDRESS_PARAMETERS, "channel_binding")


class CaptureError(RuntimeError):
    """The statements of the request could not be recorded completely."""


def _query_value(url: URL, name: str) -> str | None:
    value = url.query.get(name)
    return value[-1] if isinstance(value, tuple) else value


def upstream_of(database_url: str) -> Upstream:
    """Where the URL's server listens: (host, port), or the socket path for a host that is a
    socket directory. A URL without a host, or with several, is refused."""
    url = make_url(database_url)
    host = url.host or _query_value(url, "host")
    if not host or "," in host:
        raise CaptureError(
            f"DATABASE_URL must name exactly one host for the capture proxy, got {host!r}"
        )
    port = url.port or int(_query_value(url, "port") or DEFAULT_PORT)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def proxied_url(database_url: str, proxy_address: tuple[str, int]) -> str:
    """`database_url` with the proxy as its server, in plain text."""
    host, port = proxy_address
    url = (
        make_url(database_url)
        .set(host=host, port=port)
        .difference_update_query(DROPPED_PARAMETERS)
        .update_query_dict(PLAIN_TEXT_PARAMETERS)
    )
    return url.render_as_string(hide_password=False)


def request_statements(
    app_environ: Mapping[str, str], path: str, headers: Mapping[str, str]
) -> list[str]:
    """The query strings one `GET path` sends to the database, in order."""
    database_url = app_environ.get("DATABASE_URL", "")
    if not database_url:
        raise CaptureError("the app environment has no DATABASE_URL")
    recorder = QueryRecorder()
    with RecordingProxy(upstream_of(database_url), recorder) as proxy:
        environ = {
            **app_environ,
            "DATABASE_URL": proxied_url(database_url, proxy.address),
            "LOG_LEVEL": "WARNING",
        }
        _get_twice(environ, path, headers, recorder)
    problems = recorder.problems()
    if problems:
        raise CaptureError(f"GET {path}: " + "; ".join(problems))
    return recorder.queries()


def _get_twice(
    environ: Mapping[str, str], path: str, headers: Mapping[str, str], recorder: QueryRecorder
) -> None:
    """Request `path` twice, keeping only the second request's queries in `recorder`."""
    from config import load_config
    from todo import create_app
    from todo.extensions import db

    app = create_app(load_config("production", environ=environ))
    client = app.test_client()
    try:
        client.get(path, headers=dict(headers))
        recorder.clear_queries()
        response = client.get(path, headers=dict(headers))
        if response.status_code != 200:
            problems = "".join(f"; {problem}" for problem in recorder.problems())
            raise CaptureError(
                f"GET {path} answered {response.status_code}:"
                f" {response.get_data(as_text=True)}{problems}"
            )
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()  # closes the pooled connections, so the proxy has none open
