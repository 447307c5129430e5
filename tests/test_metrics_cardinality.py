"""A submitter cannot grow the metrics (issue 15, item 5): a task type is a label value only
once a worker registered it (the served-types hash its heartbeat writes, or this process's own
worker); every other type is counted under the one value ``_other``. Through ``/metrics`` on
a real daemon."""

from __future__ import annotations

import time

import httpx
from api_helpers import api_server
from broker_helpers import worker_info
from test_metrics import Scrape, post_task, scrape

from taskqueue.daemon.runtime import Mode
from taskqueue.metrics import OTHER_TYPE

MADE_UP = 300


def type_labels(metrics: Scrape, name: str) -> set[str]:
    return {dict(labels)["type"] for sample, labels in metrics.samples if sample == name}


async def test_made_up_types_fold_into_one_label_value(redis_url: str) -> None:
    async with (
        api_server(redis_url, mode=Mode.RUN, worker__id="cardinality") as server,
        server.client() as client,
    ):
        for n in range(MADE_UP):
            await post_task(client, type=f"made.up.{n}", priority="low")
        await post_task(client, type="echo", priority="low")  # the worker registered echo
        metrics = await scrape(client)

    submitted = "taskqueue_tasks_submitted_total"
    assert type_labels(metrics, submitted) == {"echo", OTHER_TYPE}
    assert metrics.value(submitted, type=OTHER_TYPE, priority="low") == MADE_UP
    assert metrics.value(submitted, type="echo", priority="low") == 1
    for family in metrics.families:
        for sample in family.samples:
            assert not sample.labels.get("type", "").startswith("made.up"), sample


async def test_a_type_another_worker_registered_gets_its_own_label(redis_url: str) -> None:
    """An API-only daemon runs no tasks: it learns the served types from Redis with each
    scrape, and from enqueue.lua's answer (which says whether a live worker serves the type)."""
    async with api_server(redis_url) as server, server.client() as client:
        await post_task(client, type="resize")  # nobody serves it yet: one of the others
        first = await scrape(client)
        now_ms = int(time.time() * 1000)
        await server.broker.heartbeat(worker_info("elsewhere", now_ms, ("resize",)), [])
        second = await scrape(client)  # learns from the served hash
        await post_task(client, type="resize")
        third = await scrape(client)

    submitted = "taskqueue_tasks_submitted_total"
    assert first.nonzero(submitted) == {("medium", OTHER_TYPE): 1}
    assert second.nonzero(submitted) == {("medium", OTHER_TYPE): 1}
    assert third.nonzero(submitted) == {("medium", OTHER_TYPE): 1, ("medium", "resize"): 1}


async def test_the_label_is_learnt_from_the_submission_itself(redis_url: str) -> None:
    async with api_server(redis_url) as server:
        now_ms = int(time.time() * 1000)
        await server.broker.heartbeat(worker_info("elsewhere", now_ms, ("thumbs",)), [])
        async with httpx.AsyncClient(base_url=server.url) as client:
            await post_task(client, type="thumbs")  # before any scrape
            metrics = await scrape(client)
    assert metrics.nonzero("taskqueue_tasks_submitted_total") == {("medium", "thumbs"): 1}
