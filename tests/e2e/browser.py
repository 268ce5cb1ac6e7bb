"""The harness of the browser tests: the project's WSGI application served on a loopback port inside the
test's transaction, Debian's Chromium driven by Playwright, and what a page must never show (a JavaScript
error, a 404 or a 5xx, Chromium's own error page).

The site is served a thread per connection (Chromium opens several, some speculatively), all using the
test's own database connection (inside the test's transaction, rolled back at the end, as the Django test
client does) one request at a time; the test reads the database between the browser's requests only
(``live.db()``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, connections

CHROMIUM = os.environ.get("CITYCARD_CHROMIUM", "/usr/bin/chromium")  # Debian's (apt-get install chromium)
PASSWORD = "a-long-browser-password"

# What every browser test module marks itself with.
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


def playwright_sync():
    return pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection: a single-threaded server reading a connection Chromium opened ahead and
    left idle would keep the next page waiting behind it."""

    daemon_threads = True


class Live:
    """The served site's base URL, and ``db()``: the test's connection, between the browser's requests."""

    def __init__(self, base: str, shared, lock: threading.Lock) -> None:
        self.base, self._shared, self._lock = base, shared, lock

    @contextmanager
    def db(self) -> Iterator[None]:
        with self._lock:
            # Playwright's sync API switches greenlets (each with its own context): the ORM would open a
            # new connection outside the test's transaction unless told which one to use.
            connections["default"] = self._shared
            yield


@pytest.fixture
def live(monkeypatch) -> Iterator[Live]:
    """The project served on 127.0.0.1 by threads sharing the test's connection, one request at a time."""
    from citycard.platform.wsgi import application as django_application

    lock = threading.Lock()
    shared = connections["default"]  # the test's connection, in the test's transaction
    shared.inc_thread_sharing()

    def application(environ, start_response):
        with lock:
            connections["default"] = shared
            return list(django_application(environ, start_response))

    # As the test client: a request must not close the connection of the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    httpd = make_server("127.0.0.1", 0, application, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    # Playwright's sync API runs an event loop in this thread; the ORM reads here happen between requests.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        yield Live(f"http://localhost:{httpd.server_address[1]}", shared, lock)
    finally:
        httpd.shutdown()
        httpd.server_close()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        connections["default"] = shared
        shared.dec_thread_sharing()
        connection.set_schema_to_public()


@contextmanager
def browser_open() -> Iterator:
    with playwright_sync().sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def page_watch(page, problems: list[str]) -> None:
    def console(message) -> None:
        where = (message.location or {}).get("url", "")
        # Django's admin sign-in page links no icon, so Chromium asks for /favicon.ico (404); the console's
        # pages link an empty one.
        if message.type == "error" and not where.endswith("/favicon.ico"):
            problems.append(f"console {message.type} at {where}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} for {r.url}") if r.status == 404 or r.status >= 500 else None,
    )


def sign_in(page, base: str, username: str, next_url: str = "/console/") -> None:
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def arrive(page, url: str) -> None:
    """Wait for the browser to show ``url``, and say what it shows instead if that is Chromium's own
    network-error page (its ``lang`` is the browser's, not the site's)."""
    page.wait_for_url(url)
    if page.evaluate("() => document.body !== null && document.body.classList.contains('neterror')"):
        raise AssertionError(f"Chromium could not load {url}: {page.inner_text('body')[:400]}")


def fen_of(text: str) -> int:
    """'-¥1,234.56' → -123456."""
    sign = -1 if text.strip().startswith("-") else 1
    yuan, cents = re.sub(r"[^\d.]", "", text).split(".")
    return sign * (int(yuan) * 100 + int(cents))
