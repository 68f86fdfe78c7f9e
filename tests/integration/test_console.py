"""The console end to end in headless Chromium (Debian's, driven by Playwright) against a live
worker: sign in, find a webhook, send a test, disable and enable it, rotate its secret, see a
dead letter and replay it, sign out. Each page is screenshot into a temporary folder, or into
HOOKSTREAM_SCREENSHOTS_DIR: `make screenshots` refreshes README's pictures in docs/ that way,
so a test run leaves the tree as it found it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ..support.api import call
from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_RETRY_DELAYS": "0.5,0.5,0.5",
                                      "HOOKSTREAM_SAMPLE_INTERVAL": "1"}}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages' screenshots go."""
    wanted = os.environ.get("HOOKSTREAM_SCREENSHOTS_DIR")
    if not wanted:
        return Path(tmp_path_factory.mktemp("screenshots"))
    folder = Path(wanted).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def _key(dep: Deployment, workspace: str) -> str:
    out = subprocess.run([sys.executable, "-m", "streams", "apikeys", "create", "--workspace",
                          workspace], capture_output=True, text=True, timeout=60, env=dep.env,
                         check=True).stdout
    return out.split("key (shown once): ", 1)[1].split()[0]


def test_console_end_to_end(dep: Deployment, browser_page: Page, shots: Path) -> None:
    page, base = browser_page, f"http://127.0.0.1:{dep.workers[0].port}"
    key = _key(dep, "ws_console")
    admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
    healthy = call(dep.workers[0].port, "POST", "/v1/webhooks", admin, {
        "workspace_id": "ws_console", "url": dep.receiver.url("/ok"), "events": ["task.*"],
        "description": "CRM sync"}).body["id"]
    dep.receiver.status["/broken"] = 500
    broken = call(dep.workers[0].port, "POST", "/v1/webhooks", admin, {
        "workspace_id": "ws_console", "url": dep.receiver.url("/broken"),
        "events": ["project.*"]}).body["id"]
    other = call(dep.workers[0].port, "POST", "/v1/webhooks", admin, {
        "workspace_id": "ws_elsewhere", "url": dep.receiver.url("/other"),
        "events": ["*"]}).body["id"]
    dep.publish("task.created", "ws_console", {"id": "t1", "name": "Design homepage"})
    dep.publish("project.created", "ws_console", {"id": "p1"})
    wait_webhook_state(dep, broken, {"active": False}, timeout=60)  # dead-lettered, disabled

    # Sign in.
    page.goto(f"{base}/console")
    expect(page).to_have_url(f"{base}/console/login")
    page.screenshot(path=str(shots / "console-sign-in.png"))
    page.fill("input[name=api_key]", "hsk_wrong_key")
    page.click("button:has-text('Sign in')")
    expect(page.locator(".flash")).to_contain_text("not valid")
    page.fill("input[name=api_key]", key)
    page.click("button:has-text('Sign in')")
    expect(page.locator("h1")).to_have_text("Webhooks")
    cookie = next(c for c in page.context.cookies() if c["name"] == "hookstream_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The list shows this workspace's webhooks only, with their state.
    expect(page.locator(f"text={healthy}")).to_be_visible()
    expect(page.locator(f"text={broken}")).to_be_visible()
    assert page.locator(f"text={other}").count() == 0
    page.screenshot(path=str(shots / "console-webhooks.png"), full_page=True)
    page.select_option("select[name=state]", "disabled")
    page.click("button:has-text('Filter')")
    assert page.locator(f"text={healthy}").count() == 0
    expect(page.locator(f"text={broken}")).to_be_visible()

    # One webhook: test, disable, enable.
    page.goto(f"{base}/console")
    page.click(f"text={healthy}")
    expect(page.locator("h1")).to_have_text(f"Webhook {healthy}")
    assert "whsec_" not in page.content()
    page.click("button:has-text('Send test')")
    expect(page.locator("#flash")).to_contain_text("Test success: 200")
    page.select_option("select[name=event]", "project.archived")  # any type, subscribed or not
    page.click("button:has-text('Send test')")
    expect(page.locator("#flash")).to_contain_text("Test success: 200")
    sent = [r.headers["x-webhook-event"] for r in dep.receiver.at("/ok")]
    assert sent.count("project.archived") == 1  # (the published task.created may come first)
    assert sent.index("webhook.test") < sent.index("project.archived")
    page.click("button:has-text('Disable')")
    expect(page.locator("#flash")).to_contain_text("Webhook disabled")
    page.click("button:has-text('Enable')")
    expect(page.locator("#flash")).to_contain_text("Webhook enabled")
    expect(page.locator("table").last).to_contain_text("webhook.test")
    page.screenshot(path=str(shots / "console-webhook.png"), full_page=True)

    # Rotate the secret: shown once in the page, never in the address bar (history).
    page.click("button:has-text('Rotate secret')")
    expect(page.locator("h1")).to_have_text("Secret rotated")
    rotated = page.locator("#secret").inner_text()
    assert rotated.startswith("whsec_") and rotated not in unquote(page.url)

    # Dead letters: see it, fix the endpoint, enable, replay.
    page.goto(f"{base}/console/dead-letters")
    expect(page.locator("table")).to_contain_text("attempts_exhausted")
    page.screenshot(path=str(shots / "console-dead-letters.png"), full_page=True)
    dep.receiver.status["/broken"] = 200
    page.click(f"text={broken}")
    page.click("button:has-text('Enable')")
    page.click("button:has-text('Replay dead letters')")
    expect(page.locator("#flash")).to_contain_text("Replayed 1 dead letter(s)")
    dep.receiver.wait_for(lambda _: len(dep.receiver.at("/broken")) >= 5, what="replayed")
    assert json.loads(dep.receiver.at("/broken")[-1].body)["data"] == {"id": "p1"}

    # Create, as the dashboard does: the secret is shown once.
    page.goto(f"{base}/console/webhooks/new")
    page.fill("input[name=url]", dep.receiver.url("/created"))
    page.check("input[value='task.created']")
    page.check("input[value='task.updated']")
    page.screenshot(path=str(shots / "console-create.png"), full_page=True)
    page.click("button:has-text('Create webhook')")
    expect(page.locator("#secret")).to_contain_text("whsec_")

    # A forged form (no CSRF token) is refused.
    response = page.request.post(f"{base}/console/webhooks/{healthy}/disable", form={})
    assert response.status == 403

    # The event catalog: every type the API lists, with its description.
    page.click("a:has-text('Event types')")
    expect(page.locator("h1")).to_have_text("Event types")
    for entry in call(dep.workers[0].port, "GET", "/v1/event-types", key).body["data"]:
        expect(page.locator("table")).to_contain_text(entry["type"])
        expect(page.locator("table")).to_contain_text(entry["description"])
    page.screenshot(path=str(shots / "console-event-types.png"), full_page=True)

    def charts_drawn() -> bool:
        page.goto(f"{base}/console/health")
        return page.locator("svg").count() == 2

    wait_until(charts_drawn, timeout=30, what="throughput charts", interval=0.5)
    expect(page.locator("h1")).to_have_text("Pipeline health")
    page.screenshot(path=str(shots / "console-health.png"), full_page=True)

    # Sign out: the browser forgets the cookie and the console asks for a key again.
    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(f"{base}/console/login")
    assert not [c for c in page.context.cookies() if c["name"] == "hookstream_session"]
    page.goto(f"{base}/console/health")
    expect(page).to_have_url(f"{base}/console/login")
