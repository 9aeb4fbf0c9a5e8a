"""The service's memory while it streams an export, measured in a process of its own (run by
tests/test_export.py; by hand on a database that has the users' tasks):

    .venv/bin/python -m tests.export_rss DATABASE_URL USER_ID OUTPUT_FILE WARM_UP_USER_ID

The app serves on a real threaded HTTP server in this process, and a client here downloads
the export in 64 KiB reads, writing it to OUTPUT_FILE (so the document is never held here
either). First a warm-up export of WARM_UP_USER_ID (a few tasks) loads what every request
needs once (imports, compiled statements, pooled connections); then the peak RSS is reset
(`/proc/self/clear_refs`) and the export of USER_ID is measured: its peak RSS (`VmHWM`)
minus the RSS before it is what streaming the document cost. Prints one JSON object.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit

from tests.conftest import bearer, make_config, serve
from todo import create_app
from todo.extensions import db


def memory_kib(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def download(base: str, user_id: str, output: str) -> dict[str, Any]:
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port)
    connection.request("GET", f"/api/{quote(user_id, safe='')}/export", headers=bearer(user_id))
    response = connection.getresponse()
    size = 0
    with open(output, "wb") as out:
        while chunk := response.read(64 * 1024):
            out.write(chunk)
            size += len(chunk)
    connection.close()
    return {
        "status": response.status,
        "bytes": size,
        "transfer_encoding": response.getheader("Transfer-Encoding"),
        "content_length": response.getheader("Content-Length"),
    }


def main(database_url: str, user_id: str, output: str, warm_up_user_id: str) -> dict[str, Any]:
    app = create_app(make_config(database_url, LOG_LEVEL="WARNING"))
    with serve(app) as base:
        started_kib = memory_kib("VmRSS")
        for _ in range(2):
            warm_up = download(base, warm_up_user_id, os.devnull)
            assert warm_up["status"] == 200, warm_up
        gc.collect()
        before_kib = memory_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
        began = time.perf_counter()
        result = download(base, user_id, output)
        seconds = time.perf_counter() - began
        peak_kib = memory_kib("VmHWM")
    with app.app_context():
        db.engine.dispose()
    return {
        **result,
        "seconds": round(seconds, 3),
        "rss_at_start_kib": started_kib,
        "rss_before_kib": before_kib,
        "peak_kib": peak_kib,
        "growth_kib": peak_kib - before_kib,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
