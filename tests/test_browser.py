"""The chat in a real browser: Debian's chromium through Playwright against `python app.py`.

Every test also checks that the page asked nothing of any host but 127.0.0.1 (fonts, analytics,
CDNs). Screenshots of each step go to artifacts/screenshots/.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
from urllib.parse import urlparse

import pytest
from browser_util import ROOT, copy_seed_corpus, free_port, running_app

pytestmark = pytest.mark.browser

SHOTS = ROOT / "artifacts" / "screenshots"
WAIT_MS = 60_000
LIGHTHOUSE = (
    "date 2025-03-02\n# The Gullwing lighthouse\n\n"
    "The Gullwing lighthouse on Marrow Point is kept by Ottilie Brandvold, who repainted its lamp room cobalt blue "
    "in the spring of 2025.\n\nVisitors may climb its 212 steps on Sundays.\n"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install -y chromium); browser tests must run in CI")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-app")
    corpus = copy_seed_corpus(tmp / "corpus")
    with running_app(corpus, tmp / "index", tmp / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),  # a fresh user-data dir (Playwright refuses --user-data-dir in args)
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def elsewhere():
    """A web server on another loopback address (127.0.0.2) that records every request it gets:
    the page must never reach it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.hits = hits
    server.base = f"http://127.0.0.2:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def page(browser_context, app_url):
    """A fresh page on the app; fails the test if anything was asked of a host other than 127.0.0.1,
    or if the Content Security Policy blocked anything the test did not expect (Gradio's own scripts,
    styles, fonts and requests must all pass it)."""
    outside: list[str] = []

    def record(request) -> None:
        url = urlparse(request.url)
        if url.scheme not in ("data", "blob", "about") and url.hostname != "127.0.0.1":
            outside.append(request.url)

    browser_context.on("request", record)
    page = browser_context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.csp_violations = []
    page.outside = outside
    page.on(
        "console",
        lambda m: page.csp_violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.response = page.goto(app_url)
    page.locator("#qa-question textarea").wait_for()
    page.get_by_text("Try asking").wait_for()
    page.locator(".qa-status").wait_for()  # filled by the page's load event
    yield page
    page.wait_for_timeout(500)  # late requests (fonts, images) of the last step
    page.close()
    browser_context.remove_listener("request", record)
    assert outside == [], f"requests to other hosts: {outside}"
    assert page.csp_violations == [], f"blocked by the Content Security Policy: {page.csp_violations}"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # let Gradio's pending-state fade finish
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def ask(page, question: str):
    """Ask in the chat and return the locator of the new assistant turn."""
    turns = page.locator(".qa-turn")
    before = turns.count()
    box = page.locator("#qa-question textarea")
    box.fill(question)
    box.press("Enter")
    turns.nth(before).wait_for()
    return turns.nth(before)


def test_page_loads_offline_with_status_and_examples(page):
    from playwright.sync_api import expect

    expect(page.locator(".qa-status")).to_contain_text(re.compile(r"3 articles · \d+ chunks\s*built \d{4}-"))
    expect(page.get_by_role("button", name=re.compile(r"^What do we know about [A-Z]")).first).to_be_visible()
    font = page.locator(".qa-status").evaluate("e => getComputedStyle(e).fontFamily")
    assert "system-ui" in font
    shot(page, "01_start")


def test_answer_shows_citations_and_the_source_with_the_quote_highlighted(page):
    from playwright.sync_api import expect

    turn = ask(page, "Who plays Irving in Severance?")
    expect(turn.locator(".qa-text")).to_contain_text("Turturro")
    expect(turn.locator(".qa-confidence")).to_contain_text(re.compile(r"confidence 0\.\d\d \((high|medium)\)"))
    marker = turn.locator(".qa-marker").first
    expect(marker).to_have_text("[1]")
    shot(page, "02_answer")

    marker.click()
    card = turn.locator(".qa-source").first
    assert page.url.endswith(marker.get_attribute("href"))
    expect(card.locator(".qa-src-line")).to_contain_text(".txt")
    mark = card.locator(".qa-context mark")
    expect(mark).to_be_visible()
    quote = mark.inner_text()
    assert quote.strip() and quote.strip() in turn.locator(".qa-text").inner_text()
    bg = mark.evaluate("m => getComputedStyle(m).backgroundColor")
    assert bg not in ("rgba(0, 0, 0, 0)", "transparent")

    card.locator(".qa-article summary").click()
    article = card.locator(".qa-article-text")
    expect(article).to_be_visible()
    expect(article.locator("mark")).to_have_text(quote)
    assert len(article.inner_text()) > 3 * len(card.locator(".qa-context").inner_text())
    article.locator("mark").scroll_into_view_if_needed()
    shot(page, "03_source_article")

    turn.locator(".qa-passages summary").click()
    expect(turn.locator(".qa-passages li").first).to_be_visible()


def test_unanswerable_question_shows_the_refusal_style(page):
    from playwright.sync_api import expect

    turn = ask(page, "What is the capital of France?")
    refusal = turn.locator(".qa-refusal")
    expect(refusal).to_contain_text("Not in the articles")
    expect(refusal.locator(".qa-related")).to_contain_text("Related, not an answer")
    expect(turn.locator(".qa-marker")).to_have_count(0)
    assert refusal.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
    shot(page, "04_refusal")


def test_follow_up_shows_what_was_searched_for(page):
    from playwright.sync_api import expect

    first = ask(page, "Who plays Mark?")
    expect(first.locator(".qa-text")).to_contain_text("Scott")
    expect(first.locator(".qa-searched")).to_have_count(0)
    second = ask(page, "What did he caption his post?")
    expect(second.locator(".qa-searched")).to_contain_text(
        re.compile(r"searched for: .*What did he caption his post\?.*Mark")
    )
    expect(second.locator(".qa-text")).to_be_visible()
    shot(page, "05_follow_up")

    page.locator("#qa-clear").click()  # a new chat forgets the history: the same follow-up is not rewritten
    expect(page.locator(".qa-turn")).to_have_count(0)
    fresh = ask(page, "What did he caption his post?")
    expect(fresh.locator(".qa-searched")).to_have_count(0)


def test_empty_and_overlong_questions_get_polite_warnings(page):
    from playwright.sync_api import expect

    box = page.locator("#qa-question textarea")
    box.press("Enter")
    expect(page.get_by_text("Please type a question about the articles first.")).to_be_visible()
    box.fill("x" * 5000)
    box.press("Enter")
    expect(
        page.get_by_text(re.compile("Sorry, I can't answer that: question is 5,000 characters long"))
    ).to_be_visible()
    expect(page.locator(".qa-turn")).to_have_count(0)
    assert "Traceback" not in page.content()
    shot(page, "06_warnings")


def upload(page, file):
    """Upload a file (a path, or a Playwright file payload {"name", "mimeType", "buffer"})."""
    with page.expect_file_chooser() as chooser:
        page.locator("#qa-upload").click()
    chooser.value.set_files(file if isinstance(file, dict) else str(file))


def test_upload_is_indexed_in_the_background_and_then_answerable(page, tmp_path):
    from playwright.sync_api import expect

    path = tmp_path / "gullwing_lighthouse.txt"
    path.write_text(LIGHTHOUSE, encoding="utf-8")
    upload(page, path)
    message = page.locator("#qa-upload-message")
    expect(message).to_contain_text(re.compile(r"(Saved|Added) gullwing_lighthouse\.txt"))
    shot(page, "07_upload_indexing")
    # the status panel follows the background indexing (gr.Timer) and the message turns into the result
    expect(page.locator("#qa-status")).to_contain_text("Added gullwing_lighthouse.txt")
    expect(page.locator(".qa-status")).to_contain_text("4 articles")
    expect(message).to_contain_text("you can ask about it now")
    shot(page, "07_upload_ok")
    turn = ask(page, "Who keeps the Gullwing lighthouse?")
    expect(turn.locator(".qa-text")).to_contain_text("Ottilie Brandvold")
    expect(turn.locator(".qa-source").first).to_contain_text("gullwing_lighthouse.txt")
    shot(page, "08_upload_answer")


def test_refused_upload_says_why_and_keeps_the_index(page, tmp_path):
    from playwright.sync_api import expect

    status = page.locator(".qa-status").inner_text()
    path = tmp_path / "latin1_notes.txt"
    path.write_bytes("Caf\u00e9 cr\u00e8me is served at noon in Marrow Point.".encode("latin-1"))
    upload(page, path)
    expect(page.locator("#qa-upload-message")).to_contain_text("latin1_notes.txt was refused: not UTF-8")
    assert page.locator(".qa-status").inner_text() == status  # same counts, same build time
    shot(page, "09_upload_refused")
    turn = ask(page, "Who plays Irving in Severance?")
    expect(turn.locator(".qa-text")).to_contain_text("Turturro")


def test_markdown_in_a_question_is_shown_as_text_and_loads_nothing(page, elsewhere):
    from playwright.sync_api import expect

    assert "content-security-policy" in page.response.headers
    question = f"![p]({elsewhere.base}/question.png) [link]({elsewhere.base}/) **Who** plays Irving?"
    turn = ask(page, question)
    expect(turn).to_be_visible()
    mine = page.locator(".qa-question").last
    expect(mine).to_have_text(question)  # every character shown as typed
    assert mine.locator("img, a").count() == 0
    page.wait_for_timeout(1000)
    assert elsewhere.hits == []
    shot(page, "10_markdown_question")


def test_the_content_security_policy_blocks_outside_images(page, elsewhere):
    csp = page.response.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in csp and "connect-src 'self'" in csp
    blocked = page.evaluate(
        """url => new Promise(resolve => {
            document.addEventListener("securitypolicyviolation", e => resolve(e.violatedDirective), {once: true});
            const img = document.createElement("img");
            img.src = url;
            document.body.appendChild(img);
            setTimeout(() => resolve("not blocked"), 5000);
        })""",
        f"{elsewhere.base}/injected.png",
    )
    assert blocked.startswith("img-src")
    page.wait_for_timeout(500)
    assert elsewhere.hits == []  # the browser never sent it
    # the request this test made on purpose: Playwright reports it although the policy stopped it
    page.outside.remove(f"{elsewhere.base}/injected.png")
    page.csp_violations.clear()


def test_upload_name_says_what_it_was_saved_as_and_its_markdown_stays_text(page, elsewhere):
    from playwright.sync_api import expect

    body = (
        "# The Sandvik tide mill\n\n"
        f"The Sandvik tide mill ![mill]({elsewhere.base}/article.png) was restored by Oddny Rasmussen in 2024.\n"
    )
    upload(page, {"name": "x </b>.txt", "mimeType": "text/plain", "buffer": body.encode()})
    message = page.locator("#qa-upload-message")
    expect(message).to_contain_text(re.compile(r"(Received|Added) x </b>\.txt, saved as b\.txt"))
    expect(message).to_contain_text("you can ask about it now")
    turn = ask(page, "Who restored the Sandvik tide mill?")
    expect(turn.locator(".qa-text")).to_contain_text("Oddny Rasmussen")
    expect(turn.locator(".qa-text")).to_contain_text(f"![mill]({elsewhere.base}/article.png)")
    assert turn.locator("img").count() == 0
    page.wait_for_timeout(1000)
    assert elsewhere.hits == []
    shot(page, "11_upload_renamed")


def test_a_cited_answer_from_an_ingested_web_page(browser_context, tmp_path):
    """The seed articles added from their fixture web pages (python -m qa add): the source card
    names the outlet and date, links to the original page, and quotes none of the page's chrome."""
    from playwright.sync_api import expect

    from qa.ingest.add import add

    pages = sorted((ROOT / "tests" / "fixtures" / "ingest").glob("seed-*.html"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert len(add([str(p) for p in pages], corpus).added) == 3
    with running_app(corpus, tmp_path / "index", tmp_path / "app.log") as url:
        page = browser_context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(url)
            page.locator("#qa-question textarea").wait_for()
            turn = ask(page, "Who plays Irving in Severance?")
            expect(turn.locator(".qa-text")).to_contain_text("Turturro")
            turn.locator(".qa-marker").first.click()
            line = turn.locator(".qa-source .qa-src-line").first
            expect(line).to_contain_text(re.compile(r"·\s*\d{4}-\d\d-\d\d"))
            link = line.locator("a.qa-original")
            expect(link).to_have_attribute("href", re.compile(r"^https://"))
            assert {"noopener", "noreferrer"} <= set(link.get_attribute("rel").split())  # Gradio keeps these two
            for chrome in ("cookies", "Advertisement", "Related content"):
                assert chrome not in turn.locator(".qa-text").inner_text()
            shot(page, "12_ingested_html_answer")
        finally:
            page.close()
