"""The overview under load: while tasks go through a daemon as fast as this machine lets a
bulk submitter push them (2,000/s asked, in batches), the page's live counters keep moving
and its main thread is never blocked long.

Nothing here times our code: it asserts that the page keeps responding (counter changes keep
arriving over the event stream, no long task over :data:`LONG_TASK_LIMIT_MS`), however many
tasks per second the box manages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN
from playwright.sync_api import Browser, sync_playwright
from ui_helpers import launch, open_tab, threaded_server, token_settings

from taskqueue import SyncClient
from taskqueue.broker import Submission
from taskqueue.daemon.runtime import Mode

#: Tasks per bulk submission; the submitter asks for :data:`RATE` a second.
BATCH = 200
RATE = 2000
#: How many times the succeeded counter must change, each within :data:`CHANGE_WITHIN_MS`.
CHANGES = 8
CHANGE_WITHIN_MS = 5000
#: The longest task the page's main thread may run (a PerformanceObserver's "longtask").
LONG_TASK_LIMIT_MS = 500

#: Counts the counter's changes and the page's long tasks, from the first paint on.
WATCH = """() => {
  window.__load = { changes: 0, longest: 0, longTasks: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__load.longTasks += 1;
      window.__load.longest = Math.max(window.__load.longest, entry.duration);
    }
  }).observe({ type: "longtask", buffered: true });
  const cards = document.querySelector("main");
  new MutationObserver(() => {
    const n = document.querySelector('[data-state="succeeded"] .n')?.textContent;
    if (n !== window.__load.last) { window.__load.last = n; window.__load.changes += 1; }
  }).observe(cards, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def drive(client: SyncClient, stop: threading.Event) -> int:
    """Submit ``noop`` tasks in batches at up to :data:`RATE` a second until ``stop``; how many.
    The pacing waits on ``stop`` itself, so stopping never waits out a pause."""
    batch = [Submission(type="noop") for _ in range(BATCH)]
    sent = 0
    while not stop.is_set():
        client.submit_many(batch)
        sent += BATCH
        stop.wait(BATCH / RATE / 4)  # the submit's own round trip takes most of the budget
    return sent


def test_the_overview_keeps_updating_under_a_flood_of_tasks(
    browser: Browser, redis_url: str, tmp_path: Path
) -> None:
    settings: dict[str, Any] = token_settings(tmp_path)
    stop = threading.Event()
    sent: list[int] = []
    with (
        threaded_server(redis_url, mode=Mode.RUN, worker__concurrency=200, **settings) as server,
        open_tab(browser, server) as tab,
        SyncClient(redis_url, settings=server.broker.settings) as client,
    ):
        tab.login(ADMIN_TOKEN)
        page = tab.page
        page.locator('[data-state="succeeded"] .n').wait_for()
        page.evaluate(WATCH)
        submitter = threading.Thread(target=lambda: sent.append(drive(client, stop)))
        submitter.start()
        try:
            for seen in range(1, CHANGES + 1):
                page.wait_for_function(
                    "(n) => window.__load.changes >= n", arg=seen, timeout=CHANGE_WITHIN_MS
                )
        finally:
            stop.set()
            submitter.join(timeout=30)
        load = page.evaluate("window.__load")
        print(f"submitted {sent}, page: {load}")
        assert sent and sent[0] >= BATCH
        assert load["longest"] <= LONG_TASK_LIMIT_MS, load
