"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): logging in,
counts and charts moving live, a failed task's traceback, requeueing it from the dead
letters until it succeeds, what a read-only session sees, and no console error anywhere.

One browser for the module; each test a fresh context (no cookies) against its own daemon.
``UI_SCREENSHOTS=1`` writes each page's screenshot to docs/screenshots/ (not a ``TASKQUEUE_``
name: conftest clears those).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN
from playwright.sync_api import Browser, Request, expect, sync_playwright
from ui_helpers import api_client, launch, open_tab, threaded_server, token_settings, wait_for

from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl

#: The first load of the dashboard, everything it fetches included, must stay under this.
FIRST_LOAD_LIMIT = 200 * 1024


class Flaky:
    """The ``ui.flaky`` task type: fails until the test "fixes the bug"."""

    fixed = threading.Event()

    @staticmethod
    async def run(ctx: TaskContext) -> dict[str, bool]:
        if not Flaky.fixed.is_set():
            raise RuntimeError("the bug is not fixed yet")
        return {"fixed": True}

    @staticmethod
    @hookimpl
    def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
        registry.add("ui.flaky", Flaky.run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    return token_settings(tmp_path)


def test_login_then_counts_and_chart_move_live(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with threaded_server(redis_url, **settings) as server, open_tab(browser, server) as tab:
        tab.goto("/ui/login")
        tab.screenshot("login")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        pending = page.locator('[data-state="pending"] .n')
        expect(pending).to_have_text("0")
        expect(page.locator("#live")).to_have_text("live")
        with api_client(server) as api:
            for _ in range(5):  # a type no worker serves: they stay pending
                assert api.post("/api/v1/tasks", json={"type": "report.build"}).status_code == 201
        expect(pending).to_have_text("5")
        expect(page.locator('tr[data-type="report.build"] td').nth(1)).to_have_text("5")
        chart = page.locator('[data-chart="throughput"]')
        wait_for(
            lambda: float(chart.get_attribute("data-peak_submitted") or 0) > 0,
            "the throughput chart to show the submissions",
        )
        expect(page.locator("[data-redis]")).to_have_text("ok")
        assert page.get_by_role("button", name="Log out").is_visible()
        tab.screenshot("overview")
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        tab.screenshot("overview-phone")


def test_first_load_is_small(browser: Browser, redis_url: str, settings: dict[str, Any]) -> None:
    with threaded_server(redis_url, **settings) as server:
        with open_tab(browser, server) as tab:
            tab.login(ADMIN_TOKEN)
            state = tab.context.storage_state()
        with open_tab(browser, server, storage_state=state) as tab:
            loaded: list[int] = []

            def finished(request: Request) -> None:
                sizes = request.sizes()
                loaded.append(sizes["responseBodySize"] + sizes["responseHeadersSize"])

            tab.page.on("requestfinished", finished)
            tab.goto("/ui/")
            expect(tab.page.locator('[data-state="pending"] .n')).to_have_text("0")
            expect(tab.page.locator("[data-workers]")).to_be_visible()
            assert len(loaded) >= 8  # the page, its styles, scripts and icon, the API's JSON
            total = sum(loaded)
            print(f"first load: {len(loaded)} responses, {total} bytes")
            assert total < FIRST_LOAD_LIMIT
