"""The web chat example, end to end: served by uvicorn, driven in headless Chromium by Playwright.

Needs the ``web`` extra (starlette, uvicorn; also in ``dev``), Playwright's Python package (``dev``)
and the system's Chromium (Debian: ``apt-get install -y chromium``; Playwright's own browser
download is not used). Without them these tests skip with the reason, or fail when
``AGENT_SESSIONS_REQUIRE_SERVERS=1`` is set, as ``.ci/run`` does.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import shutil
import socket
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent_sessions import SQLiteSession
from tests.conftest import REQUIRE_SERVERS_VARIABLE, servers_required

pytestmark = pytest.mark.slow  # a real server and a real browser

APP = Path(__file__).resolve().parent.parent / "examples" / "web_chat" / "app.py"
INSTALL_DEV = "install it with: pip install -e '.[dev]'"


def require(available: bool, what: str, how: str) -> None:
    """Skip (or, when servers are required, fail) unless ``what`` is available."""
    if available:
        return
    reason = f"{what} is not available; {how}"
    if servers_required():
        pytest.fail(f"{reason}; {REQUIRE_SERVERS_VARIABLE} is set, so this is a failure")
    pytest.skip(reason)


def load_app() -> ModuleType:
    """Import examples/web_chat/app.py, after checking that the ``web`` extra is installed."""
    for package in ("starlette", "uvicorn"):
        require(importlib.util.find_spec(package) is not None, package, INSTALL_DEV)
    if "web_chat_app" in sys.modules:
        return sys.modules["web_chat_app"]
    spec = importlib.util.spec_from_file_location("web_chat_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return module


def chromium() -> str:
    """The system's Chromium, after checking that it and Playwright are installed."""
    require(importlib.util.find_spec("playwright") is not None, "playwright", INSTALL_DEV)
    path = shutil.which("chromium")
    require(path is not None, "chromium", "install it with: apt-get install -y chromium")
    assert path is not None
    return path


@contextmanager
def serve(db_path: Path) -> Iterator[str]:
    """Run the web chat on a free port of 127.0.0.1 in a thread; yield its URL; stop it.

    On exit the server is stopped and collected, and a ``ResourceWarning`` (a database file the
    app left open) fails the test.
    """
    import uvicorn

    config = uvicorn.Config(load_app().create_app(db_path), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), "the server stopped during startup"
            assert time.monotonic() < deadline, "the server did not start within 15 s"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
    assert not thread.is_alive(), "the server did not stop within 15 s"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del server, config
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


def stored(db_path: Path, session_id: str) -> list[dict[str, Any]]:
    """A conversation's items as a fresh SQLiteSession on the same file reads them."""

    async def read() -> list[dict[str, Any]]:
        async with SQLiteSession(session_id, db_path) as session:
            return [dict(item) for item in await session.get_items()]

    # On a thread of its own: Playwright's sync API keeps an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(read())).result()


def post(url: str, text: str) -> list[dict[str, str]]:
    """Send a message through the HTTP API and return the messages it answers with."""
    body = json.dumps({"text": text}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - our http URL
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        messages: list[dict[str, str]] = json.load(response)["messages"]
    return messages


def test_stopping_the_server_closes_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the app closes the file its conversations were served from: nothing leaks."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    db_path = tmp_path / "chats.db"
    with serve(db_path) as url:
        for session_id in ("ada", "grace"):
            post(f"{url}/api/sessions/{session_id}/messages", f"Hi! My name is {session_id}.")
    assert [len(stored(db_path, s)) for s in ("ada", "grace")] == [2, 2]


@pytest.mark.slow
def test_browser_chat_remembers_undoes_reloads_and_switches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a browser, the page always shows what the database holds for the open conversation."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the offline model answers predictably
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    db_path = tmp_path / "chats.db"
    with serve(db_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{url}/")
            expect(page.locator("#title")).to_have_text("default")
            messages = page.locator("#messages li")
            replies = page.locator("#messages li.assistant")

            page.fill("#text", "Hi! My name is Ada.")
            page.get_by_role("button", name="Send").click()
            expect(messages).to_have_count(2)
            expect(replies.nth(0)).to_have_text("Nice to meet you, Ada! I'll remember that.")

            page.fill("#text", "What is my name?")
            page.press("#text", "Enter")
            expect(messages).to_have_count(4)
            expect(replies.nth(1)).to_contain_text("Ada")
            assert len(stored(db_path, "default")) == 4

            page.get_by_role("button", name="Undo").click()
            expect(messages).to_have_count(2)
            first_exchange = ["Hi! My name is Ada.", "Nice to meet you, Ada! I'll remember that."]
            expect(messages).to_have_text(first_exchange)
            reply = [{"annotations": [], "text": first_exchange[1], "type": "output_text"}]
            kept = [(item["role"], item["content"]) for item in stored(db_path, "default")]
            assert kept == [("user", first_exchange[0]), ("assistant", reply)]

            page.reload()
            expect(messages).to_have_text(first_exchange)

            page.fill("#session-id", "other")
            page.press("#session-id", "Enter")
            expect(page.locator("#title")).to_have_text("other")
            expect(page.locator("nav a[aria-current]")).to_have_text("other")
            expect(messages).to_have_count(0)
            markup = "<b>bold?</b> & <img src=x>"
            page.fill("#text", markup)
            page.press("#text", "Enter")
            expect(messages.nth(0)).to_have_text(markup)  # shown as text, never parsed as HTML
            expect(page.locator("#messages b, #messages img")).to_have_count(0)

            page.get_by_role("link", name="default").click()
            expect(page.locator("nav a[aria-current]")).to_have_text("default")
            expect(messages).to_have_text(first_exchange)
            expect(page.locator("#status")).to_have_text("")
        finally:
            browser.close()
