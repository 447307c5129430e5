"""The official gRPC client, grpcio (sync and ``grpc.aio``), against the server: every RPC of
``taskqueue.v1.TaskQueue`` and ``grpc.health.v1.Health``, server streams and cancelling them,
deadlines shorter than the call's work, bearer tokens as metadata, and error statuses with
their messages and trailers. Stubs are generated from ``proto/`` at test time
(:mod:`grpcio_helpers`), as any grpcio user would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from daemon_helpers import submit
from grpc_helpers import GrpcServer, grpc_server, guarded_grpc_server, in_asyncio, wait_for_watchers
from grpcio_helpers import (
    FLAVOURS,
    Call,
    Stubs,
    aio_channel,
    generate_stubs,
    grpcio_failure,
    in_thread,
    sync_channel,
    trailers,
    with_grpcio,
)

from taskqueue.broker import Report
from taskqueue.models import WorkerInfo
from taskqueue.outcomes import OutcomeKind

flavours = pytest.mark.parametrize("flavour", FLAVOURS)


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    return generate_stubs(tmp_path_factory.mktemp("grpcio"))


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url) as server:
        yield server


# -- every RPC ----------------------------------------------------------------------------------


async def make_dead(server: GrpcServer, task_type: str) -> str:
    """A task of ``task_type`` that failed its only attempt (a dead letter)."""
    task_id = await submit(server.broker, task_type, max_retries=0)
    (claimed,) = await server.broker.claim("test-worker", [task_type], 1)
    await server.broker.report(
        [Report(task_id=task_id, attempt=claimed.attempt, kind=OutcomeKind.FAILED, error="boom")]
    )
    return task_id


async def tour(stubs: Stubs, call: Call, dead: str) -> dict[str, Any]:
    """Every unary RPC once (some twice), in the order a user would meet them."""
    pb, health = stubs.pb, stubs.health_pb
    email = pb.SubmitTaskRequest(
        type="email",
        payload_json='{"to": "a@example.com"}',
        priority=pb.PRIORITY_HIGH,
        max_retries=5,
        timeout_seconds=30,
        idempotency_key="welcome-1",
    )
    out: dict[str, Any] = {"submitted": await call("SubmitTask", email)}
    out["again"] = await call("SubmitTask", email)
    out["batch"] = await call(
        "SubmitTasks",
        pb.SubmitTasksRequest(
            tasks=[
                pb.SubmitTaskRequest(type="email"),
                pb.SubmitTaskRequest(type="report", delay_seconds=60),
            ]
        ),
    )
    out["task"] = await call("GetTask", pb.GetTaskRequest(id=out["submitted"].id))
    first = await call("ListTasks", pb.ListTasksRequest(state=pb.TASK_STATE_PENDING, limit=1))
    out["pages"] = [
        first,
        await call(
            "ListTasks",
            pb.ListTasksRequest(state=pb.TASK_STATE_PENDING, limit=1, cursor=first.next_cursor),
        ),
    ]
    out["cancel"] = await call("CancelTask", pb.CancelTaskRequest(id=out["batch"].results[0].id))
    out["workers"] = await call("ListWorkers", pb.ListWorkersRequest())
    out["stats"] = await call("GetQueueStats", pb.GetQueueStatsRequest())
    out["dead"] = await call("ListDeadLetters", pb.ListDeadLettersRequest(type="doomed"))
    out["requeue"] = await call("RequeueDeadLetters", pb.RequeueDeadLettersRequest(id=dead))
    out["purge"] = await call("PurgeDeadLetters", pb.PurgeDeadLettersRequest(type="report"))
    out["health"] = await call("Check", health.HealthCheckRequest(service="taskqueue.v1.TaskQueue"))
    return out


@flavours
async def test_every_unary_rpc_works_through_grpcio(
    server: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    dead = await make_dead(server, "doomed")
    await server.broker.heartbeat(
        WorkerInfo(
            id="w1",
            host="box",
            pid=42,
            task_types={"email": "mail 1.0"},
            concurrency=8,
            in_flight=1,
            started_ms=1,
            last_heartbeat_ms=2,
        ),
        [],
    )

    out = await with_grpcio(stubs, flavour, server.h2c, lambda call: tour(stubs, call, dead))

    pb = stubs.pb
    submitted, task = out["submitted"], out["task"]
    assert submitted.created and submitted.state == pb.TASK_STATE_PENDING
    assert (out["again"].id, out["again"].created) == (submitted.id, False)
    assert [r.state for r in out["batch"].results] == [
        pb.TASK_STATE_PENDING,
        pb.TASK_STATE_SCHEDULED,
    ]
    assert (task.id, task.type, task.priority, task.payload_json) == (
        submitted.id,
        "email",
        pb.PRIORITY_HIGH,
        '{"to":"a@example.com"}',
    )
    assert (task.max_retries, task.timeout_ms, task.idempotency_key) == (5, 30_000, "welcome-1")
    assert not task.HasField("started_ms") and not task.HasField("result_json")
    first, second = out["pages"]
    assert first.tasks[0].id == submitted.id  # high before medium
    assert second.tasks[0].id == out["batch"].results[0].id
    assert out["cancel"].outcome == pb.CancelTaskResponse.OUTCOME_CANCELLED
    (worker,) = out["workers"].workers
    assert (worker.id, worker.pid, dict(worker.task_types)) == ("w1", 42, {"email": "mail 1.0"})
    assert out["stats"].by_state["pending"] == 1 and out["stats"].by_state["dead"] == 1
    assert [t.id for t in out["dead"].tasks] == [dead]
    assert out["dead"].tasks[0].error == "boom"
    assert out["requeue"].requeued == 1
    assert out["purge"].purged == 0
    assert out["health"].status == stubs.health_pb.HealthCheckResponse.SERVING


# -- server streams -----------------------------------------------------------------------------


def watch_sync(stubs: Stubs, server: GrpcServer, count: int) -> tuple[list[Any], Any]:
    """Read ``count`` events of a WatchTasks call, then cancel it: (events, final code)."""
    with sync_channel(server.h2c) as channel:
        call = stubs.pb_grpc.TaskQueueStub(channel).WatchTasks(
            stubs.pb.WatchTasksRequest(type="watched"), timeout=30
        )
        events = []
        for event in call:
            events.append(event)
            if len(events) == count:
                break
        call.cancel()
        return events, call.code()


async def watch_aio(stubs: Stubs, server: GrpcServer, count: int) -> tuple[list[Any], Any]:
    async with aio_channel(server.h2c) as channel:
        call = stubs.pb_grpc.TaskQueueStub(channel).WatchTasks(
            stubs.pb.WatchTasksRequest(type="watched"), timeout=30
        )
        events = []
        async for event in call:
            events.append(event)
            if len(events) == count:
                break
        call.cancel()
        return events, await call.code()


@flavours
async def test_watch_tasks_streams_events_until_the_client_cancels(
    server: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    result: list[tuple[list[Any], Any]] = []

    async def watch() -> None:
        if flavour == "aio":
            result.append(await in_asyncio(lambda: watch_aio(stubs, server, 2)))
        else:
            result.append(await in_thread(lambda: watch_sync(stubs, server, 2)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await wait_for_watchers(server, 1)
        ids = [await submit(server.broker, "watched") for _ in range(2)]

    ((events, code),) = result
    assert [(e.task_id, e.state) for e in events] == [
        (task_id, stubs.pb.TASK_STATE_PENDING) for task_id in ids
    ]
    assert code == grpc.StatusCode.CANCELLED
    await wait_for_watchers(server, 0)  # the cancel ended the server's handler


@flavours
async def test_health_watch_sends_the_current_status(
    server: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    request = stubs.health_pb.HealthCheckRequest()

    def first_sync() -> Any:
        with sync_channel(server.h2c) as channel:
            call = stubs.health_grpc.HealthStub(channel).Watch(request, timeout=10)
            reply = next(call)
            call.cancel()
            return reply

    async def first_aio() -> Any:
        async with aio_channel(server.h2c) as channel:
            call = stubs.health_grpc.HealthStub(channel).Watch(request, timeout=10)
            reply = await call.read()
            call.cancel()
            return reply

    if flavour == "aio":
        reply = await in_asyncio(first_aio)
    else:
        reply = await in_thread(first_sync)
    assert reply.status == stubs.health_pb.HealthCheckResponse.SERVING


# -- deadlines ----------------------------------------------------------------------------------


@flavours
async def test_a_deadline_shorter_than_the_work_ends_the_call_and_the_work(
    server: GrpcServer, stubs: Stubs, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpcio sends its timeout as ``grpc-timeout``; the server cancels the handler's work at
    that deadline, while the client reports DEADLINE_EXCEEDED (by the server's status or
    its own timer, whichever comes first)."""
    started, ended = trio.Event(), trio.Event()

    async def endless_work(*args: Any, **kwargs: Any) -> Any:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            ended.set()

    monkeypatch.setattr(server.broker, "list_views", endless_work)
    request = stubs.pb.ListTasksRequest(state=stubs.pb.TASK_STATE_PENDING)
    error = await grpcio_failure(stubs, flavour, server.h2c, "ListTasks", request, deadline=0.3)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert started.is_set()
    with trio.fail_after(5):
        await ended.wait()


@flavours
async def test_a_stream_ends_at_its_deadline(
    server: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    request = stubs.pb.WatchTasksRequest()

    def drain_sync() -> Any:
        with sync_channel(server.h2c) as channel:
            call = stubs.pb_grpc.TaskQueueStub(channel).WatchTasks(request, timeout=0.3)
            try:
                list(call)
            except grpc.RpcError as error:
                return error.code()
            return call.code()

    async def drain_aio() -> Any:
        async with aio_channel(server.h2c) as channel:
            call = stubs.pb_grpc.TaskQueueStub(channel).WatchTasks(request, timeout=0.3)
            try:
                async for _ in call:
                    pass
            except grpc.RpcError as error:
                return error.code()
            return await call.code()

    code = await (in_asyncio(drain_aio) if flavour == "aio" else in_thread(drain_sync))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for_watchers(server, 0)


# -- bearer tokens as metadata ------------------------------------------------------------------


@pytest.fixture
async def guarded(redis_url: str, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    """A server with an admin token ``admin-token`` and a read-only token ``reader``."""
    async with guarded_grpc_server(redis_url, tmp_path) as server:
        yield server


@flavours
async def test_tokens_travel_as_authorization_metadata(
    guarded: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    pb, target = stubs.pb, guarded.h2c
    stats, submit_one = pb.GetQueueStatsRequest(), pb.SubmitTaskRequest(type="email")

    async def code(method: str, request: Any, token: str | None) -> grpc.StatusCode:
        async def use(call: Call) -> Any:
            return await call(method, request)

        try:
            await with_grpcio(stubs, flavour, target, use, token=token)
        except grpc.RpcError as error:
            found: grpc.StatusCode = error.code()
            return found
        return grpc.StatusCode.OK

    missing = await grpcio_failure(stubs, flavour, target, "GetQueueStats", stats)
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bearer token is required" in (missing.details() or "")
    assert await code("GetQueueStats", stats, "guess") == grpc.StatusCode.UNAUTHENTICATED
    assert await code("GetQueueStats", stats, "reader") == grpc.StatusCode.OK
    assert await code("SubmitTask", submit_one, "reader") == grpc.StatusCode.PERMISSION_DENIED
    assert await code("SubmitTask", submit_one, "admin-token") == grpc.StatusCode.OK
    health = stubs.health_pb.HealthCheckRequest()
    assert await code("Check", health, None) == grpc.StatusCode.OK  # probes have no token


# -- statuses, messages, trailers ---------------------------------------------------------------


@flavours
async def test_errors_arrive_with_their_status_message_and_trailers(
    server: GrpcServer, stubs: Stubs, flavour: str
) -> None:
    pb, target = stubs.pb, server.h2c

    async def failure(method: str, request: Any) -> Any:
        return await grpcio_failure(stubs, flavour, target, method, request)

    invalid = await failure("SubmitTask", pb.SubmitTaskRequest(type="email", timeout_seconds=-1))
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.details().startswith("timeout_seconds: ")
    assert trailers(invalid)["taskqueue-field"] == "timeout_seconds"

    missing = await failure("GetTask", pb.GetTaskRequest(id="nöpe 100%"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details() == "no task with id 'nöpe 100%'"  # percent-encoded on the wire

    task_id = await submit(server.broker, "email")
    await server.broker.cancel(task_id)
    ended = await failure("CancelTask", pb.CancelTaskRequest(id=task_id))
    assert ended.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended (cancelled)" in ended.details()

    state = await failure("ListTasks", pb.ListTasksRequest())
    assert state.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers(state)["taskqueue-field"] == "state"


async def test_an_unknown_method_is_unimplemented(server: GrpcServer, stubs: Stubs) -> None:
    def call() -> grpc.RpcError:
        with sync_channel(server.h2c) as channel:
            frobnicate = channel.unary_unary(
                "/taskqueue.v1.TaskQueue/Frobnicate",
                request_serializer=stubs.pb.GetTaskRequest.SerializeToString,
                response_deserializer=stubs.pb.Task.FromString,
            )
            try:
                frobnicate(stubs.pb.GetTaskRequest(), timeout=10)
            except grpc.RpcError as error:
                return error
        raise AssertionError("an unknown method succeeded")

    error = await in_thread(call)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "unknown method /taskqueue.v1.TaskQueue/Frobnicate"
