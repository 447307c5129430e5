"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): logging in,
counts and charts moving live, a failed task's traceback, requeueing it from the dead
letters until it succeeds, what a read-only session sees, and no console error anywhere.

One browser for the module; each test a fresh context (no cookies) against its own daemon.
``UI_SCREENSHOTS=1`` writes each page's screenshot to docs/screenshots/ (not a ``TASKQUEUE_``
name: conftest clears those).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ADMIN_TOKEN, READ_TOKEN, SLOW_REAPER
from broker_helpers import register_worker
from playwright.sync_api import Browser, Request, expect, sync_playwright
from ui_helpers import (
    Tab,
    api_client,
    launch,
    open_tab,
    run_in_daemon,
    threaded_server,
    token_settings,
    wait_for,
)

from taskqueue.daemon.runtime import Mode
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl

#: The first load of the dashboard, everything it fetches included, must stay under this.
FIRST_LOAD_LIMIT = 200 * 1024


#: Set when the test has "fixed the bug": ``ui.flaky`` tasks fail until then.
FIXED = threading.Event()


async def flaky(ctx: TaskContext) -> dict[str, bool]:
    if not FIXED.is_set():
        raise RuntimeError("the bug is not fixed yet")
    return {"fixed": True}


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("ui.flaky", flaky)


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
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        open_tab(browser, server) as tab,
    ):
        tab.goto("/ui/login")
        tab.screenshot("login")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        pending = page.locator('[data-state="pending"] .n')
        expect(pending).to_have_text("0")
        expect(page.locator("#live")).to_have_text("live")
        with api_client(server) as api:
            for _ in range(5):  # a type no worker serves: they stay pending
                submit(api, "report.build")
            for n in range(20):  # the worker runs these
                submit(api, "echo", payload={"n": n})
        expect(pending).to_have_text("5")
        expect(page.locator('[data-state="succeeded"] .n')).to_have_text("20")
        expect(page.locator("[data-workers]")).to_have_text("1 worker")
        expect(page.locator('tr[data-type="report.build"] td').nth(1)).to_have_text("5")
        chart = page.locator('[data-chart="throughput"]')
        wait_for(
            lambda: float(chart.get_attribute("data-peak_submitted") or 0) > 0,
            "the throughput chart to show the submissions",
        )
        expect(page.locator("[data-redis]")).to_have_text("ok")
        assert page.get_by_role("button", name="Log out").is_visible()
        tab.screenshot("overview")
        background = "getComputedStyle(document.body).backgroundColor"
        light = page.evaluate(background)
        page.emulate_media(color_scheme="dark")  # as the system setting says
        assert page.evaluate(background) != light
        tab.screenshot("overview-dark")
        page.emulate_media(color_scheme="light")
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


def submit(api: httpx.Client, task_type: str, **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"type": task_type, **fields})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def state_of(api: httpx.Client, task_id: str) -> str:
    state: str = api.get(f"/api/v1/tasks/{task_id}").json()["state"]
    return state


def test_failed_task_traceback_then_requeue_until_it_succeeds(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    FIXED.clear()
    plugins = (sys.modules[__name__],)
    with (
        threaded_server(redis_url, mode=Mode.RUN, plugins=plugins, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        task_id = submit(api, "ui.flaky", max_retries=0, payload={"order": 42})
        wait_for(lambda: state_of(api, task_id) == "dead", "the task to die")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        page.get_by_role("link", name="Dead letters").click()
        row = page.locator(f'tr[data-task="{task_id}"]')
        expect(row).to_contain_text("RuntimeError")
        expect(page.locator("#count")).to_contain_text("1 dead task")
        tab.screenshot("dead-letters")

        row.get_by_role("link").click()
        page.wait_for_url(f"**/ui/tasks/{task_id}")
        expect(page.locator("#traceback")).to_contain_text("the bug is not fixed yet")
        expect(page.locator("#traceback")).to_contain_text("Traceback")
        expect(page.locator("#payload")).to_contain_text('"order": 42')
        expect(page.locator("#task-state")).to_have_text("dead")
        tab.screenshot("task")

        FIXED.set()
        page.go_back()
        page.locator(f'tr[data-task="{task_id}"]').get_by_role("button", name="Requeue").click()
        expect(page.locator("#toast")).to_have_text("Requeued 1 task.")
        expect(page.get_by_text("No dead letters.")).to_be_visible()
        wait_for(lambda: state_of(api, task_id) == "succeeded", "the requeued task to succeed")
        tab.goto(f"/ui/tasks/{task_id}")
        expect(page.locator("#task-state")).to_have_text("succeeded")
        expect(page.locator("#result")).to_contain_text('"fixed": true')


def test_tasks_filter_page_and_search(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        ids = [submit(api, "report.build") for _ in range(60)]
        other = submit(api, "mail.send", priority="high")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        page.get_by_role("link", name="Tasks", exact=True).click()
        expect(page.locator("#count")).to_have_text("61 tasks pending")
        expect(page.locator("tbody tr")).to_have_count(50)  # one page of 50
        page.get_by_role("button", name="Next →").click()
        expect(page.locator("tbody tr")).to_have_count(11)
        page.get_by_role("button", name="← Previous").click()
        expect(page.locator("tbody tr")).to_have_count(50)
        tab.screenshot("tasks")

        page.get_by_label("Type").fill("mail.send")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/ui/tasks?state=pending&type=mail.send")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.locator(f'tr[data-task="{other}"]')).to_contain_text("high")

        page.get_by_label("Find a task by id").fill(ids[7])
        page.get_by_label("Find a task by id").press("Enter")
        page.wait_for_url(f"**/ui/tasks/{ids[7]}")
        expect(page.locator("#task-state")).to_have_text("pending")
        page.get_by_role("button", name="Cancel task").click()
        expect(page.locator("#task-state")).to_have_text("cancelled")
        assert state_of(api, ids[7]) == "cancelled"


def test_the_task_page_shows_group_headers_and_deadline(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        grouped = submit(
            api, "report.build", group="acme", headers={"x-tenant": "7"}, expires_in=3600
        )
        plain = submit(api, "report.build")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        tab.goto(f"/ui/tasks/{grouped}")
        expect(page.locator("#task-group")).to_have_text("acme")
        expect(page.locator("#headers")).to_contain_text('"x-tenant": "7"')
        expect(page.locator("#task-deadline")).not_to_have_text("—")
        tab.goto(f"/ui/tasks/{plain}")
        expect(page.locator("#task-state")).to_have_text("pending")
        expect(page.locator("#task-group")).to_have_text("—")
        expect(page.locator("#task-deadline")).to_have_text("—")
        expect(page.locator("#headers")).to_have_count(0)


def test_the_overview_shows_the_top_groups_by_backlog(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        tab.login(ADMIN_TOKEN)
        page = tab.page
        tab.goto("/ui/")
        expect(page.locator("#groups")).to_be_hidden()  # no grouped task: no card
        for group, count in (("globex", 3), ("acme", 1)):
            for _ in range(count):
                submit(api, "report.build", group=group)
        tab.goto("/ui/")
        expect(page.locator('[data-groups-of="report.build"]')).to_contain_text("2 waiting")
        expect(page.locator('[data-group="report.build/globex"]')).to_contain_text("3")
        expect(page.locator("#groups tbody tr")).to_have_count(3)  # the type, then its groups
        rows = page.locator("#groups tbody tr")
        expect(rows.nth(1)).to_contain_text("globex")  # most pending first
        expect(rows.nth(2)).to_contain_text("acme")


def test_search_opens_a_task_by_its_idempotency_key(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        by_key = submit(api, "report.build", idempotency_key="order-1234")
        # A UUID is a common key: one that is no task's id is looked up as a key.
        uuid_key = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
        by_uuid_key = submit(api, "report.build", idempotency_key=uuid_key)
        tab.login(ADMIN_TOKEN)
        page = tab.page
        tab.goto("/ui/tasks")
        search = page.get_by_label("Find a task by id or idempotency key")
        search.fill("order-1234")
        search.press("Enter")
        page.wait_for_url(f"**/ui/tasks/{by_key}")
        expect(page.locator("#task-state")).to_have_text("pending")

        tab.goto("/ui/tasks")
        search.fill(uuid_key)
        search.press("Enter")
        page.wait_for_url(f"**/ui/tasks/{by_uuid_key}")

        tab.goto("/ui/tasks")
        search.fill("order-9999")
        search.press("Enter")
        expect(page.get_by_role("alert")).to_have_text(
            "No task has the id or idempotency key “order-9999”."
        )
        assert page.url.endswith("/ui/tasks")
        # Chromium logs every 404 fetch: the UUID key's miss as an id, and the unknown key's.
        missed = "Failed to load resource: the server responded with a status of 404 (Not Found)"
        assert [e.split(": ", 1)[1] for e in tab.errors] == [missed, missed]
        tab.errors.clear()


def test_workers_page_and_keyboard(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        open_tab(browser, server) as tab,
    ):
        tab.login(ADMIN_TOKEN)
        page = tab.page
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        workers = page.get_by_role("link", name="Workers")
        workers.focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/workers")
        expect(workers).to_have_attribute("aria-current", "page")
        row = page.locator("tr[data-worker]")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(str(os.getpid()))
        expect(row).to_contain_text("echo")
        expect(page.locator("#count")).to_contain_text("1 worker")
        tab.screenshot("workers")


def test_a_silent_worker_shows_dead_on_the_workers_page_and_the_overview(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **SLOW_REAPER, **settings) as server,
        open_tab(browser, server) as tab,
    ):
        run_in_daemon(server, register_worker, server.broker, "w-live", 1.0)
        run_in_daemon(server, register_worker, server.broker, "w-dead", 1000.0)
        tab.login(ADMIN_TOKEN)
        page = tab.page
        expect(page.locator("[data-workers]")).to_have_text("1 worker")
        expect(page.locator("[data-dead-workers]")).to_have_text(" (1 dead)")
        tab.goto("/ui/workers")
        expect(page.locator('tr[data-worker="w-dead"]')).to_have_attribute(
            "data-worker-state", "dead"
        )
        expect(page.locator('tr[data-worker="w-dead"] .badge')).to_have_text("dead")
        expect(page.locator('tr[data-worker="w-live"] .badge')).to_have_text("live")
        expect(page.locator("#count")).to_have_text(
            "1 worker, 0 of 8 slots busy; 1 dead (silent over 15 min 0 s)"
        )
        tab.screenshot("workers-dead")


def test_a_read_only_session_sees_no_action_and_cannot_act(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        pending = submit(api, "report.build")  # no worker serves it: it stays pending
        dead = submit(api, "fail", max_retries=0)
        wait_for(lambda: state_of(api, dead) == "dead", "the task to die")
        tab.login(READ_TOKEN)
        page = tab.page
        expect(page.locator("#scope")).to_have_text("read-only")
        tab.goto(f"/ui/tasks/{pending}")
        expect(page.locator("#task-state")).to_have_text("pending")
        assert page.get_by_role("button").count() == 1  # log out, and nothing else
        tab.goto(f"/ui/tasks/{dead}")
        expect(page.locator("#task-state")).to_have_text("dead")
        assert page.get_by_role("button").count() == 1
        tab.goto("/ui/dead-letters")
        expect(page.locator(f'tr[data-task="{dead}"]')).to_contain_text("task failed on purpose")
        for name in ("Cancel task", "Requeue", "Requeue all", "Purge all", "Requeue selected"):
            assert page.get_by_role("button", name=name).count() == 0, name
        # Forged: the read session's own cookie and CSRF token, sent as the page would.
        headers = {"Cookie": tab.cookie_header(), "X-CSRF-Token": tab.csrf()}
        with httpx.Client(base_url=server.url, headers=headers) as forger:
            assert forger.post(f"/api/v1/tasks/{pending}/cancel").status_code == 403
            assert forger.post("/api/v1/dead-letters/requeue").status_code == 403
            assert forger.delete("/api/v1/dead-letters").status_code == 403
        assert state_of(api, pending) == "pending"


def test_dead_letters_requeue_all_of_a_type_and_purge_after_confirming(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        dead = [submit(api, "fail", max_retries=0) for _ in range(3)]
        wait_for(lambda: all(state_of(api, t) == "dead" for t in dead), "the tasks to die")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        tab.goto("/ui/dead-letters?type=fail")
        expect(page.locator("#count")).to_have_text("3 dead tasks of type fail")
        page.get_by_role("button", name="Requeue all fail").click()
        page.get_by_role("dialog").get_by_role("button", name="Requeue them").click()
        expect(page.locator("#toast")).to_have_text("Requeued 3.")
        wait_for(lambda: api.get("/api/v1/queues").json()["totals"]["requeued"] == 3, "requeues")
        wait_for(lambda: all(state_of(api, t) == "dead" for t in dead), "them to die again")

        page.get_by_role("button", name="Purge all fail").click()
        page.get_by_role("dialog").get_by_role("button", name="Go back").click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        page.reload()
        expect(page.locator("#count")).to_have_text("3 dead tasks of type fail")
        page.get_by_role("button", name="Purge all fail").click()
        page.get_by_role("dialog").get_by_role("button", name="Purge them").click()
        expect(page.locator("#toast")).to_have_text("Purged 3.")
        expect(page.get_by_text("No dead letters.")).to_be_visible()
        assert api.get("/api/v1/queues").json()["by_state"]["dead"] == 0


def test_schedules_listed_paused_resumed_created_and_deleted(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        beat = {"type": "echo", "every": 1, "payload": "ping", "missed": "once"}
        assert api.put("/api/v1/schedules/heartbeat", json=beat).status_code == 201
        nightly = {"type": "report.build", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}
        assert api.put("/api/v1/schedules/nightly-report", json=nightly).status_code == 201
        wait_for(lambda: schedule(api, "heartbeat")["last_task_state"], "the schedule to fire")
        tab.login(ADMIN_TOKEN)
        page = tab.page
        page.get_by_role("link", name="Schedules").click()
        page.wait_for_url("**/ui/schedules")
        expect(page.locator("#count")).to_have_text("2 schedules")
        row = page.locator('tr[data-schedule="heartbeat"]')
        expect(row).to_contain_text("every 1 s")
        expect(row).to_contain_text("once")
        expect(row.get_by_role("link", name="succeeded")).to_be_visible(timeout=15_000)
        nightly_row = page.locator('tr[data-schedule="nightly-report"]')
        expect(nightly_row).to_contain_text("0 3 * * * Europe/Berlin")
        expect(nightly_row.locator("time")).to_have_count(1)  # the next run; it never ran
        tab.screenshot("schedules")

        row.get_by_role("button", name="Pause").click()
        expect(page.locator("#toast")).to_have_text("Paused heartbeat.")
        expect(row.locator("[data-paused]")).to_have_attribute("data-paused", "true")
        assert schedule(api, "heartbeat")["paused"] is True
        row.get_by_role("button", name="Resume").click()
        expect(row.locator("[data-paused]")).to_have_attribute("data-paused", "false")
        assert schedule(api, "heartbeat")["paused"] is False

        page.get_by_label("Name").fill("weekly")
        page.get_by_label("Type", exact=True).fill("report.build")
        page.get_by_label("Cron").fill("not a cron")
        page.get_by_role("button", name="Create").click()
        expect(page.locator("#schedule-error")).to_contain_text("cron")
        expect_refused(tab)
        page.get_by_label("Cron").fill("0 6 * * 1")
        page.get_by_label("Payload (JSON)").fill('{"weeks": 1}')
        page.get_by_role("button", name="Create").click()
        expect(page.locator('tr[data-schedule="weekly"]')).to_contain_text("0 6 * * 1 UTC")
        assert schedule(api, "weekly")["spec"]["payload"] == {"weeks": 1}

        nightly_row.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Go back").click()
        expect(nightly_row).to_have_count(1)
        nightly_row.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete it").click()
        expect(nightly_row).to_have_count(0)
        assert api.get("/api/v1/schedules/nightly-report").status_code == 404


def expect_refused(tab: Tab) -> None:
    """The one console error a refused form leaves (Chromium logs every 4xx fetch), cleared."""
    refused = (
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    )
    assert [e.split(": ", 1)[1] for e in tab.errors] == [refused]
    tab.errors.clear()


def schedule(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/schedules/{name}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def live_policy(api: httpx.Client, task_type: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/policy/{task_type}")
    assert response.status_code == 200, response.text
    live: dict[str, Any] = response.json()["live"]
    return live


def test_limits_pause_a_type_and_set_its_limits_from_the_form(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, mode=Mode.RUN, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        # A live setting the page's changes must keep: it rewrites the type's live layer.
        assert api.put("/api/v1/policy/report.build", json={"max_queue_depth": 50}).is_success
        for _ in range(3):
            submit(api, "report.build")  # no worker serves it: it stays pending
        assert api.put("/api/v1/policy/echo", json={"rate_limit": "1/h"}).is_success
        for n in range(3):  # the first runs, the rate holds the others
            submit(api, "echo", payload=n)
        wait_for(
            lambda: api.get("/api/v1/queues").json()["held_by_limit"].get("echo") == "rate",
            "the rate to hold echo back",
        )
        tab.login(ADMIN_TOKEN)
        page = tab.page
        expect(page.locator('tr[data-type="echo"] [data-held]')).to_have_text(" (held by rate)")
        page.get_by_role("link", name="Limits").click()
        page.wait_for_url("**/ui/limits")
        echo = page.locator('tr[data-type="echo"]')
        expect(echo.locator('[data-limit="rate_limit"]')).to_have_text("1/h")
        expect(echo.locator("[data-held]")).to_have_attribute("data-held", "rate")
        row = page.locator('tr[data-type="report.build"]')
        expect(row).to_contain_text("3")

        row.get_by_role("button", name="Pause").click()
        expect(page.locator("#toast")).to_have_text("Paused report.build.")
        expect(row).to_have_attribute("data-paused", "true")
        assert live_policy(api, "report.build") == {"max_queue_depth": 50, "paused": True}

        row.get_by_role("button", name="Edit limits").click()
        expect(page.get_by_label("Type", exact=True)).to_have_value("report.build")
        page.get_by_label("Rate limit").fill("100/s")
        page.get_by_label("Burst").fill("10")
        page.get_by_label("Concurrency").fill("5")
        page.get_by_label("Per group").fill("2")
        page.get_by_label("Group rate").fill("10/min")
        page.get_by_role("button", name="Save limits").click()
        expect(page.locator("#toast")).to_have_text("Saved the limits of report.build.")
        expect(row.locator('[data-limit="rate_limit"]')).to_have_text("100/s")
        expect(row.locator('[data-limit="concurrency"]')).to_have_text("5")
        expect(row.locator('[data-limit="group_concurrency"]')).to_have_text("2")
        expect(row.locator('[data-limit="group_rate_limit"]')).to_have_text("10/min")
        assert live_policy(api, "report.build") == {
            "max_queue_depth": 50,
            "paused": True,
            "rate_limit": "100/s",
            "rate_burst": 10,
            "concurrency": 5,
            "group_concurrency": 2,
            "group_rate_limit": "10/min",
        }
        tab.screenshot("limits")

        page.get_by_label("Rate limit").fill("5/x")
        page.get_by_role("button", name="Save limits").click()
        expect(page.locator("#limits-error")).to_contain_text("'5/x' is not a rate")
        expect_refused(tab)
        assert live_policy(api, "report.build")["rate_limit"] == "100/s"
        page.get_by_label("Rate limit").fill("")  # empty: cleared
        page.get_by_label("Concurrency").fill("")
        page.get_by_label("Per group").fill("")
        page.get_by_label("Group rate").fill("")
        page.get_by_role("button", name="Save limits").click()
        expect(page.locator("#limits-error")).to_have_text("")
        expect(row.locator('[data-limit="rate_limit"]')).to_have_text("—")
        row.get_by_role("button", name="Resume").click()
        expect(row).to_have_attribute("data-paused", "false")
        assert live_policy(api, "report.build") == {"max_queue_depth": 50, "rate_burst": 10}

        tab.goto("/ui/")
        expect(page.locator('tr[data-type="echo"]')).to_contain_text("1/h")


def test_a_read_only_session_sees_no_action_on_schedules_and_limits(
    browser: Browser, redis_url: str, settings: dict[str, Any]
) -> None:
    with (
        threaded_server(redis_url, **settings) as server,
        api_client(server) as api,
        open_tab(browser, server) as tab,
    ):
        nightly = {"type": "report.build", "cron": "0 3 * * *"}
        assert api.put("/api/v1/schedules/nightly-report", json=nightly).status_code == 201
        assert api.put("/api/v1/policy/report.build", json={"rate_limit": "5/s"}).is_success
        tab.login(READ_TOKEN)
        page = tab.page
        tab.goto("/ui/schedules")
        expect(page.locator('tr[data-schedule="nightly-report"]')).to_contain_text("report.build")
        assert page.get_by_role("button").count() == 1  # log out, and nothing else
        assert page.locator("form input").count() == 0
        tab.goto("/ui/limits")
        row = page.locator('tr[data-type="report.build"]')
        expect(row.locator('[data-limit="rate_limit"]')).to_have_text("5/s")
        assert page.get_by_role("button").count() == 1
        assert page.locator("form input").count() == 0
        headers = {"Cookie": tab.cookie_header(), "X-CSRF-Token": tab.csrf()}
        with httpx.Client(base_url=server.url, headers=headers) as forger:
            assert forger.post("/api/v1/schedules/nightly-report/pause").status_code == 403
            assert (
                forger.put("/api/v1/policy/report.build", json={"paused": True}).status_code == 403
            )
        assert schedule(api, "nightly-report")["paused"] is False
        assert live_policy(api, "report.build") == {"rate_limit": "5/s"}
