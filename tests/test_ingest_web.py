"""Web pages, feeds and fetching for ``python -m qa add`` (fast tier: no model, no internet).

The fixtures (tests/fixtures/ingest, made by make_fixtures.py) wrap the three seed articles in
page chrome; the extracted text must hold every seed paragraph and none of the chrome. Fetching
is tested against a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import socket
import threading
from pathlib import Path

import pytest

from qa.errors import InputError
from qa.ingest import feeds, fetch, html
from qa.ingest.feeds import articles_from_feed, looks_like_feed
from qa.ingest.fetch import fetch as fetch_url
from qa.ingest.html import MAX_PAGE_BYTES, article_from_html, html_to_text, looks_like_html

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"


def _load_fixture_maker():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mf = _load_fixture_maker()

# what each seed page says about itself (see make_fixtures.PAGES)
EXPECTED = [
    {
        "title": "Christopher Walken and John Turturro Look Back on Burt and Irving's Farewell",
        "date": "2025-06-10",
        "outlet": "Screen Ledger",
        "author": "Dana Whitfield",
        "url": "https://www.screenledger.example/news/walken-turturro-severance-farewell",
    },
    {
        "title": "Severance Season 2: John Turturro Teases Twists and Turns",
        "date": "2024-02-01",
        "outlet": "The Streaming Desk",
        "author": "Marcus Lee",
        "url": "https://streamingdesk.example/2024/02/01/severance-season-2-turturro-twists",
    },
    {
        "title": "John Turturro Says Severance Season 2 Is Worth the Wait",
        "date": "2024-01-31",  # 22:15 -08:00: already Feb 1 in UTC, but the article's date is Jan 31
        "outlet": "Evening Pop Report",
        "author": "Priya Raman",
        "url": "https://eveningpop.example/tv/turturro-severance-season-2-worth-the-wait",
    },
]

# chrome on every seed page: none of it may reach the extracted text
CHROME = [
    # navigation menu
    "Streaming Guide",
    "Awards Tracker",
    "Newsletter Sign-Up",
    "Podcasts Hub",
    # cookie banner
    "We use cookies to personalise content and measure our audience",
    "Accept all cookies",
    "Manage preferences",
    # ads
    "Advertisement",
    "Get 50% off your first three months of StreamMax Premium",
    "Sponsored by Lumenade Sparkling Water",
    # share buttons
    "Share on Facebook",
    "Share on Bluesky",
    "Copy link to this story",
    # comments
    "Comments (3)",
    "Best finale of any show this year, hands down.",
    "The train station scene wrecked me. Give Walken the Emmy already.",
    "Does anyone know if season 3 has started filming yet?",
    "couchcritic42",
    "lumon_loyalist",
    "Reply",
    # related content
    "Related content",
    "Ben Stiller explains how the Lumon hallways were built",
    "Every Severance easter egg you missed in the season finale",
    "Patricia Arquette on playing Harmony Cobel",
    # footer
    "Media Group",
    "All rights reserved.",
    "Privacy Policy",
    "Terms of Use",
    "Do Not Sell My Personal Information",
]


def norm(text: str) -> str:
    return " ".join(text.split())


def page(index: int) -> bytes:
    return (FIXTURES / f"seed-{index}.html").read_bytes()


def seed_paragraphs(index: int) -> list[str]:
    return mf.seed_article(index)[1]


# ---- fixtures are what they claim --------------------------------------------------------------


def test_fixtures_are_up_to_date():
    """The committed fixtures are what make_fixtures.py writes (regenerate after editing it)."""
    for name, text in mf.outputs().items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == text, f"{name} is stale: run make_fixtures.py"


@pytest.mark.parametrize("index", range(3))
def test_seed_copies_match_their_dates(index):
    date, paragraphs = mf.seed_article(index)
    assert date == EXPECTED[index]["date"]
    assert len(paragraphs) >= 5


@pytest.mark.parametrize("index", range(3))
def test_page_has_the_chrome_it_is_tested_against(index):
    import html as std_html

    text = std_html.unescape(page(index).decode("utf-8"))
    for chrome in CHROME:
        assert chrome in text
    for paragraph in seed_paragraphs(index):
        assert paragraph in text


# ---- web pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(3))
def test_page_text_is_every_seed_paragraph(index):
    article = article_from_html(page(index))
    text = norm(article.text)
    for paragraph in seed_paragraphs(index):
        assert norm(paragraph) in text
    # one paragraph per <p>, in order, verbatim (quotes, dashes and apostrophes untouched)
    assert article.text.split("\n\n") == seed_paragraphs(index)


@pytest.mark.parametrize("index", range(3))
def test_page_text_has_no_chrome(index):
    text = article_from_html(page(index)).text
    leaked = [chrome for chrome in CHROME if chrome in text]
    assert not leaked
    assert EXPECTED[index]["title"] not in text  # the headline is metadata, not a paragraph
    assert "By " + EXPECTED[index]["author"] not in text  # nor the byline


@pytest.mark.parametrize("index", range(3))
def test_page_metadata(index):
    article = article_from_html(page(index), "http://127.0.0.1:8000/saved/page.html")
    want = EXPECTED[index]
    assert article.title == want["title"]
    assert article.date == want["date"]
    assert article.outlet == want["outlet"]
    assert article.author == want["author"]
    assert article.url == want["url"]  # the canonical URL, not where it was saved
    assert article.kind == "html"


def test_page_text_format():
    text = article_from_html(page(2)).text
    assert text == text.strip()
    assert "\n\n\n" not in text
    for paragraph in text.split("\n\n"):
        assert paragraph == norm(paragraph)  # whitespace normalized, one line
        assert not paragraph.startswith(("#", "- ", "* ", "> "))  # no markdown
    assert "**" not in text


def test_page_without_canonical_keeps_the_given_url():
    data = page(0).decode("utf-8")
    data = data.replace('<link rel="canonical"', '<link rel="alternate"').replace(
        'property="og:url"', 'property="og:x"'
    )
    article = article_from_html(data, "https://mirror.example/copy.html")
    assert article.url == "https://mirror.example/copy.html"
    assert article_from_html(data).url is None


def test_page_str_and_bytes_agree():
    assert article_from_html(page(1)) == article_from_html(page(1).decode("utf-8"))


def test_page_extraction_is_deterministic_and_offline(monkeypatch):
    """No socket is opened (trafilatura and htmldate get the bytes, never a URL) and the same
    page reads the same every time."""

    def no_network(*args, **kwargs):
        raise AssertionError("the extraction tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    first = [article_from_html(page(i), EXPECTED[i]["url"]) for i in range(3)]
    again = [article_from_html(page(i), EXPECTED[i]["url"]) for i in range(3)]
    assert first == again


def test_broken_page_is_refused():
    with pytest.raises(InputError, match="broken.html: no article text found"):
        article_from_html((FIXTURES / "broken.html").read_bytes(), source="broken.html")


@pytest.mark.parametrize("data", [b"", b"   \n ", ""])
def test_empty_page_is_refused(data):
    with pytest.raises(InputError, match="https://x.example/a: the page is empty"):
        article_from_html(data, "https://x.example/a")


def test_big_local_page_is_refused_naming_size_and_limit(tmp_path):
    path = mf.write_big_page(tmp_path / "big.html", 50_000_000)
    assert path.stat().st_size == 50_000_000
    with pytest.raises(InputError, match=r"big\.html: the page is 50,000,000 bytes, over the limit of 10,000,000"):
        article_from_html(path.read_bytes(), source="big.html")
    assert MAX_PAGE_BYTES == 10_000_000


def test_page_just_over_the_limit_is_refused_as_str():
    data = "".join(chunk.decode("ascii") for chunk in mf.big_page_chunks(MAX_PAGE_BYTES + 1))
    with pytest.raises(InputError, match="10,000,001 bytes"):
        article_from_html(data)


def test_long_page_under_the_limit_is_read():
    article = article_from_html(b"".join(mf.big_page_chunks(2_000_000)))
    assert article.title == "A very long page"
    assert len(article.text) > 1_900_000
    assert article.text.startswith("Paragraph 0. All work")


def test_looks_like_html():
    for index in range(3):
        assert looks_like_html(page(index))
    assert looks_like_html(b"\xef\xbb\xbf  <!-- saved --><html><body><p>x</p></body></html>")
    assert looks_like_html(b'<?xml version="1.0"?><!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"><html>')
    assert not looks_like_html((FIXTURES / "feed.xml").read_bytes())
    assert not looks_like_html((FIXTURES / "atom.xml").read_bytes())
    assert not looks_like_html(b"%PDF-1.7\n")
    assert not looks_like_html(b"Just some text about <b>Severance</b>.")


def test_html_to_text():
    fragment = (
        "<p>One <b>bold</b>\n word.</p>Two<br>Three<ul><li>Four</li></ul><script>x()</script><p>Five &amp; six</p>"
    )
    assert html_to_text(fragment) == "One bold word.\n\nTwo\n\nThree\n\nFour\n\nFive & six"
    assert html_to_text("plain\n\n  text   here ") == "plain\n\ntext here"
    assert html_to_text("a<!-- a comment --> b<script>x()</script> c<style>p {}</style>") == "a b c"
    assert html_to_text("") == ""
    assert html_to_text("<p> </p><div></div>") == ""


# ---- feeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["feed.xml", "atom.xml"])
def test_feed_entries(name):
    articles = articles_from_feed((FIXTURES / name).read_bytes(), "https://severancewatch.example/" + name)
    assert len(articles) == 3
    for index, article in enumerate(articles):
        want = EXPECTED[index]
        assert article.url == want["url"]
        assert article.title == want["title"]
        assert article.date == want["date"]
        assert article.author == want["author"]
        assert article.outlet == mf.FEED_TITLE
        assert article.kind == "feed"
        assert article.text.split("\n\n") == seed_paragraphs(index)


@pytest.mark.parametrize("name", ["feed.xml", "atom.xml"])
def test_feed_does_not_fetch_without_follow_links(name):
    def refuse(url):
        raise AssertionError(f"fetched {url}")

    assert len(articles_from_feed((FIXTURES / name).read_bytes(), fetch=refuse)) == 3


class FakeFetch:
    """A fetch that answers from a dict url -> (body, content type) and records the calls."""

    def __init__(self, pages: dict[str, tuple[bytes, str]]):
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str) -> tuple[bytes, str, str]:
        self.calls.append(url)
        body, content_type = self.pages[url]
        return body, content_type, url


@pytest.mark.parametrize("name", ["feed.xml", "atom.xml"])
def test_feed_follow_links(name):
    fake = FakeFetch({EXPECTED[i]["url"]: (page(i), "text/html; charset=utf-8") for i in range(3)})
    articles = articles_from_feed((FIXTURES / name).read_bytes(), follow_links=True, fetch=fake)
    assert fake.calls == [e["url"] for e in EXPECTED]
    for index, article in enumerate(articles):
        assert article == article_from_html(page(index), EXPECTED[index]["url"])
        assert not [chrome for chrome in CHROME if chrome in article.text]


def test_feed_follow_links_keeps_entry_metadata_the_page_lacks():
    bare = "<html><body><article>" + "".join(f"<p>{p}</p>" for p in seed_paragraphs(2)) + "</article></body></html>"
    fake = FakeFetch({EXPECTED[i]["url"]: (bare.encode() if i == 2 else page(i), "text/html") for i in range(3)})
    article = articles_from_feed((FIXTURES / "feed.xml").read_bytes(), follow_links=True, fetch=fake)[2]
    assert article.title == EXPECTED[2]["title"]
    assert article.date == EXPECTED[2]["date"]
    assert article.author == EXPECTED[2]["author"]
    assert article.outlet == "eveningpop.example"  # trafilatura names the site by its host: not the feed's title
    assert article.url == EXPECTED[2]["url"]
    assert article.text.split("\n\n") == seed_paragraphs(2)


def test_feed_follow_links_refuses_a_link_that_is_not_a_page():
    fake = FakeFetch({e["url"]: (b"\x89PNG\r\n", "image/png") for e in EXPECTED})
    with pytest.raises(InputError, match="not a web page.*image/png"):
        articles_from_feed((FIXTURES / "feed.xml").read_bytes(), follow_links=True, fetch=fake)


def test_empty_feed_is_refused():
    with pytest.raises(InputError, match="empty-feed.xml has no entries"):
        articles_from_feed((FIXTURES / "empty-feed.xml").read_bytes(), source="empty-feed.xml")


@pytest.mark.parametrize("data", [b"", b"not a feed at all", (FIXTURES / "seed-0.html").read_bytes()])
def test_not_a_feed_is_refused(data):
    with pytest.raises(InputError, match="https://x.example/f is not an RSS or Atom feed"):
        articles_from_feed(data, "https://x.example/f")


def test_feed_with_link_only_entries_needs_follow_links():
    data = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Links</title>
    <item><title>Only a link</title><link>https://news.example/a</link></item></channel></rss>"""
    with pytest.raises(InputError, match="none of its 1 entries has any text"):
        articles_from_feed(data)
    fake = FakeFetch({"https://news.example/a": (page(1), "text/html")})
    [article] = articles_from_feed(data, follow_links=True, fetch=fake)
    assert article.title == EXPECTED[1]["title"]


def test_looks_like_feed():
    for name in ("feed.xml", "atom.xml", "empty-feed.xml"):
        assert looks_like_feed((FIXTURES / name).read_bytes())
    assert looks_like_feed(b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c --><rdf:RDF xmlns:rdf="x">')
    assert not looks_like_feed(page(0))
    assert not looks_like_feed(b"<?xml version='1.0'?><svg></svg>")
    assert not looks_like_feed(b"rss feed")


# ---- fetch -----------------------------------------------------------------------------------

BIG = 50_000_000


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves the fixtures and the special paths below; records each request's User-Agent."""

    release = threading.Event()  # set at teardown: the slow handlers stop waiting
    agents: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        Handler.agents.append(self.headers.get("User-Agent", ""))
        path = self.path.split("?")[0]
        special = {
            "/redirect-file": lambda: self.redirect("file:///etc/passwd"),
            "/redirect-ftp": lambda: self.redirect("ftp://files.example/seed.html"),
            "/redirect-metadata": lambda: self.redirect("http://169.254.169.254/latest/meta-data/"),
            "/redirect-relative": lambda: self.redirect("seed-1.html"),
            "/image.png": lambda: self.send(b"\x89PNG\r\n\x1a\n", "image/png"),
            "/no-type": lambda: self.send(b"<html></html>", None),
            "/missing": lambda: self.send(b"gone", "text/plain", status=404),
            "/slow": self.slow_headers,
            "/slow-body": self.slow_body,
            "/big-declared": lambda: self.stream(declare=True),
            "/big-streamed": lambda: self.stream(declare=False),
            "/gzip-bomb": self.gzip_bomb,
            "/gzip-page": lambda: self.send(gzip.compress(page(0)), "text/html", encoding="gzip"),
        }
        if path in special:
            return special[path]()
        if path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            return self.redirect(f"/chain/{left - 1}" if left > 0 else "/seed-0.html")
        file = FIXTURES / path.lstrip("/")
        if "/" in path.lstrip("/") or not file.is_file():
            return self.send(b"not found", "text/plain", status=404)
        kinds = {".html": "text/html; charset=utf-8", ".xml": "application/rss+xml"}
        return self.send(file.read_bytes(), kinds.get(file.suffix, "text/plain"))

    def send(self, body: bytes, content_type: str | None, status: int = 200, encoding: str | None = None):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def slow_headers(self):
        Handler.release.wait(5)
        try:
            self.send(page(0), "text/html")
        except OSError:  # the client gave up long ago
            pass

    def slow_body(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(100):  # a byte every 0.1 s: each read is quick, the whole is not
                self.wfile.write(b"x")
                self.wfile.flush()
                if Handler.release.wait(0.1):
                    return
        except OSError:
            pass

    def stream(self, declare: bool):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if declare:
            self.send_header("Content-Length", str(BIG))
        self.end_headers()
        try:
            for chunk in mf.big_page_chunks(BIG):
                self.wfile.write(chunk)
        except OSError:  # the client stopped reading
            pass

    def gzip_bomb(self):
        body = gzip.compress(b"<html><body>" + b" " * 20_000_000 + b"</body></html>")
        self.send(body, "text/html", encoding="gzip")


@pytest.fixture(scope="module")
def server():
    """The base URL of a local server (127.0.0.1, a free port) serving Handler."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.release.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        Handler.release.set()
        httpd.shutdown()
        httpd.server_close()


def get(url: str, **options):
    options.setdefault("allow_private", True)
    return fetch_url(url, **options)


def test_fetch_a_page(server):
    body, content_type, final = get(f"{server}/seed-0.html")
    assert body == page(0)
    assert content_type == "text/html; charset=utf-8"
    assert final == f"{server}/seed-0.html"
    assert Handler.agents[-1] == "qa-news/0.1"
    assert article_from_html(body, final).url == EXPECTED[0]["url"]


def test_fetch_a_feed(server):
    body, content_type, _ = get(f"{server}/feed.xml")
    assert content_type == "application/rss+xml"
    assert len(articles_from_feed(body)) == 3


def test_fetch_refuses_loopback_without_allow_private(server):
    with pytest.raises(InputError, match=r"127\.0\.0\.1, a loopback address"):
        fetch_url(f"{server}/seed-0.html")
    port = server.rsplit(":", 1)[1]
    with pytest.raises(InputError, match="loopback address"):
        fetch_url(f"http://localhost:{port}/seed-0.html")


@pytest.mark.parametrize(
    "address, kind",
    [
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
    ],
)
def test_non_public_addresses(address, kind):
    assert fetch._non_public(address) == kind


def test_public_addresses():
    assert fetch._non_public("93.184.215.14") is None
    assert fetch._non_public("2606:4700::1111") is None


def test_fetch_refuses_redirect_to_file(server):
    with pytest.raises(
        InputError, match=r"redirected to file:///etc/passwd\): only http and https URLs are fetched, not 'file'"
    ):
        get(f"{server}/redirect-file")


def test_fetch_refuses_redirect_to_ftp(server):
    with pytest.raises(InputError, match="not 'ftp'"):
        get(f"{server}/redirect-ftp")


def test_fetch_refuses_redirect_to_a_private_address(server, monkeypatch):
    """The address is checked again after a redirect (here 127.0.0.1 passes as public)."""
    real = fetch._non_public
    monkeypatch.setattr(fetch, "_non_public", lambda address: None if address == "127.0.0.1" else real(address))
    assert get(f"{server}/seed-1.html", allow_private=False)[0] == page(1)
    with pytest.raises(InputError, match=r"redirected to http://169\.254\.169\.254/.*link-local address"):
        get(f"{server}/redirect-metadata", allow_private=False)


def test_fetch_follows_five_redirects_not_six(server):
    body, _, final = get(f"{server}/chain/4")  # 5 redirects: 4, 3, 2, 1, 0 -> the page
    assert body == page(0)
    assert final == f"{server}/seed-0.html"
    with pytest.raises(InputError, match="more than 5 redirects"):
        get(f"{server}/chain/5")  # 6 redirects


def test_fetch_relative_redirect(server):
    body, _, final = get(f"{server}/redirect-relative")
    assert (body, final) == (page(1), f"{server}/seed-1.html")


def test_fetch_refuses_wrong_content_type(server):
    with pytest.raises(InputError, match="image.png: content type 'image/png' is not a web page"):
        get(f"{server}/image.png")
    with pytest.raises(InputError, match="no content type"):
        get(f"{server}/no-type")


def test_fetch_http_error(server):
    with pytest.raises(InputError, match="/missing: the server answered HTTP 404"):
        get(f"{server}/missing")


def test_fetch_times_out_waiting_for_the_answer(server):
    with pytest.raises(InputError, match=r"/slow: timed out: no complete answer within 0\.5 s"):
        get(f"{server}/slow", timeout=0.5)


def test_fetch_times_out_on_a_trickling_body(server):
    with pytest.raises(InputError, match=r"/slow-body: timed out"):
        get(f"{server}/slow-body", timeout=0.5)


def test_fetch_refuses_a_declared_big_body(server):
    with pytest.raises(InputError, match=r"larger than the limit of 10,000,000 bytes \(Content-Length: 50,000,000\)"):
        get(f"{server}/big-declared")


def test_fetch_stops_reading_a_streamed_big_body(server):
    with pytest.raises(InputError, match="big-streamed: the answer is larger than the limit of 10,000,000 bytes"):
        get(f"{server}/big-streamed")
    with pytest.raises(InputError, match="limit of 1,000 bytes"):
        get(f"{server}/seed-0.html", max_bytes=1_000)


def test_fetch_gzip(server):
    assert get(f"{server}/gzip-page")[0] == page(0)
    with pytest.raises(InputError, match="larger than the limit of 1,000,000 bytes"):
        get(f"{server}/gzip-bomb", max_bytes=1_000_000)


@pytest.mark.parametrize(
    "url, message",
    [
        ("file:///etc/passwd", "not 'file'"),
        ("ftp://files.example/a", "not 'ftp'"),
        ("example.com/a", "not 'a URL without a scheme'"),
        ("http:///path", "no host name"),
        ("http://user:secret@news.example/", "user name or password"),
        ("http://news.example:99999/", "not a valid URL"),
    ],
)
def test_fetch_refuses_bad_urls(url, message):
    with pytest.raises(InputError, match=message):
        fetch_url(url)


def test_fetch_connection_refused():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=rf"127\.0\.0\.1:{port}/a: the request failed"):
        get(f"http://127.0.0.1:{port}/a")


def test_modules_expose_their_api():
    assert callable(html.article_from_html) and callable(feeds.articles_from_feed) and callable(fetch.fetch)
