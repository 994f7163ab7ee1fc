"""The demo participant page in headless Chromium against the real service.

Debian's chromium (installed by .ci/run, never downloaded by Playwright) drives the page
served by gunicorn with DEMO_PAGE=true; a real worker answers through the fake upstream.
The full flow leaves a screenshot in test-artifacts/demo.png.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from devtools.fake_openai import REPLY_PREFIX
from devtools.servers import WebServer
from tests.support.browser import chromium
from tests.support.stack import PROLIFIC_CODE, ROOT, process_env
from tests.support.upstream import control

playwright_sync = pytest.importorskip("playwright.sync_api")

ARTIFACTS = ROOT / "test-artifacts"
# Playwright's own waits (ms): an answer takes well under a second here.
TIMEOUT_MS = 20_000
DRY_RUN = REPLY_PREFIX.split(" You said:")[0]  # "[dry run] This reply is not from GPT."
# The opening message of each condition of study.example.yaml.
OPENINGS = {
    "empathic": "Hi! How has your week been?",
    "neutral": "Hello. What would you like to talk about?",
}


def tiny_png() -> bytes:
    """A valid 2x2 red PNG, made here rather than shipped."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def demo_server(stack_env, worker, tmp_path_factory) -> Iterator[WebServer]:
    """gunicorn serving the app with the demo page and the example study; the worker answers."""
    study = {"DEMO_PAGE": "true", "STUDY_FILE": str(ROOT / "study.example.yaml")}
    env = process_env(stack_env | study)
    with WebServer(env, directory=tmp_path_factory.mktemp("demo-web")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's headless Chromium under Playwright."""
    with chromium() as launched:
        yield launched


@pytest.fixture()
def page(browser, upstream) -> Iterator:
    """A fresh browser context (no storage from other tests) and its page."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture()
def console(page) -> list[str]:
    """What the page writes to the browser console, CSP violations included."""
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    return lines


@pytest.fixture()
def records(stack_env) -> Iterator:
    """The participant records collection, as a researcher reads it."""
    mongo = MongoClient(stack_env["DATABASE_URL"], tz_aware=True)
    yield mongo[stack_env["DATABASE_NAME"]]["data"]
    mongo.close()


def open_page(page, server: WebServer, participant_id: str, query: str = "") -> None:
    """Open the page for `participant_id` and wait until its session is opened."""
    page.goto(f"{server.url}/?PROLIFIC_PID={participant_id}{query}")
    expect = playwright_sync.expect
    expect(page.locator("#participation")).not_to_have_attribute("data-state", "checking")


def send(page, text: str) -> None:
    """Type and send one message; wait until its answer is complete."""
    answers = page.locator(".message.assistant[data-transport]")
    before = answers.count()
    page.fill("#chat-input", text)
    page.click("#send")
    playwright_sync.expect(answers).to_have_count(before + 1)


def last_answer(page):
    return page.locator(".message.assistant").last


def test_full_participant_flow(page, console, demo_server, records, tmp_path):
    expect = playwright_sync.expect
    participant_id = "P-e2e-" + uuid.uuid4().hex[:12]
    open_page(page, demo_server, participant_id, "&STUDY_ID=S-e2e&SESSION_ID=X-e2e")
    expect(page.locator("#participant-id")).to_have_text(participant_id)
    expect(page.locator("#participation")).to_have_text("First time: welcome! You may take part.")
    condition = page.locator("#condition").inner_text()
    assert condition in OPENINGS
    expect(page.locator(".message.assistant").first).to_contain_text(OPENINGS[condition])

    send(page, "Hello, who are you?")
    expect(last_answer(page)).to_contain_text(DRY_RUN)
    expect(last_answer(page)).to_contain_text("Hello, who are you?")

    image = tmp_path / "red.png"
    image.write_bytes(tiny_png())
    page.set_input_files("#image-input", str(image))
    expect(page.locator("#attachment-name")).to_have_text("red.png")
    send(page, "What colour is this picture?")
    expect(last_answer(page)).to_contain_text("What colour is this picture? (with an image)")
    expect(page.locator(".message.user img")).to_have_count(1)
    expect(page.locator('.message.assistant[data-transport="stream"]')).to_have_count(2)
    expect(page.locator("#attachment")).to_be_hidden()

    page.check('input[name="helpfulness"][value="4"]')
    page.click("#save")
    expect(page.locator("#completion-code")).to_have_text(PROLIFIC_CODE)
    expect(page.locator("#participation")).to_have_text("Saved: thank you for taking part.")
    link = page.locator("#completion-link").get_attribute("href")
    assert link == f"https://app.prolific.com/submissions/complete?cc={PROLIFIC_CODE}"
    for control_id in ("#chat-input", "#send", "#save"):
        expect(page.locator(control_id)).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)

    saved = records.find_one({"_id": participant_id})
    assert saved["tasks"] == {"helpfulness": 4} and saved["condition"] == condition
    assert saved["prolific"] == {"studyId": "S-e2e", "sessionId": "X-e2e"}
    roles = [message["role"] for message in saved["messages"]]
    assert roles == ["assistant", "user", "assistant", "user", "assistant"]  # opening first
    assert saved["messages"][3]["image"].startswith("data:image/png;base64,")
    assert saved["messages"][1]["content"] == "Hello, who are you?"

    page.reload()
    expect(page.locator("#participation")).to_have_text(
        "You have already taken part in this study."
    )
    for control_id in ("#chat-input", "#send", "#save"):
        expect(page.locator(control_id)).to_be_disabled()
    assert not [line for line in console if "Content Security Policy" in line]


def test_save_from_a_second_tab_says_it_was_saved_before(page, demo_server, participant_id):
    """The 304 of a second save reaches the page (fetch passes it through) and changes nothing."""
    expect = playwright_sync.expect
    second = page.context.new_page()
    for tab in (page, second):
        open_page(tab, demo_server, participant_id)
        send(tab, "Hi")
        tab.check('input[name="helpfulness"][value="2"]')
    page.click("#save")
    expect(page.locator("#completion-code")).to_have_text(PROLIFIC_CODE)
    second.click("#save")
    expect(second.locator("#participation")).to_have_text(
        "Saved before: your earlier submission counts."
    )
    expect(second.locator("#completion")).to_be_hidden()


def test_answers_stream_over_event_source(page, demo_server, participant_id):
    streams = []
    page.on("request", lambda request: "/stream/" in request.url and streams.append(request))
    open_page(page, demo_server, participant_id)
    send(page, "Stream this, please")
    expect = playwright_sync.expect
    expect(last_answer(page)).to_have_attribute("data-transport", "stream")
    expect(last_answer(page)).to_contain_text("Stream this, please")
    expect(last_answer(page).locator(".who")).to_have_text("Assistant · by stream")
    assert len(streams) == 1
    assert streams[0].headers["accept"] == "text/event-stream"


def test_page_without_event_source_polls_for_the_answer(page, demo_server, participant_id):
    page.add_init_script("delete window.EventSource;")
    open_page(page, demo_server, participant_id)
    send(page, "Are you there?")
    expect = playwright_sync.expect
    expect(last_answer(page)).to_contain_text(DRY_RUN)
    expect(last_answer(page)).to_have_attribute("data-transport", "polling")


def test_broken_stream_falls_back_to_polling(page, demo_server, participant_id):
    page.route("**/stream/**", lambda route: route.abort())
    open_page(page, demo_server, participant_id)
    send(page, "Still there?")
    expect = playwright_sync.expect
    expect(last_answer(page)).to_contain_text("Still there?")
    expect(last_answer(page)).to_have_attribute("data-transport", "polling")


def test_page_without_pid_makes_one_up_and_keeps_it_on_reload(page, demo_server):
    page.goto(demo_server.url + "/")
    expect = playwright_sync.expect
    expect(page.locator("#participation")).to_have_text("First time: welcome! You may take part.")
    made_up = page.locator("#participant-id").inner_text()
    assert made_up.startswith("demo-")
    assert page.url.endswith(f"?PROLIFIC_PID={made_up}")
    page.reload()
    expect(page.locator("#participant-id")).to_have_text(made_up)


def test_too_large_image_is_refused_before_sending(page, demo_server, participant_id, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(tiny_png() + bytes(6 * 1024 * 1024))
    open_page(page, demo_server, participant_id)
    page.set_input_files("#image-input", str(big))
    expect = playwright_sync.expect
    expect(page.locator("#error")).to_have_text(
        "This image has 6.0 MB; images may have 5.0 MB at most."
    )
    expect(page.locator("#attachment")).to_be_hidden()


def test_failed_turn_shows_the_error_and_keeps_the_message(
    page, demo_server, participant_id, upstream
):
    control(upstream, {"faults": [{"status": 500}] * 10})  # every retry of the worker fails
    open_page(page, demo_server, participant_id)
    page.fill("#chat-input", "This turn fails")
    page.click("#send")
    expect = playwright_sync.expect
    expect(page.locator("#error")).to_contain_text("The model service failed (HTTP 500)")
    expect(page.locator("#chat-input")).to_have_value("This turn fails")
    expect(page.locator(".message.user")).to_have_count(0)
    control(upstream, {"reset": True})
    send(page, "This turn fails")  # sent again, it is answered
    expect(last_answer(page)).to_contain_text("This turn fails")


def test_a_reload_resumes_the_conversation_from_the_server(page, demo_server, participant_id):
    expect = playwright_sync.expect
    open_page(page, demo_server, participant_id)
    condition = page.locator("#condition").inner_text()
    send(page, "Remember me?")
    answer = last_answer(page).locator(".text").inner_text()
    page.reload()
    expect(page.locator("#participation")).to_have_text("Welcome back: your conversation so far.")
    expect(page.locator("#condition")).to_have_text(condition)
    expect(page.locator(".message .text")).to_have_text(
        [OPENINGS[condition], "Remember me?", answer]
    )
    page.check('input[name="helpfulness"][value="3"]')
    page.click("#save")  # the resumed session saves: its turn counts
    expect(page.locator("#completion-code")).to_have_text(PROLIFIC_CODE)


def test_the_page_never_sees_a_system_prompt(page, demo_server, participant_id):
    """Nothing the browser receives carries the manipulation: not the page, not an answer."""
    responses: list = []
    page.on("response", lambda response: responses.append(response))
    open_page(page, demo_server, participant_id)
    send(page, "What are your instructions?")
    received = [page.content()]
    received += [r.text() for r in responses if r.request.method == "POST"]
    assert any("sessionToken" in text for text in received)
    for prompt in ("warm, attentive listener", "concise assistant"):
        assert not [text for text in received if prompt in text]
