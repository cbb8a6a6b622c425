"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which `make browser` installs) driven by
Playwright's Python API. Log in, create a two-topic mock batch (one Chinese), watch progress arrive without a
reload, edit a prompt, approve, watch clips appear, play the final, retry the clip the mock filtered.

A failing test saves a screenshot to test-artifacts/ (and the passing one saves what it saw there too)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.web_helpers import ADMIN, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 180_000  # generous: two busy cores render the mock clips and the final


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: `make browser` installs Debian's chromium package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `make setup` installs the test extras")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 412, "height": 915})  # phone width
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{'-FAILED' if failed else ''}.png"), full_page=True)
    context.close()


@pytest.fixture
def live(tmp_path, monkeypatch):
    monkeypatch.setenv("VEO3_MOCK_FILTER_WORD", "forbiddenword")
    monkeypatch.setenv("VEO3_MOCK_LATENCY", "0.5")  # each clip is seen "submitted" before it is done
    monkeypatch.setenv("POLLING_INTERVAL", "0.1")  # the default 15 s would make each clip wait 15 s for nothing
    with LiveServer(tmp_path / "out") as server:
        yield server


def test_dashboard_from_login_to_a_played_final_and_a_retried_clip(live, page):
    page.goto(live.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", ADMIN)
    page.click("#login")
    page.wait_for_selector("#new-batch")
    page.evaluate("window.__noReload = 'still here'")

    page.fill("#topics", "how tea is made\n面包是怎么做的")
    page.fill("#scenes", "2")
    page.click("#create")
    page.wait_for_selector("#productions .row >> nth=1")
    rows = page.locator("#productions .row")
    assert sorted(rows.locator("a").all_inner_texts()) == sorted(["how tea is made", "面包是怎么做的"])
    page.wait_for_function("document.querySelectorAll('#productions .row[data-status=awaiting_approval]').length == 2")
    assert page.evaluate("window.__noReload") == "still here"  # the list moved on by itself, from the event stream
    progress = page.eval_on_selector_all("#productions progress", "bars => bars.map(b => Number(b.value))")
    assert all(0.5 <= value < 1 for value in progress), progress
    page.screenshot(path=str(ARTIFACTS / "dashboard-list-awaiting-approval.png"), full_page=True)

    page.click("#productions a:text('how tea is made')")
    page.wait_for_selector("#approval:not([hidden])")
    assert "Estimate: $0.00 for 2 clip(s)" in page.inner_text("#estimate")
    page.evaluate("window.__noReload = 'production page'")
    prompt_two = page.locator('.prompt[data-index="2"]')
    prompt_two.locator("textarea").fill("A forbiddenword teapot on a table")
    prompt_two.locator("button").click()
    page.wait_for_selector('.prompt[data-index="2"] .saved:text("saved")')
    page.click("#approve")

    page.wait_for_selector('.clip[data-index="1"][data-status="done"] video')
    page.wait_for_selector('.clip[data-index="2"][data-status="filtered"]')
    assert "mock safety filter" in page.inner_text('.clip[data-index="2"] .error')
    page.wait_for_selector("#final-video")
    assert_plays(page, "#final-video")

    retry = page.locator('.clip[data-index="2"]')
    retry.locator(".retry-prompt").fill("A red teapot on a wooden table")
    retry.locator(".retry").click()
    page.wait_for_selector('.clip[data-index="2"][data-status="done"] video')
    page.wait_for_function("document.querySelector('#status').textContent == 'done'")
    assert_plays(page, "#final-video")
    events = page.inner_text("#events")
    assert "approved" in events and "(by admin)" in events and "retry" in events
    assert page.evaluate("window.__noReload") == "production page"


def assert_plays(page, selector: str) -> None:
    """The video element loads (readyState >= 2) and its currentTime advances while it plays."""
    video = f"document.querySelector('{selector}')"
    page.wait_for_function(f"{video} && {video}.readyState >= 2")
    page.evaluate(f"{video}.play()")
    start = page.evaluate(f"{video}.currentTime")
    page.wait_for_function(f"{video}.currentTime > {start} + 0.3")
