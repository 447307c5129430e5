"""Every way a gRPC call ends, through the daemon's API port and a raw HTTP/2 client: a deadline,
a client's cancel, a lost connection and a shutdown, each landing in the middle of the call.
Each ends with well-formed trailers while its stream is open, nothing is logged as an error,
and the access log and ``taskqueue_api_requests_total`` name the call's gRPC status.

The server-side work is made stubborn (:func:`until_cancelled`): it ignores cancellation, as
CPU-bound work or a shielded round trip does, and returns only once its call has been
cancelled. So the response always goes out *after* the cancellation landed, the moment at
which the response headers used to be sent twice and the stream reset (issue 19).
"""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from api_helpers import ApiServer, api_server
from daemon_helpers import wait_until
from grpc_helpers import TASKQUEUE_SERVICE, RawResponse, Target, next_call, raw_call, raw_stream
from grpclib.const import Status
from log_helpers import captured_json_logs, json_records
from prometheus_client.parser import text_string_to_metric_families

from taskqueue.api.grpc import pb
from taskqueue.api.grpc.framing import frame
from taskqueue.daemon.runtime import begin_shutdown
from taskqueue.models import TaskEvent

LIST_TASKS = TASKQUEUE_SERVICE + "ListTasks"
WATCH = TASKQUEUE_SERVICE + "WatchTasks"
STATS = TASKQUEUE_SERVICE + "GetQueueStats"
LIST_REQUEST = frame(bytes(pb.ListTasksRequest(state=pb.TaskState.SUCCEEDED)))
CALLS = 100
#: How often stubborn work looks whether its call has been cancelled.
STUBBORN_POLL = 0.001


async def until_cancelled() -> None:
    """Work on, shielded, until the calling task's cancel scope has been cancelled."""
    while trio.current_effective_deadline() != -math.inf:
        with trio.CancelScope(shield=True):
            await trio.sleep(STUBBORN_POLL)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    with captured_json_logs("info") as stream:
        yield stream


@pytest.fixture
async def server(redis_url: str, log_lines: io.StringIO) -> AsyncIterator[ApiServer]:
    async with api_server(redis_url) as server:
        yield server


def target_of(server: ApiServer) -> Target:
    host, _, port = server.url.removeprefix("http://").rpartition(":")
    return Target(host, int(port))


def entering(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch, work: Callable[[], Any]
) -> trio.MemoryReceiveChannel[None]:
    """Make ListTasks do ``work`` after reading its page; the channel says when each starts."""
    real = server.broker.list_views
    entered, receive = trio.open_memory_channel[None](math.inf)

    async def list_views(*args: Any, **kwargs: Any) -> Any:
        page = await real(*args, **kwargs)
        entered.send_nowait(None)
        await work()
        return page

    monkeypatch.setattr(server.broker, "list_views", list_views)
    return receive


async def grpc_counts(server: ApiServer, route: str) -> dict[str, float]:
    """``taskqueue_api_requests_total`` of one gRPC route by status, scraped from the port."""
    async with server.client() as client:
        text = (await client.get("/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "taskqueue_api_requests_total" and labels.get("route") == route:
                counts[labels["status"]] = sample.value
    return counts


async def expect_counted(
    server: ApiServer, log_lines: io.StringIO, route: str, expected: dict[str, int]
) -> None:
    """The metric and the access log count ``expected`` calls of ``route`` by status, and
    nothing was logged as an error."""
    total = sum(expected.values())
    seen: dict[str, float] = {}

    async def all_counted() -> bool:
        seen.update(await grpc_counts(server, route))
        return sum(seen.values()) >= total

    await wait_until(all_counted, f"{total} calls of {route} are counted")
    assert seen == expected
    records = json_records(log_lines)
    access = [r["status"] for r in records if r["logger"] == "taskqueue.access"]
    assert {s: access.count(s) for s in set(access) if s in expected} == expected
    errors = [r for r in records if r["level"] in ("error", "critical")]
    assert not errors, errors[0]


def assert_trailers(response: RawResponse, status: Status, message: str | None = None) -> None:
    assert not response.reset, "the server reset the stream"
    assert response.status == 200
    assert response.trailers.get("grpc-status") == str(status.value), response
    if message is not None:
        assert response.grpc_message == message


# -- deadlines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "work", [until_cancelled, trio.sleep_forever], ids=["after-headers", "before-headers"]
)
async def test_a_deadline_that_passes_mid_call_ends_it_deadline_exceeded(
    server: ApiServer,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    work: Callable[[], Any],
) -> None:
    entering(server, monkeypatch, work)
    for i in range(CALLS):
        timeout = f"{1 + i % 8}m"
        response = await raw_call(
            target_of(server), LIST_TASKS, LIST_REQUEST, headers={"grpc-timeout": timeout}
        )
        assert_trailers(
            response, Status.DEADLINE_EXCEEDED, f"deadline exceeded (grpc-timeout {timeout})"
        )
    await expect_counted(server, log_lines, LIST_TASKS, {"DEADLINE_EXCEEDED": CALLS})


async def test_a_stream_whose_deadline_passes_after_it_sent_events_ends_deadline_exceeded(
    server: ApiServer, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    @asynccontextmanager
    async def one_event(**filters: Any) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        async def events() -> AsyncIterator[TaskEvent]:
            yield TaskEvent(task_id="t-1", type="email", state="pending")
            await trio.sleep_forever()  # until the deadline

        yield events()

    monkeypatch.setattr(server.events, "watch", one_event)
    request = frame(bytes(pb.WatchTasksRequest()))
    for _ in range(5):
        response = await raw_call(
            target_of(server), WATCH, request, headers={"grpc-timeout": "300m"}
        )
        assert_trailers(response, Status.DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout 300m)")
        assert response.data == frame(
            bytes(pb.TaskEvent(task_id="t-1", type="email", state=pb.TaskState.PENDING))
        )
    await expect_counted(server, log_lines, WATCH, {"DEADLINE_EXCEEDED": 5})


# -- the client goes away -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "work", [until_cancelled, trio.sleep_forever], ids=["then-responds", "is-cancelled"]
)
async def test_a_client_cancel_mid_call_counts_cancelled_and_the_connection_serves_on(
    server: ApiServer,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    work: Callable[[], Any],
) -> None:
    entered = entering(server, monkeypatch, work)
    async with raw_stream(target_of(server), STATS, frame(b"")) as first:
        with trio.fail_after(5):
            assert_trailers(await first.read(), Status.OK)
            previous = first
            for _ in range(CALLS):  # every call on the same connection
                call = await next_call(previous, LIST_TASKS, LIST_REQUEST)
                await entered.receive()
                await call.cancel()
                previous = call
            after = await next_call(previous, STATS, frame(b""))
            assert_trailers(await after.read(), Status.OK)
    await expect_counted(server, log_lines, LIST_TASKS, {"CANCELLED": CALLS})


async def test_a_lost_connection_mid_call_counts_cancelled(
    server: ApiServer, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = entering(server, monkeypatch, until_cancelled)
    calls = 20
    for _ in range(calls):
        async with raw_stream(target_of(server), LIST_TASKS, LIST_REQUEST):
            with trio.fail_after(5):
                await entered.receive()
        # leaving the block closes the connection, without a reset
    await expect_counted(server, log_lines, LIST_TASKS, {"CANCELLED": calls})
    response = await raw_call(target_of(server), STATS, frame(b""))
    assert_trailers(response, Status.OK)


# -- the daemon shuts down ----------------------------------------------------------------------


async def test_a_shutdown_mid_call_ends_streams_ok_and_lets_unary_calls_finish(
    server: ApiServer, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watches are ended (OK, "the server is shutting down") while they send; unary calls
    running at that moment finish with their own status before the server stops."""
    release = trio.Event()

    async def until_released() -> None:
        with trio.CancelScope(shield=True):
            await release.wait()

    entered = entering(server, monkeypatch, until_released)
    watching, watches_entered = trio.open_memory_channel[None](math.inf)

    @asynccontextmanager
    async def stubborn_watch(**filters: Any) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        watching.send_nowait(None)

        async def events() -> AsyncIterator[TaskEvent]:
            await until_cancelled()  # the shutdown lands while an event is on its way
            yield TaskEvent(task_id="t-1", type="email", state="pending")

        yield events()

    monkeypatch.setattr(server.events, "watch", stubborn_watch)
    streams, calls = 10, 10
    responses: dict[str, list[RawResponse]] = {"watch": [], "unary": []}

    async def one(kind: str, path: str, body: bytes) -> None:
        async with raw_stream(target_of(server), path, body) as stream:
            with trio.fail_after(10):
                responses[kind].append(await stream.read())

    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(one, "watch", WATCH, frame(bytes(pb.WatchTasksRequest())))
        for _ in range(calls):
            nursery.start_soon(one, "unary", LIST_TASKS, LIST_REQUEST)
        with trio.fail_after(10):
            for _ in range(streams):
                await watches_entered.receive()
            for _ in range(calls):
                await entered.receive()
        begin_shutdown(server.daemon)
        await wait_until(
            _async(lambda: len(responses["watch"]) == streams), "every watch has ended"
        )
        release.set()

    for response in responses["watch"]:
        assert_trailers(response, Status.OK, "the server is shutting down")
        assert len(response.data) > 5  # the event that was on its way when the shutdown came
    for response in responses["unary"]:
        assert_trailers(response, Status.OK)

    def counted() -> dict[tuple[str, str], int]:
        return {
            (route, status): n
            for (api, route, _, status), n in server.daemon.metrics.api_requests.items()
            if api == "grpc"
        }

    await wait_until(
        _async(lambda: sum(counted().values()) == streams + calls), "every call is counted"
    )
    assert counted() == {(WATCH, "OK"): streams, (LIST_TASKS, "OK"): calls}
    errors = [r for r in json_records(log_lines) if r["level"] in ("error", "critical")]
    assert not errors, errors[0]


def _async(condition: Callable[[], bool]) -> Callable[[], Any]:
    async def check() -> bool:
        return condition()

    return check
