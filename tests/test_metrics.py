"""Prometheus metrics scraped from live daemons over real sockets.

The main story: a daemon running API and worker is given a known mix of tasks through its REST
API (succeeded, failed then retried, dead-lettered, timed out, cancelled while running and while
waiting, plus some left waiting and one left running), and one scrape of ``/metrics`` must show
every counter at its exact value, the histograms' counts, and queue depths that match the broker.
Then: the exposition parses with prometheus-client's own parser and its names follow the
conventions; gRPC calls are counted like REST ones; a worker-only daemon serves its metrics on
``metrics.port``; the Redis client's error and reconnect hooks feed their counters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ApiServer, api_server
from conftest import FakeClock, MakeBroker
from daemon_helpers import (
    daemon_config,
    running_daemon,
    wait_for_state,
    wait_until,
)
from grpc_helpers import Target, grpc_call, raw_call
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.api.grpc.framing import frame
from taskqueue.broker import Submission
from taskqueue.daemon.reaper import Reaper
from taskqueue.daemon.runtime import Mode
from taskqueue.embedded import EmbeddedRedis
from taskqueue.health import Health
from taskqueue.metrics import DURATION_BUCKETS, Metrics
from taskqueue.models import Priority, TaskState
from taskqueue.redis import Redis, RedisConnectionError, ResponseError

#: A well-formed task id that names no task.
MISSING_ID = "00000000-0000-7000-8000-000000000000"

# -- reading a scrape ---------------------------------------------------------------------------

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One exposition, parsed by prometheus-client's parser, with lookups by sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in self.families:
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; a missing sample fails the test, naming what was there."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            near = sorted(str(dict(k[1])) for k in self.samples if k[0] == name)
            raise AssertionError(f"no sample {name}{labels}; there are: {near}")
        return self.samples[key]

    def nonzero(self, name: str) -> dict[tuple[str, ...], float]:
        """Every non-zero sample called ``name``, keyed by its label values (sorted by name)."""
        out: dict[tuple[str, ...], float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == name and value:
                out[tuple(v for _, v in sorted(labels))] = value
        return out

    def family(self, name: str) -> list[Sample]:
        for family in self.families:
            if family.name == name:
                return list(family.samples)
        raise AssertionError(f"no metric family {name}")


async def scrape(client: httpx.AsyncClient, url: str = "/metrics") -> Scrape:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


# -- the story ----------------------------------------------------------------------------------


async def post_task(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


async def wait_until_started(server: ApiServer, task_id: str) -> None:
    """Until the worker has handed ``task_id`` to its processor (not merely claimed it)."""
    consumer = server.daemon.consumer
    assert consumer is not None

    async def started() -> bool:
        running = consumer.running.get(task_id)
        return running is not None and running.started

    await wait_until(started, f"task {task_id} runs")


async def test_scrape_after_a_known_mix_of_outcomes_shows_exact_counts_and_depths(
    redis_url: str,
) -> None:
    async with (
        api_server(redis_url, mode=Mode.RUN, worker__id="metrics-worker") as server,
        server.client() as client,
    ):
        broker = server.broker
        succeeded = [
            await post_task(client, type="echo", payload=n, priority="high") for n in (1, 2, 3)
        ]
        # No priority: the type's default (the built-ins register none, so medium).
        retried = await post_task(
            client, type="fail", payload={"succeed_on_attempt": 2}, max_retries=1
        )
        dead = await post_task(client, type="fail", max_retries=0, priority="low")
        timed_out = await post_task(
            client,
            type="sleep",
            payload={"seconds": 30},
            timeout=0.2,
            max_retries=0,
            priority="critical",
        )
        cancelled_running = await post_task(
            client, type="sleep", payload={"seconds": 30}, priority="high"
        )
        cancelled_waiting = await post_task(client, type="sleep", delay=3600, priority="low")

        for task_id in [*succeeded, retried]:
            assert (await wait_for_state(broker, task_id)).state is TaskState.SUCCEEDED
        for task_id in (dead, timed_out):
            assert (await wait_for_state(broker, task_id)).state is TaskState.DEAD
        await wait_until_started(server, cancelled_running)
        response = await client.post(f"/api/v1/tasks/{cancelled_running}/cancel")
        assert response.status_code == 202
        assert (await wait_for_state(broker, cancelled_running)).state is TaskState.CANCELLED
        response = await client.post(f"/api/v1/tasks/{cancelled_waiting}/cancel")
        assert response.status_code == 200

        # Left in the queue: two nobody runs, one due in an hour, one running.
        for _ in range(2):
            await post_task(client, type="nobody.runs", priority="low")
        await post_task(client, type="echo", delay=3600, priority="medium")
        running = await post_task(
            client, type="sleep", payload={"seconds": 30}, priority="critical"
        )
        await wait_until_started(server, running)
        assert (await client.get(f"/api/v1/tasks/{MISSING_ID}")).status_code == 404
        assert (await client.get("/no/such/path")).status_code == 404

        # The worker counts an outcome when Redis has answered its report, a moment after the
        # state is visible: wait for the last one, then read everything from one scrape.
        async def all_counted() -> bool:
            counted = (await scrape(client)).nonzero("taskqueue_tasks_completed_total")
            return sum(counted.values()) == 9

        await wait_until(all_counted, "the worker has counted every outcome")
        metrics = await scrape(client)
        stats = await broker.stats()

        await client.post(f"/api/v1/tasks/{running}/cancel")  # so the drain need not wait
        await wait_for_state(broker, running)

    # Counters by (priority, type): label values sorted by label name.
    assert metrics.nonzero("taskqueue_tasks_submitted_total") == {
        ("high", "echo"): 3,
        ("medium", "echo"): 1,
        ("medium", "fail"): 1,
        ("low", "fail"): 1,
        ("critical", "sleep"): 2,
        ("high", "sleep"): 1,
        ("low", "sleep"): 1,
        ("low", "_other"): 2,  # nobody.runs: no worker registered it
    }
    assert metrics.nonzero("taskqueue_tasks_processed_total") == {
        ("high", "echo"): 3,
        ("medium", "fail"): 1,
    }
    assert metrics.nonzero("taskqueue_tasks_failed_total") == {
        ("medium", "fail"): 1,
        ("low", "fail"): 1,
        ("critical", "sleep"): 1,
    }
    assert metrics.nonzero("taskqueue_tasks_timed_out_total") == {("critical", "sleep"): 1}
    assert metrics.nonzero("taskqueue_tasks_retried_total") == {("medium", "fail"): 1}
    assert metrics.nonzero("taskqueue_tasks_dead_total") == {
        ("low", "fail"): 1,
        ("critical", "sleep"): 1,
    }
    assert metrics.nonzero("taskqueue_tasks_cancelled_total") == {
        ("high", "sleep"): 1,  # by the worker that ran it
        ("low", "sleep"): 1,  # by the API, before it ran
    }
    assert metrics.nonzero("taskqueue_tasks_completed_total") == {
        ("high", "echo"): 3,
        ("medium", "fail"): 2,
        ("low", "fail"): 1,
        ("critical", "sleep"): 1,
        ("high", "sleep"): 1,
        ("low", "sleep"): 1,
    }

    # Attempts started (wait) and ended (duration), by type; the running one has not ended.
    assert metrics.nonzero("taskqueue_task_wait_seconds_count") == {
        ("echo",): 3,
        ("fail",): 3,
        ("sleep",): 3,
    }
    assert metrics.nonzero("taskqueue_task_duration_seconds_count") == {
        ("echo",): 3,
        ("fail",): 3,
        ("sleep",): 2,
    }
    for task_type in ("echo", "fail", "sleep"):
        buckets = [
            metrics.value("taskqueue_task_duration_seconds_bucket", type=task_type, le=le)
            for le in [*(repr(b) for b in DURATION_BUCKETS), "+Inf"]
        ]
        assert buckets == sorted(buckets)
        assert buckets[-1] == metrics.value("taskqueue_task_duration_seconds_count", type=task_type)
    # The timed-out attempt alone ran its 0.2 s timeout.
    assert metrics.value("taskqueue_task_duration_seconds_sum", type="sleep") >= 0.2

    # Depths per priority and state, as the broker counts them.
    assert metrics.nonzero("taskqueue_queue_depth") == {
        ("low", "pending"): 2,
        ("medium", "scheduled"): 1,
        ("critical", "active"): 1,
        ("low", "dead"): 1,
        ("critical", "dead"): 1,
    }
    for state in (TaskState.PENDING, TaskState.SCHEDULED, TaskState.ACTIVE, TaskState.DEAD):
        assert stats.by_state[state] == sum(
            metrics.value("taskqueue_queue_depth", priority=p.value, state=state.value)
            for p in Priority
        )
    for priority in Priority:
        assert stats.pending_by_priority[priority] == metrics.value(
            "taskqueue_queue_depth", priority=priority.value, state="pending"
        )
    assert metrics.value("taskqueue_redis_up") == 1
    assert metrics.value("taskqueue_workers_active") == stats.workers == 1
    assert metrics.value("taskqueue_tasks_in_flight") == 1
    assert metrics.value("taskqueue_worker_concurrency") == 50
    assert metrics.value("taskqueue_worker_heartbeats_total") >= 1
    assert metrics.value("taskqueue_leases_reaped_total") == 0
    assert metrics.value("taskqueue_workers_cleaned_up_total") == 0

    # The API's own requests, by route template (and "unmatched" for the rest).
    requests = metrics.nonzero("taskqueue_api_requests_total")
    requests.pop(("rest", "GET", "/metrics", "200"))  # the polling scrapes
    assert requests == {
        ("rest", "POST", "/api/v1/tasks", "201"): 12,
        ("rest", "POST", "/api/v1/tasks/{task_id}/cancel", "202"): 1,
        ("rest", "POST", "/api/v1/tasks/{task_id}/cancel", "200"): 1,
        ("rest", "GET", "/api/v1/tasks/{task_id}", "404"): 1,
        ("rest", "GET", "unmatched", "404"): 1,
    }
    assert (
        metrics.value(
            "taskqueue_api_request_duration_seconds_count", api="rest", route="/api/v1/tasks"
        )
        == 12
    )


# -- the exposition -----------------------------------------------------------------------------

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_UNITS_NOT_BASE = re.compile(
    r"_(ms|milliseconds|microseconds|minutes|hours|days|kb|mb|kib|mib)(_|$)"
)


async def test_exposition_parses_and_names_follow_prometheus_conventions(redis_url: str) -> None:
    async with (
        api_server(redis_url, mode=Mode.RUN) as server,
        server.client() as client,
    ):
        task_id = await post_task(client, type="echo")
        await wait_for_state(server.broker, task_id)
        metrics = await scrape(client)

    ours = [f for f in metrics.families if not f.name.startswith(("process_", "python_"))]
    assert {f.name for f in ours} >= {
        "taskqueue_tasks_submitted",
        "taskqueue_tasks_processed",
        "taskqueue_tasks_failed",
        "taskqueue_tasks_timed_out",
        "taskqueue_tasks_retried",
        "taskqueue_tasks_dead",
        "taskqueue_tasks_cancelled",
        "taskqueue_tasks_completed",
        "taskqueue_task_duration_seconds",
        "taskqueue_task_wait_seconds",
        "taskqueue_queue_depth",
        "taskqueue_workers_active",
        "taskqueue_worker_heartbeats",
        "taskqueue_workers_cleaned_up",
        "taskqueue_tasks_in_flight",
        "taskqueue_worker_concurrency",
        "taskqueue_leases_reaped",
        "taskqueue_api_requests",
        "taskqueue_api_request_duration_seconds",
        "taskqueue_redis_errors",
        "taskqueue_redis_reconnects",
    }
    problems: list[str] = []
    for family in ours:
        name = family.name
        if not name.startswith("taskqueue_") or not _NAME.fullmatch(name):
            problems.append(f"{name}: not a snake_case name with the taskqueue_ prefix")
        if not family.documentation:
            problems.append(f"{name}: no help text")
        if _UNITS_NOT_BASE.search(name):
            problems.append(f"{name}: not in base units (seconds, bytes)")
        if name.endswith(("_total", "_count", "_sum", "_bucket", "_created")):
            problems.append(f"{name}: a family name with a sample suffix")
        if family.type == "counter":
            suffixes = ("_total", "_created")
            bad = [s.name for s in family.samples if not s.name.endswith(suffixes)]
            if bad:
                problems.append(f"{name}: counter samples without _total: {bad}")
        elif family.type == "histogram":
            if not name.endswith("_seconds"):
                problems.append(f"{name}: a histogram of time whose name lacks _seconds")
            kinds = {s.name.removeprefix(name) for s in family.samples}
            if family.samples and not {"_bucket", "_count", "_sum"} <= kinds:
                problems.append(f"{name}: histogram samples {kinds}")
        elif family.type == "gauge":
            if name.endswith("_total"):
                problems.append(f"{name}: a gauge named like a counter")
        else:
            problems.append(f"{name}: unexpected type {family.type}")
        for sample in family.samples:
            bucket = sample.name.endswith("_bucket")
            if bucket != ("le" in sample.labels):
                problems.append(f"{name}: {sample.name} with labels {sorted(sample.labels)}")
            bad_labels = [label for label in sample.labels if not _NAME.fullmatch(label)]
            if bad_labels:
                problems.append(f"{name}: label names {bad_labels}")
    assert problems == []


# -- gRPC ---------------------------------------------------------------------------------------


def grpc_target(server: ApiServer) -> Target:
    host, _, port = server.url.removeprefix("http://").rpartition(":")
    return Target(host, int(port))


async def test_grpc_calls_are_counted_by_method_and_grpc_status(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        target = grpc_target(server)

        async def submit(stub: TaskQueueStub) -> pb.SubmitTaskResponse:
            return await stub.submit_task(
                pb.SubmitTaskRequest(type="email", priority=pb.Priority.HIGH)
            )

        await grpc_call(target, submit)

        async def get_missing(stub: TaskQueueStub) -> pb.Task:
            return await stub.get_task(pb.GetTaskRequest(id=MISSING_ID))

        for _ in range(2):
            with pytest.raises(GRPCError) as caught:
                await grpc_call(target, get_missing)
            assert caught.value.status is Status.NOT_FOUND
        unknown = await raw_call(target, "/taskqueue.v1.TaskQueue/Nonsense", frame(b""))
        assert unknown.grpc_status == Status.UNIMPLEMENTED.value
        metrics = await scrape(client)

    requests = metrics.nonzero("taskqueue_api_requests_total")
    requests.pop(("rest", "GET", "/metrics", "200"), None)
    assert requests == {
        ("grpc", "POST", "/taskqueue.v1.TaskQueue/SubmitTask", "OK"): 1,
        ("grpc", "POST", "/taskqueue.v1.TaskQueue/GetTask", "NOT_FOUND"): 2,
        ("grpc", "POST", "unmatched", "UNIMPLEMENTED"): 1,
    }
    assert (
        metrics.value(
            "taskqueue_api_request_duration_seconds_count",
            api="grpc",
            route="/taskqueue.v1.TaskQueue/GetTask",
        )
        == 2
    )
    # No worker registered "email" (this daemon runs no tasks): it is one of the others.
    assert metrics.nonzero("taskqueue_tasks_submitted_total") == {("high", "_other"): 1}


# -- the metrics port ---------------------------------------------------------------------------


async def test_worker_only_daemon_serves_metrics_on_the_metrics_port(
    redis_url: str, redis: Redis
) -> None:
    config = daemon_config(redis_url, metrics__port=0, worker__concurrency=7)
    async with running_daemon(config, mode=Mode.WORKER) as daemon:
        assert len(daemon.metrics_urls) == 1
        async with httpx.AsyncClient(base_url=daemon.metrics_urls[0]) as client:
            metrics = await scrape(client)
            assert (await client.get("/elsewhere")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405

    assert metrics.value("taskqueue_worker_concurrency") == 7
    assert metrics.value("taskqueue_tasks_in_flight") == 0
    assert metrics.value("taskqueue_workers_active") == 1
    assert metrics.value("taskqueue_redis_up") == 1


async def test_with_a_metrics_port_the_api_port_serves_no_metrics(redis_url: str) -> None:
    async with api_server(redis_url, metrics__port=0) as server, server.client() as client:
        assert (await client.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(base_url=server.daemon.metrics_urls[0]) as port:
            metrics = await scrape(port)
    assert metrics.value("taskqueue_redis_up") == 1
    assert "taskqueue_tasks_in_flight" not in metrics.text  # an API-only daemon runs no tasks


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
async def test_a_metrics_port_beyond_loopback_is_warned_about(
    redis_url: str, host: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "taskqueue.daemon.metrics_server")
    config = daemon_config(redis_url, metrics__port=0, server__host=host)
    async with running_daemon(config, mode=Mode.WORKER):
        pass
    warnings = [r.getMessage() for r in caplog.records if "asks for no token" in r.getMessage()]
    assert bool(warnings) is warned


# -- Redis errors and reconnects ----------------------------------------------------------------


def counter(metrics: Metrics, name: str, labels: Mapping[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, dict(labels or {})) or 0.0


async def test_redis_hooks_count_errors_and_the_reconnect_after_a_lost_connection(
    redis_url: str, redis: Redis
) -> None:
    metrics = Metrics(process_metrics=False)
    client = Redis.from_url(
        redis_url,
        pool_size=1,
        on_error=metrics.redis_error,
        on_reconnect=metrics.redis_reconnected,
    )
    try:
        connection_id = await client.execute("CLIENT", "ID")
        await redis.execute("CLIENT", "KILL", "ID", connection_id)
        with pytest.raises(RedisConnectionError):
            await client.execute("PING")
        assert counter(metrics, "taskqueue_redis_errors_total", {"kind": "connection"}) == 1
        assert counter(metrics, "taskqueue_redis_reconnects_total") == 0

        assert await client.execute("PING") == "PONG"  # a new connection
        assert counter(metrics, "taskqueue_redis_reconnects_total") == 1

        await client.execute("SET", "a-string", "x")
        with pytest.raises(ResponseError):
            await client.execute("INCR", "a-string")  # WRONGTYPE-like: ERR not an integer
        with pytest.raises(ResponseError):
            await client.execute("LPUSH", "a-string", "x")  # WRONGTYPE
        assert counter(metrics, "taskqueue_redis_errors_total", {"kind": "err"}) == 1
        assert counter(metrics, "taskqueue_redis_errors_total", {"kind": "wrongtype"}) == 1
    finally:
        await client.aclose()
    assert counter(metrics, "taskqueue_redis_reconnects_total") == 1


async def test_a_scripts_refusal_is_an_answer_not_a_redis_error(redis_url: str) -> None:
    """Cancelling an unknown task gets NOTFOUND from cancel.lua: no Redis trouble at all."""
    async with api_server(redis_url) as server, server.client() as client:
        response = await client.post(f"/api/v1/tasks/{MISSING_ID}/cancel")
        assert response.status_code == 404
        metrics = await scrape(client)
    assert metrics.nonzero("taskqueue_redis_errors_total") == {}


async def test_scrape_without_redis_still_answers_with_the_process_counters(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(data_dir=tmp_path, persistent=False) as private:
        async with api_server(private.url) as server, server.client() as client:
            assert (await scrape(client)).value("taskqueue_redis_up") == 1
            private.stop()
            metrics = await scrape(client)
    assert metrics.value("taskqueue_redis_up") == 0
    assert "taskqueue_queue_depth{" not in metrics.text
    assert "taskqueue_workers_active " not in metrics.text
    assert metrics.value("taskqueue_redis_errors_total", kind="connection") >= 1
    assert (
        metrics.value(
            "taskqueue_api_requests_total", api="rest", route="/metrics", method="GET", status="200"
        )
        == 1
    )


async def test_attempts_the_reaper_ends_are_counted_per_type_like_the_workers_own(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker()
    metrics = Metrics(process_metrics=False)
    reaper = Reaper(broker, health=Health(), interval=1.0, metrics=metrics)
    await broker.enqueue(Submission(type="mail", max_retries=2))  # will be retried
    await broker.enqueue(Submission(type="mail", max_retries=0))  # will be dead
    cancelled = await broker.enqueue(Submission(type="report", priority="high"))
    await broker.claim("w-gone", ["mail", "report"], 3)
    await broker.cancel(cancelled.id)
    clock.advance(broker.settings.lease_ttl)

    await reaper.reap_once()

    scraped = Scrape(metrics.render().decode())
    mail = {"type": "mail", "priority": "medium"}
    assert scraped.value("taskqueue_tasks_failed_total", **mail) == 2
    assert scraped.value("taskqueue_tasks_retried_total", **mail) == 1
    assert scraped.value("taskqueue_tasks_dead_total", **mail) == 1
    report = {"type": "report", "priority": "high"}
    assert scraped.value("taskqueue_tasks_cancelled_total", **report) == 1
    assert scraped.value("taskqueue_tasks_failed_total", **report) == 0
    assert scraped.value("taskqueue_leases_reaped_total") == 3
