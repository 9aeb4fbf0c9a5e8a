"""The API and its docs in a real browser: Debian's Chromium, driven by Selenium through
Debian's ChromeDriver (never a downloaded browser or driver).

- A frontend page served from `http://localhost:3000` (the contract's dev origin) calls the
  API on another port with `fetch`, a bearer token and `credentials: "include"`: create, list,
  toggle, conditional delete, list; errors must be readable too.
- The same page from an origin not in `ALLOWED_ORIGINS` is blocked by the browser: the
  preflight fails, `fetch` rejects, and nothing reaches the view.
- `/docs` (Swagger UI): authorise with a token, "Try it out" on the listing, see the 200 and
  the tasks. Every request the page makes stays on the API server (nothing from a CDN, and
  no other host even resolves), and the browser reports no Content-Security-Policy violation.

Screenshots go to `test-output/browser/` at the repository root (gitignored).
Without /usr/bin/chromium or /usr/bin/chromedriver (`make test` installs them where it may:
`scripts/install-system-deps.sh`) these tests skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import http.server
import json
import os
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import IN_CI, make_config, make_token, new_task, serve
from todo import create_app
from todo.extensions import db
from todo.pipeline.security_headers import DOCS_CSP

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FRONTEND_DIR = Path(__file__).resolve().parent / "browser"
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output" / "browser"
DEV_ORIGIN_PORT = 3000
WAIT_SECONDS = 20

# The flags this machine's notes prescribe for a headless Chromium run as root, plus a host
# resolver that knows no host but the local ones: a page that needed the internet would
# visibly break here instead of quietly working on a connected machine.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1800",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)

# Injected before any page script (CDP scripts are not subject to the page's CSP): every
# `securitypolicyviolation` event the page raises is kept for the test to read.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push({directive: event.violatedDirective, blocked: event.blockedURI,
                               source: event.sourceFile, line: event.lineNumber});
});
"""


# ---------------------------------------------------------------- the browser


def _browser_unavailable_reason() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not installed (Debian packages chromium and "
            "chromium-driver; scripts/install-system-deps.sh installs them when run as root)")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium with a fresh profile, its console and network logs recorded."""
    reason = _browser_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(reason)
    # Selenium Manager must never look for (or download) a driver or a browser.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT_SECONDS)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": RECORD_CSP_VIOLATIONS})
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, condition: Callable[[Any], Any], what: str,
             timeout: float = WAIT_SECONDS) -> Any:
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        path = save_screenshot(driver, f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
        pytest.fail(f"timed out after {timeout}s waiting for {what}; screenshot {path}; "
                    f"console: {console_messages(driver)}")


def save_screenshot(driver: webdriver.Chrome, name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    print(f"\nscreenshot: {path}")
    return path


_console_seen: weakref.WeakKeyDictionary[webdriver.Chrome, list[dict[str, Any]]] = (
    weakref.WeakKeyDictionary())


def console_messages(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Everything the console has shown since the browser started (ChromeDriver hands each
    entry over once, so they are kept per driver)."""
    kept = _console_seen.setdefault(driver, [])
    kept.extend(driver.get_log("browser"))
    return kept


def network_events(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The DevTools `Network.*` events since the last call."""
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"].startswith("Network."):
            events.append(message)
    return events


# ---------------------------------------------------------------- the servers


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def static_site(directory: Path, host: str, port: int) -> Iterator[int]:
    """Serve `directory` on host:port (0: any free port) in a thread; yields the port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def dev_origin_lock(timeout: float = 120) -> Iterator[None]:
    """Port 3000 is one per machine: pytest-xdist workers (and concurrent runs) take turns."""
    path = Path(tempfile.gettempdir()) / f"todo-api-browser-port-{DEV_ORIGIN_PORT}.lock"
    with path.open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {DEV_ORIGIN_PORT} stayed locked by another test run "
                                f"for {timeout}s ({path})")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def frontend_origin() -> Iterator[str]:
    """The frontend page on http://localhost:3000; if something else holds port 3000, on a
    free port instead (the API is configured with whichever origin is in use)."""
    with dev_origin_lock(), contextlib.ExitStack() as stack:
        try:
            if _answers_on_ipv6_loopback(DEV_ORIGIN_PORT):
                # Chromium may try [::1] first for "localhost" and would reach that program.
                raise OSError(errno.EADDRINUSE, f"[::1]:{DEV_ORIGIN_PORT} is in use")
            port = stack.enter_context(static_site(FRONTEND_DIR, "127.0.0.1", DEV_ORIGIN_PORT))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            port = stack.enter_context(static_site(FRONTEND_DIR, "127.0.0.1", 0))
            print(f"\nport {DEV_ORIGIN_PORT} is taken by another program ({error.strerror}); "
                  f"the frontend is on port {port} and ALLOWED_ORIGINS follows it")
        yield f"http://localhost:{port}"


def _answers_on_ipv6_loopback(port: int) -> bool:
    try:
        with socket.create_connection(("::1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def other_origin() -> Iterator[str]:
    """The same page from an origin the API does not allow."""
    with static_site(FRONTEND_DIR, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


def record_requests(app: Flask) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request the app answers, in order."""
    seen: list[tuple[str, str, int]] = []

    @app.after_request
    def record(response: Any) -> Any:
        seen.append((request.method, request.path, response.status_code))
        return response

    return seen


@pytest.fixture
def api_app(database_url: str, frontend_origin: str) -> Iterator[Flask]:
    app = create_app(make_config(database_url, ALLOWED_ORIGINS=frontend_origin))
    yield app
    with app.app_context():
        db.engine.dispose()


def page_url(origin: str, api: str, user: str, token: str) -> str:
    query = urllib.parse.urlencode({"api": api, "user": user, "token": token})
    return f"{origin}/index.html?{query}"


def run_frontend(driver: webdriver.Chrome, url: str) -> list[dict[str, Any]]:
    started = time.monotonic()
    driver.get(url)
    results = wait_for(driver, ec.presence_of_element_located(
        (By.CSS_SELECTOR, "#results[data-done='true']")), "the frontend page's results")
    steps: list[dict[str, Any]] = json.loads(results.text)
    print(f"\nfrontend page ran {len(steps)} steps in {time.monotonic() - started:.2f}s")
    return steps


# ---------------------------------------------------------------- the tests


def test_frontend_on_the_dev_origin_uses_the_api_with_credentials(
        browser: webdriver.Chrome, api_app: Flask, frontend_origin: str, backend: str) -> None:
    seen = record_requests(api_app)
    user = "browser-user"
    with serve(api_app) as api:
        steps = run_frontend(browser, page_url(frontend_origin, api, user, make_token(user)))

    save_screenshot(browser, f"frontend-dev-origin-{backend}")
    by_step = {step["step"]: step for step in steps}
    assert [step["step"] for step in steps] == [
        "create", "list", "toggle", "get", "delete_stale", "delete", "list_after",
        "invalid", "bad_token"], json.dumps(steps, indent=2)
    assert not [step for step in steps if "error" in step], json.dumps(steps, indent=2)

    created = by_step["create"]
    task = created["body"]
    assert created["status"] == 201
    assert task["title"] == "Buy milk from the browser"
    assert task["priority"] == "High"
    assert task["tags"] == ["errands"]
    assert task["completed"] is False
    assert task["user_id"] == user
    # Exposed headers are readable by the page's script.
    assert created["headers"]["location"].endswith(f"/api/{user}/tasks/{task['id']}")
    assert re.fullmatch(r'"[^"]+"', created["headers"]["etag"])
    assert created["headers"]["x-request-id"] == "browser-test-create-1"
    assert created["headers"]["content-type"].startswith("application/json")

    listed = by_step["list"]
    assert listed["status"] == 200
    assert listed["body"]["total"] == 1
    assert [item["id"] for item in listed["body"]["data"]] == [task["id"]]
    assert listed["headers"]["x-request-id"]  # generated by the server, still readable

    toggled = by_step["toggle"]
    assert toggled["status"] == 200
    assert toggled["body"]["id"] == task["id"]
    assert toggled["body"]["completed"] is True

    fetched = by_step["get"]
    assert fetched["status"] == 200
    assert fetched["body"]["completed"] is True
    assert fetched["headers"]["etag"] and fetched["headers"]["etag"] != created["headers"]["etag"]

    stale = by_step["delete_stale"]
    assert stale["status"] == 412
    assert stale["headers"]["content-type"].startswith("application/problem+json")
    assert stale["body"]["status"] == 412

    deleted = by_step["delete"]
    assert deleted["status"] == 204
    assert deleted["body"] is None

    after = by_step["list_after"]
    assert after["status"] == 200
    assert after["body"] == {"data": [], "total": 0, "limit": 50, "offset": 0}

    # Errors reach the page as readable problems, not as opaque CORS failures.
    invalid = by_step["invalid"]
    assert invalid["status"] == 400
    assert invalid["headers"]["content-type"].startswith("application/problem+json")
    assert "title" in invalid["body"]["errors"]["json"]
    bad_token = by_step["bad_token"]
    assert bad_token["status"] == 401
    assert bad_token["body"]["status"] == 401
    assert bad_token["headers"]["x-request-id"]

    # The browser preflighted (JSON body and Authorization are not "simple"), and the
    # preflights were answered without a token.
    preflights = [(path, status) for method, path, status in seen if method == "OPTIONS"]
    assert preflights and all(status == 204 for _, status in preflights), seen
    print(f"API saw: {seen}")
    assert not [entry for entry in console_messages(browser)
                if "CORS" in entry["message"] or "Content Security Policy" in entry["message"]]


def test_frontend_on_another_origin_is_blocked_by_the_browser(
        browser: webdriver.Chrome, api_app: Flask, other_origin: str, backend: str) -> None:
    seen = record_requests(api_app)
    user = "browser-user"
    with serve(api_app) as api:
        steps = run_frontend(browser, page_url(other_origin, api, user, make_token(user)))

    save_screenshot(browser, f"frontend-other-origin-{backend}")
    assert len(steps) == 1, json.dumps(steps, indent=2)
    [create] = steps
    assert create["step"] == "create"
    assert "status" not in create  # no response was handed to the script
    assert create["error"]["name"] == "TypeError", create
    assert create["error"]["message"] == "Failed to fetch", create

    # Only the preflight reached the app, and it carried no permission for this origin.
    assert [method for method, _, _ in seen] == ["OPTIONS"], seen
    blocked = [entry["message"] for entry in console_messages(browser)
               if "has been blocked by CORS policy" in entry["message"]]
    assert blocked and other_origin in blocked[0], console_messages(browser)
    print(f"\nconsole: {blocked[0]}")

    with api_app.test_client() as client:
        response = client.get(f"/api/{user}/tasks",
                              headers={"Authorization": f"Bearer {make_token(user)}"})
    assert response.status_code == 200
    assert response.get_json()["total"] == 0


def _click(driver: webdriver.Chrome, element: WebElement) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


# The page and the browser are what is under test here, not the database: one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_docs_try_it_out_works_offline_under_the_strict_csp(
        browser: webdriver.Chrome, database_url: str, backend: str) -> None:
    app = create_app(make_config(database_url))
    user = "docs-user"
    task = new_task(app.test_client(), user, title="Task shown in Swagger UI")
    token = make_token(user)

    started = time.monotonic()
    with serve(app) as api:
        network_events(browser)  # forget the browser's own start-up page
        browser.get(f"{api}/docs")
        authorize = wait_for(browser, ec.element_to_be_clickable(
            (By.CSS_SELECTOR, "button.btn.authorize")), "Swagger UI's Authorize button")
        _click(browser, authorize)
        modal = wait_for(browser, ec.visibility_of_element_located(
            (By.CSS_SELECTOR, ".modal-ux")), "the Authorize dialog")
        modal.find_element(By.CSS_SELECTOR, "input").send_keys(token)
        _click(browser, modal.find_element(By.CSS_SELECTOR, "button.btn.modal-btn.auth.authorize"))
        wait_for(browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, ".modal-ux button.btn.modal-btn.auth.button"), "Logout (authorised)")
        _click(browser, modal.find_element(By.CSS_SELECTOR, "button.btn-done"))
        wait_for(browser, ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")),
                 "the Authorize dialog to close")

        block = next(
            element for element in browser.find_elements(By.CSS_SELECTOR, ".opblock.opblock-get")
            if element.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
            .get_attribute("data-path") == "/api/{user_id}/tasks")
        _click(browser, block.find_element(By.CSS_SELECTOR, ".opblock-summary"))
        # "Try it out" (the page enables it by default, so the button may already say Cancel).
        try_out = wait_for(browser, lambda d: block.find_element(
            By.CSS_SELECTOR, "button.try-out__btn"), "the Try it out button")
        print(f"\nthe operation's button reads {try_out.text.strip()!r}")
        if try_out.text.strip() == "Try it out":
            _click(browser, try_out)
        user_input = wait_for(browser, lambda d: block.find_element(
            By.CSS_SELECTOR, "tr[data-param-name='user_id'] input"), "the user_id field")
        user_input.clear()
        user_input.send_keys(user)
        _click(browser, block.find_element(By.CSS_SELECTOR, "button.btn.execute"))
        status = wait_for(browser, lambda d: block.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"),
            "the live response")
        response_body = block.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});",
                               block.find_element(By.CSS_SELECTOR, ".responses-inner h4"))
        shot = save_screenshot(browser, f"docs-try-it-out-{backend}")
        elapsed = time.monotonic() - started
        events = network_events(browser)
        console = list(console_messages(browser))
        violations = browser.execute_script("return window.__cspViolations;")
        curl = block.find_element(By.CSS_SELECTOR, ".curl-command").text

    print(f"docs: authorised and executed in {elapsed:.2f}s")
    assert status.text.strip() == "200", status.text
    body = json.loads(response_body.text)
    assert body["total"] == 1
    assert [item["id"] for item in body["data"]] == [task["id"]]
    assert body["data"][0]["title"] == "Task shown in Swagger UI"
    assert f"Authorization: Bearer {token}" in curl
    assert shot.stat().st_size > 10_000

    # Every request stayed on this server: no CDN, no validator, no fonts from elsewhere.
    urls = [event["params"]["request"]["url"] for event in events
            if event["method"] == "Network.requestWillBeSent"]
    print("requests:\n  " + "\n  ".join(url[:120] for url in urls))
    foreign = [url for url in urls if not url.startswith((f"{api}/", "data:"))]
    assert not foreign, foreign
    assert f"{api}/docs" in urls
    assert f"{api}/openapi.json" in urls
    assert [url for url in urls if url.startswith(f"{api}/api/{user}/tasks?")]
    failed = [event["params"] for event in events if event["method"] == "Network.loadingFailed"]
    assert not failed, failed

    # ... and the page ran under the strict CSP without tripping it.
    documents = [event["params"]["response"] for event in events
                 if event["method"] == "Network.responseReceived"
                 and event["params"]["response"]["url"] == f"{api}/docs"]
    headers = {name.lower(): value for name, value in documents[0]["headers"].items()}
    assert headers["content-security-policy"] == DOCS_CSP
    print(f"console: {[entry['message'][:200] for entry in console]}")
    assert violations == []
    assert not [entry for entry in console if "Content Security Policy" in entry["message"]
                or "Content-Security-Policy" in entry["message"]], console
    assert not [entry for entry in console if entry["level"] == "SEVERE"], console

    # The two detectors are live: an inline script, which the policy forbids, trips both.
    browser.execute_script("const s = document.createElement('script');"
                           "s.textContent = 'window.__inlineRan = true;';"
                           "document.body.appendChild(s);")
    tripped = wait_for(browser, lambda d: d.execute_script("return window.__cspViolations;"),
                       "the control CSP violation")
    assert [violation["directive"] for violation in tripped] == ["script-src-elem"], tripped
    assert browser.execute_script("return window.__inlineRan;") is None
    wait_for(browser, lambda d: [entry for entry in console_messages(d)[len(console):]
                                 if "Content Security Policy" in entry["message"]],
             "the control violation on the console")

