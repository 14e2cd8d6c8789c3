"""The fleet dashboard of `make run`, used as a person would: a real local
registry (its own process, embedded servers), agents registered through
its HTTP API, the page driven in headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs) with Selenium.

One Chromium session and one server for the whole module; every wait is
bounded. The screenshot goes to the test's temporary folder, and to
docs/fleet-dashboard.png when UPDATE_SCREENSHOTS=1:

    UPDATE_SCREENSHOTS=1 make test PYTEST_ARGS=tests/test_dashboard.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from test_local_run import Run, clean_env, free_port, state_folder

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 15  # seconds, at most, for anything the page should show

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="headless Chromium is not installed here (Debian: apt-get install chromium chromium-driver; .ci/run does)",
    ),
]

# A small fleet: what the screenshot shows.
AGENTS = [
    ("research-agent", "researcher", [("search", ["web", "nlp"]), ("cite", ["docs"])]),
    ("summarizer", "writer", [("summarize", ["nlp", "docs"])]),
    ("billing-bot", "finance", [("invoice", ["finance"])]),
    ("code-reviewer", "engineer", [("review", ["code"]), ("lint", ["code"])]),
    ("support-triage", "support", [("classify", ["tickets"])]),
    ("scheduler", "ops", [("plan", ["calendar"])]),
]
# An agent controls its card: the page must show this as text, never run it.
HOSTILE_NAME = '<img src=x onerror="window.__xss = 1"><b>bold</b>'


@pytest.fixture(scope="module")
def live():
    """A local registry of its own; a long liveness TTL so nobody goes
    offline while the test runs, unless it deregisters."""
    with state_folder() as path:
        env = clean_env(LIVENESS_TTL_SECONDS="600")
        run = Run(path / "state", free_port(), "--fresh", "--sweep-interval", "5", use_make=False, env=env)
        try:
            yield run.ready()
        finally:
            run.force_stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags that work on this machine as root with no network beyond
    # loopback (docs of the machine): no sandbox, no background traffic.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={Path(state_dir := __import__('tempfile').mkdtemp(prefix='chromium-'))}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(state_dir, ignore_errors=True)


def post(live, path: str, body: dict, token: str | None = None) -> dict:
    """POST through the runner (Run.post); anything but 200 fails the test."""
    status, answer = live.post(path, body, token)
    assert status == 200, (path, answer)
    return answer


def until(browser, what: str, condition):
    """Wait (bounded) until ``condition(browser)`` is truthy; its value."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"the dashboard did not show {what} within {WAIT} s") from None


def rows(browser) -> dict[str, str]:
    """id -> status of the rows on screen."""
    from selenium.webdriver.common.by import By

    return {tr.get_attribute("data-id"): tr.get_attribute("data-status") for tr in browser.find_elements(By.CSS_SELECTOR, "#workspaces tbody tr")}


def text(browser, css: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css).text


def test_the_fleet_live_in_a_browser(live, browser, tmp_path):
    from selenium.webdriver.common.by import By

    fleet: dict[str, tuple[str, str]] = {}
    for n, (name, role, skills) in enumerate(AGENTS):
        ws = str(uuid.uuid4())
        card = {"name": name, "version": f"1.{n}.0", "skills": [{"id": s, "tags": t} for s, t in skills]}
        answer = post(live, "/registry/register", {"id": ws, "url": f"http://localhost:{8100 + n}", "agent_card": card})
        fleet[name] = (ws, answer["auth_token"])
        post(live, "/registry/heartbeat", {"workspace_id": ws, "active_tasks": 1, "current_task": f"{name}: batch 42", "uptime_seconds": 60}, answer["auth_token"])
    post(live, "/registry/deregister", {"workspace_id": fleet["scheduler"][0]}, fleet["scheduler"][1])

    # 1. Listed, with their statuses and the summary's counts.
    browser.get(live.base + "/")
    expected = {ws: "online" for ws, _ in fleet.values()} | {fleet["scheduler"][0]: "offline"}
    until(browser, "every registered workspace", lambda b: rows(b) == expected)
    assert text(browser, '#status-counts [data-status="online"] .n') == "5"
    assert text(browser, '#status-counts [data-status="offline"] .n') == "1"
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{fleet["billing-bot"][0]}"]')
    assert "billing-bot" in row.text and "invoice" in row.text and "billing-bot: batch 42" in row.text

    # 2. One turns degraded: the page follows the change feed, no reload.
    browser.execute_script("window.__same_page = true")
    ws, token = fleet["billing-bot"]
    post(live, "/registry/heartbeat", {"workspace_id": ws, "runtime_state": "wedged", "sample_error": "SDK init timeout, restart the workspace"}, token)
    until(browser, "billing-bot degraded", lambda b: rows(b).get(ws) == "degraded")
    until(browser, "the degraded count", lambda b: text(b, '#status-counts [data-status="degraded"] .n') == "1")
    until(browser, "the event in the live feed", lambda b: b.find_elements(By.CSS_SELECTOR, '#feed-list li[data-type="WORKSPACE_DEGRADED"]'))
    assert browser.execute_script("return window.__same_page === true"), "the page reloaded"
    assert "SDK init timeout" in text(browser, f'tr[data-id="{ws}"]')

    # 3. Its detail: the record, Redis, the event history and the card.
    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{ws}"]').click()
    until(browser, "the detail panel", lambda b: b.find_element(By.ID, "detail").is_displayed() and text(b, "#detail-name") == "billing-bot")
    assert text(browser, "#detail-status") == "degraded"
    assert text(browser, '#detail-record [data-field="last error"]') == "SDK init timeout, restart the workspace"
    assert "online" in text(browser, '#detail-redis [data-field="liveness key"]')
    history = [tr.get_attribute("data-type") for tr in browser.find_elements(By.CSS_SELECTOR, "#detail-events tr.event")]
    assert history == ["WORKSPACE_DEGRADED", "WORKSPACE_ONLINE"]
    assert json.loads(text(browser, "#detail-card"))["skills"][0]["id"] == "invoice"

    screenshot = tmp_path / "fleet-dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(screenshot, REPO / "docs" / "fleet-dashboard.png")

    # 4. A newcomer appears by itself; its card is text on the page, never
    # markup or script (an agent controls its card).
    hostile = str(uuid.uuid4())
    post(live, "/registry/register", {"id": hostile, "url": "http://localhost:8200", "agent_card": {"name": HOSTILE_NAME}})
    expected[hostile] = "online"
    until(browser, "the newcomer", lambda b: rows(b).get(hostile) == "online")
    assert text(browser, f'tr[data-id="{hostile}"] td.name') == HOSTILE_NAME
    assert browser.execute_script("return window.__xss === undefined && !document.querySelector('img')")
    assert browser.execute_script("return window.__same_page === true"), "the page reloaded"

    # 5. Search and the status filter narrow the list.
    browser.find_element(By.ID, "q").send_keys("summ")
    until(browser, "only the search's match", lambda b: list(rows(b)) == [fleet["summarizer"][0]])
    browser.find_element(By.ID, "q").clear()
    browser.find_element(By.ID, "q").send_keys(" ")  # an input event: back to everything
    until(browser, "the whole list again", lambda b: len(rows(b)) == len(expected))
    browser.find_element(By.CSS_SELECTOR, '#status-counts [data-status="degraded"]').click()
    until(browser, "only the degraded one", lambda b: rows(b) == {ws: "degraded"})

    # Nothing went wrong in the page itself.
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert "Traceback" not in live.output
    # The dashboard's polling stays off the console; the agents' requests do not.
    assert not re.search(r"  http   GET /admin/", live.output) and re.search(r"  http   POST /registry/heartbeat 200", live.output)
