"""The py-spy profile summary the performance notes quote (bench/pyspy_summary.py)."""

from __future__ import annotations

from bench.pyspy_summary import by_layer, inclusive, layer, parse, report

RAW = """\
Thread.run (threading.py:982);ThreadWorker.handle (gunicorn/workers/gthread.py:553);Flask.wsgi_app (flask/app.py:1511);get_task (todo/tasks/queries.py:88);Connection.execute (sqlalchemy/engine/base.py:1419) 6
Thread.run (threading.py:982);ThreadWorker.handle (gunicorn/workers/gthread.py:553);Flask.wsgi_app (flask/app.py:1511);log_request (todo/pipeline/access_log.py:70);Logger.info (logging/__init__.py:1489) 3
Arbiter.spawn_worker (gunicorn/arbiter.py:600);ThreadWorker.run (gunicorn/workers/gthread.py:300);EpollSelector.select (selectors.py:468) 1

"""


def test_layers_come_from_the_running_frame_and_roots_are_left_out() -> None:
    stacks = parse(RAW.splitlines())
    assert [stack.samples for stack in stacks] == [6, 3, 1]
    assert by_layer(stacks) == {"sqlalchemy": 6, "logging": 3, "selectors": 1}
    shares = inclusive(stacks)
    assert shares["Flask.wsgi_app (flask/app.py)"] == 9
    assert shares["get_task (todo/tasks/queries.py)"] == 6
    assert shares["ThreadWorker.run (gunicorn/workers/gthread.py)"] == 1
    assert not any(name.startswith(("Thread.run", "Arbiter.spawn_worker")) for name in shares)


def test_a_package_is_matched_as_a_path_part_not_a_substring() -> None:
    assert layer("Flask.__call__ (flask/app.py:1536)") == "flask"
    assert layer("Api.x (flask_smorest/api.py:10)") == "flask_smorest"
    assert layer("thing (mytodolist/x.py:1)") == "mytodolist/x.py"


def test_report_prints_percentages_of_all_samples() -> None:
    text = report(parse(RAW.splitlines()), top=3)
    assert text.startswith("10 samples holding the GIL")
    assert "60.0 %  sqlalchemy" in text and "90.0 %  Flask.wsgi_app (flask/app.py)" in text
