"""Helpers for the dashboard's browser tests: a daemon in a thread of its own, Debian's
Chromium driven by Playwright, logging in, and screenshots for the README.

Playwright's sync API runs its own event loop in the test's thread, so the daemon runs in
another (its own ``trio.run``) and the tests are plain functions: they wait with Playwright's
waits and :func:`wait_for`, which polls under a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
import trio
from api_helpers import ADMIN_TOKEN, READ_TOKEN, ApiServer, api_server
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

from taskqueue.api.auth import hash_token

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: Set (to anything but "" or "0") to write each page's screenshot to docs/screenshots/.
SCREENSHOTS_ENV = "UI_SCREENSHOTS"


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; a skip where it is not installed, but a failure in CI
    (``CI=true``), where .ci/run installs it: the browser tests must never silently go."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=str(CHROMIUM))


@contextmanager
def threaded_server(redis_url: str, **settings: Any) -> Iterator[ApiServer]:
    """:func:`api_server` running in a thread of its own for the ``with`` block."""
    started: queue.Queue[tuple[ApiServer, trio.lowlevel.TrioToken, trio.Event] | BaseException]
    started = queue.Queue()

    async def serve() -> None:
        stop = trio.Event()
        async with api_server(redis_url, **settings) as server:
            started.put((server, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:
            started.put(exc)

    thread = threading.Thread(target=run, name="daemon", daemon=True)
    thread.start()
    item = started.get(timeout=30)
    if isinstance(item, BaseException):
        raise item
    server, token, stop = item
    _TOKENS[id(server)] = token
    try:
        yield server
    finally:
        del _TOKENS[id(server)]
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=30)


#: The trio token of each :func:`threaded_server` running, by the id of its server.
_TOKENS: dict[int, trio.lowlevel.TrioToken] = {}


def run_in_daemon(server: ApiServer, function: Callable[..., Awaitable[T]], *args: object) -> T:
    """``await function(*args)`` in the thread of ``server`` (a :func:`threaded_server`), where
    its broker lives, and its result."""
    return trio.from_thread.run(function, *args, trio_token=_TOKENS[id(server)])


def token_settings(tmp_path: Path) -> dict[str, Any]:
    """Settings for an admin token and a read-only one (a token file)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{hash_token(ADMIN_TOKEN)} admin\n{hash_token(READ_TOKEN)} read\n")
    return {"server__token_file": str(tokens)}


def api_client(server: ApiServer, token: str = ADMIN_TOKEN) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@attrs.define
class Tab:
    """A browser page of the dashboard, and the console errors it logged."""

    context: BrowserContext
    page: Page
    base: str
    errors: list[str] = attrs.field(factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def login(self, token: str) -> None:
        self.goto("/ui/")
        self.page.wait_for_url("**/ui/login")
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/ui/")

    def screenshot(self, name: str) -> None:
        if os.environ.get(SCREENSHOTS_ENV, "") not in ("", "0"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def cookie_header(self) -> str:
        return "; ".join(f"{c['name']}={c['value']}" for c in self.context.cookies())

    def csrf(self) -> str:
        value = self.page.locator('meta[name="taskqueue-csrf"]').get_attribute("content")
        assert value is not None
        return value


@contextmanager
def open_tab(browser: Browser, server: ApiServer, **options: Any) -> Iterator[Tab]:
    """A fresh browser context (no cookies) at 1280x800; fails if any console error shows."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    tab = Tab(context, page, server.url)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.errors.append(f"{page.url}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: tab.errors.append(f"{page.url}: {error}"))
    try:
        yield tab
        page.close()  # ends its event streams before the daemon stops
        assert not tab.errors, "\n".join(tab.errors)
    finally:
        context.close()


def wait_for(check: Callable[[], object], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)
