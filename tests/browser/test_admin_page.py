"""The live study page and rq-dashboard in headless Chromium against a real stack.

Debian's chromium (installed by .ci/run, never downloaded by Playwright) opens /admin
served by gunicorn after real saves and chats through a real worker, logs in with the
token, reads the figures and the chart, then follows the link to rq-dashboard on the same
session cookie. The page is kept as test-artifacts/admin.png.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from devtools.servers import WebServer
from tests.support.browser import chromium
from tests.support.polling import wait_for
from tests.support.stack import ROOT, process_env
from tests.support.upstream import control

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(180)

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 20_000
TOKEN = "admin-token-for-the-browser-0123456789"
BUDGET = 100_000
# Markup a participant could type; rq-dashboard shows the start of it unescaped.
PAYLOAD = "<img src=x onerror=document.title=1337>"


def call(url: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read() or b"{}")


def chat(url: str, content: str) -> str:
    """One chat turn through the web, polled until the worker has answered it."""
    status, accepted = call(url, "/chat", {"messages": [{"role": "user", "content": content}]})
    assert status == 202

    def done():
        try:
            status, body = call(url, "/check_response", {"jobId": accepted["jobId"]})
        except urllib.error.HTTPError as error:
            return error.code
        return status if body != {"processing": True} else None

    wait_for(done, timeout=30)
    return accepted["jobId"]


@pytest.fixture()
def study(own_stack_env, start_worker, upstream, tmp_path) -> Iterator[tuple[WebServer, str]]:
    """gunicorn with an admin token after 2 saves, 4 answered chats and 1 failed one."""
    start_worker(own_stack_env)
    env = own_stack_env | {"ADMIN_TOKEN": TOKEN, "STUDY_TOKEN_BUDGET": str(BUDGET)}
    with WebServer(process_env(env), directory=tmp_path / "web") as web:
        for participant in ("P-admin-1", "P-admin-2"):
            record = {"participantId": participant, "messages": [], "tasks": {}, "condition": 1}
            assert call(web.url, "/save", record)[0] == 201
        marked = chat(web.url, PAYLOAD)
        for turn in range(3):
            chat(web.url, f"turn {turn}")
        control(upstream, {"faults": [{"status": 400}]})
        chat(web.url, "refused upstream")
        yield web, marked


@pytest.fixture()
def browser() -> Iterator:
    """Debian's headless Chromium under Playwright."""
    with chromium() as launched:
        yield launched


@pytest.fixture()
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.console_lines = []
    page.on("console", lambda message: page.console_lines.append(message.text))
    yield page
    context.close()


def chart_pixels(page, color: tuple[int, int, int]) -> int:
    """How many pixels of the chart canvas are painted in `color`."""
    return page.evaluate(
        """([r, g, b]) => {
            const canvas = document.getElementById("chart");
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
                const same = data[i] === r && data[i + 1] === g && data[i + 2] === b;
                if (same && data[i + 3] === 255) count++;
            }
            return count;
        }""",
        list(color),
    )


def test_the_admin_page_shows_the_study_live_and_opens_rq_dashboard(study, page):
    expect = playwright_sync.expect
    web, marked_job = study
    page.goto(f"{web.url}/admin")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()

    page.fill("#token", "not-the-token-not-the-token")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_have_text("This is not the admin token.")

    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#participants-saved")).to_have_text("2")
    expect(page.locator("#chats-last-hour")).to_have_text("5")
    expect(page.locator("#error-rate")).to_have_text("20.0 %")
    expect(page.locator("#errors-last-hour")).to_have_text("1 failed")
    expect(page.locator("#queue-depth")).to_have_text("0")
    expect(page.locator("#workers-alive")).to_have_text("1")
    expect(page.locator("#tokens-budget")).to_contain_text(f"of {BUDGET:,}:")
    expect(page.locator("#chart")).to_have_attribute("data-drawn-minutes", "60")
    assert chart_pixels(page, (0x2F, 0x5F, 0xD0)) > 50  # chats, in blue
    assert chart_pixels(page, (0xB3, 0x26, 0x1E)) > 5  # the error, in red
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

    # The token itself is kept nowhere a script can read it; the session is HttpOnly.
    assert TOKEN not in page.evaluate("JSON.stringify(sessionStorage) + document.cookie")

    page.click("#rq-link")
    expect(page.locator("#queues")).to_contain_text("chat")
    page.goto(f"{web.url}/admin/rq/0/view/job/{marked_job}")
    expect(page.locator("#job-data")).to_contain_text("finished")

    # The participant's markup reached the page, and its image failed to load: the
    # handler either ran (the title changes) or the page's policy refused it.
    def handled():
        refused = [line for line in page.console_lines if "Content Security Policy" in line]
        title = page.title()  # a Playwright call, which also delivers console events
        return (title, refused) if title == "1337" or refused else None

    title, refused = wait_for(handled, timeout=10)
    assert title != "1337"
    assert all("inline event handler" in line for line in refused), refused


def test_logging_out_asks_for_the_token_again(study, page):
    expect = playwright_sync.expect
    web, _ = study
    page.goto(f"{web.url}/admin")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#dashboard")).to_be_visible()
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    page.goto(f"{web.url}/admin/rq/")
    assert "This admin page needs the header" in page.content()
