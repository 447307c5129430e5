"""The gRPC API through real sockets: every RPC with the generated grpclib stub, over cleartext
HTTP/2 and over TLS; bearer-token auth on and off; the standard health service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from api_helpers import make_self_signed_cert
from daemon_helpers import submit
from grpc_helpers import (
    GrpcServer,
    Target,
    closing,
    grpc_call,
    grpc_server,
    guarded_grpc_server,
    wait_for_watchers,
)
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import CallContext, HealthStub, TaskQueueStub, current_call, health_pb, pb
from taskqueue.broker import Report
from taskqueue.models import TaskState, WorkerInfo
from taskqueue.outcomes import OutcomeKind


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def server(redis_url: str, cert: tuple[Path, Path]) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url, cert=cert) as server:
        yield server


async def make_dead(server: GrpcServer, task_type: str, count: int) -> list[str]:
    """``count`` tasks of ``task_type`` that failed their only attempt (dead letters)."""
    ids = [await submit(server.broker, task_type, max_retries=0) for _ in range(count)]
    claimed = await server.broker.claim("test-worker", [task_type], count)
    await server.broker.report(
        [
            Report(task_id=c.id, attempt=c.attempt, kind=OutcomeKind.FAILED, error="boom")
            for c in claimed
        ]
    )
    return ids


async def watch_until_events(stub: TaskQueueStub, count: int) -> list[pb.TaskEvent]:
    """Watch ``watched`` tasks, submitting them until ``count`` events came; then cancel the
    stream (leaving ``aclosing`` resets it). The submits repeat because the watch is
    registered on the server at an unknown moment after the call starts."""
    import asyncio

    received: list[pb.TaskEvent] = []

    async def consume() -> None:
        async with closing(stub.watch_tasks(pb.WatchTasksRequest(type="watched"))) as events:
            async for event in events:
                received.append(event)
                if len(received) == count:
                    return

    consumer = asyncio.ensure_future(consume())
    while not consumer.done():
        await stub.submit_task(pb.SubmitTaskRequest(type="watched"))
        await asyncio.wait({consumer}, timeout=0.1)
    await consumer
    return received


async def tour(stub: TaskQueueStub, dead: list[str]) -> dict[str, Any]:
    """Every RPC once (some twice), in the order a user would meet them."""
    out: dict[str, Any] = {}
    email = pb.SubmitTaskRequest(
        type="email",
        payload_json='{"to": "a@example.com"}',
        priority=pb.Priority.HIGH,
        max_retries=5,
        timeout_seconds=30,
        idempotency_key="welcome-1",
    )
    out["submitted"] = await stub.submit_task(email)
    out["again"] = await stub.submit_task(email)
    out["batch"] = await stub.submit_tasks(
        pb.SubmitTasksRequest(
            tasks=[
                pb.SubmitTaskRequest(type="email"),
                pb.SubmitTaskRequest(type="report", delay_seconds=60),
            ]
        )
    )
    out["task"] = await stub.get_task(pb.GetTaskRequest(id=out["submitted"].id))
    first = await stub.list_tasks(pb.ListTasksRequest(state=pb.TaskState.PENDING, limit=1))
    second = await stub.list_tasks(
        pb.ListTasksRequest(state=pb.TaskState.PENDING, limit=1, cursor=first.next_cursor)
    )
    out["pages"] = [first, second]
    out["scheduled"] = await stub.list_tasks(
        pb.ListTasksRequest(state=pb.TaskState.SCHEDULED, type="report")
    )
    out["cancel"] = await stub.cancel_task(pb.CancelTaskRequest(id=out["batch"].results[0].id))
    out["workers"] = await stub.list_workers(pb.ListWorkersRequest())
    out["stats"] = await stub.get_queue_stats(pb.GetQueueStatsRequest())
    out["dead"] = await stub.list_dead_letters(pb.ListDeadLettersRequest(type="doomed"))
    out["requeue_one"] = await stub.requeue_dead_letters(pb.RequeueDeadLettersRequest(id=dead[0]))
    out["requeue_type"] = await stub.requeue_dead_letters(
        pb.RequeueDeadLettersRequest(type="doomed-too")
    )
    out["purge"] = await stub.purge_dead_letters(pb.PurgeDeadLettersRequest(type="doomed"))
    out["health"] = await HealthStub(stub.channel).check(health_pb.HealthCheckRequest())
    out["events"] = await watch_until_events(stub, 2)
    return out


@pytest.mark.parametrize("transport", ["h2c", "tls"])
async def test_every_rpc_works_through_the_generated_stub(
    server: GrpcServer, transport: str
) -> None:
    dead = await make_dead(server, "doomed", 2) + await make_dead(server, "doomed-too", 1)
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

    out = await grpc_call(server.target(transport), lambda stub: tour(stub, dead))

    submitted, task = out["submitted"], out["task"]
    assert submitted.created and submitted.state == pb.TaskState.PENDING
    assert (out["again"].id, out["again"].created) == (submitted.id, False)
    assert [r.state for r in out["batch"].results] == [
        pb.TaskState.PENDING,
        pb.TaskState.SCHEDULED,
    ]
    assert (task.id, task.type, task.priority, task.state) == (
        submitted.id,
        "email",
        pb.Priority.HIGH,
        pb.TaskState.PENDING,
    )
    assert task.payload_json == '{"to":"a@example.com"}'
    assert (task.max_retries, task.timeout_ms, task.idempotency_key) == (5, 30_000, "welcome-1")
    assert task.started_ms is None and task.result_json is None
    first, second = out["pages"]
    assert first.tasks[0].id == submitted.id  # high before medium
    assert second.tasks[0].id == out["batch"].results[0].id
    assert [t.id for t in out["scheduled"].tasks] == [out["batch"].results[1].id]
    assert out["cancel"].outcome == pb.CancelTaskResponseOutcome.OUTCOME_CANCELLED
    (worker,) = out["workers"].workers
    assert (worker.id, worker.pid, worker.task_types) == ("w1", 42, {"email": "mail 1.0"})
    stats = out["stats"]
    assert stats.by_state["pending"] == 1 and stats.by_state["dead"] == 3
    assert stats.pending_by_priority["high"] == 1
    assert sorted(t.id for t in out["dead"].tasks) == sorted(dead[:2])
    assert out["dead"].tasks[0].error == "boom"
    assert out["requeue_one"].requeued == 1
    assert out["requeue_type"].requeued == 1
    assert out["purge"].purged == 1
    assert out["health"].status == health_pb.HealthCheckResponseServingStatus.SERVING
    events = out["events"]
    assert len(events) == 2
    assert all(e.type == "watched" and e.state == pb.TaskState.PENDING for e in events)
    # The client's cancel ended the server's handler: its watcher is gone.
    await wait_for_watchers(server, 0)
    assert (await server.broker.get(dead[0])).state is TaskState.PENDING


# -- auth --------------------------------------------------------------------------------------


@pytest.fixture
async def guarded(redis_url: str, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    """A server with an admin token ``admin-token`` and a read-only token ``reader``."""
    async with guarded_grpc_server(redis_url, tmp_path) as server:
        yield server


async def status_of(target: Target, call: Any, token: str | None = None) -> Status:
    try:
        await grpc_call(target, call, token=token)
    except GRPCError as exc:
        return exc.status
    return Status.OK


def stats(stub: TaskQueueStub) -> Any:
    return stub.get_queue_stats(pb.GetQueueStatsRequest())


def submit_one(stub: TaskQueueStub) -> Any:
    return stub.submit_task(pb.SubmitTaskRequest(type="email"))


async def test_a_call_without_a_token_is_unauthenticated(guarded: GrpcServer) -> None:
    with pytest.raises(GRPCError) as info:
        await grpc_call(guarded.h2c, stats)
    assert info.value.status is Status.UNAUTHENTICATED
    assert "bearer token is required" in (info.value.message or "")


async def test_an_unknown_token_is_unauthenticated(guarded: GrpcServer) -> None:
    assert await status_of(guarded.h2c, stats, token="guess") is Status.UNAUTHENTICATED


async def test_a_read_token_reads_but_may_not_write(guarded: GrpcServer) -> None:
    assert await status_of(guarded.h2c, stats, token="reader") is Status.OK
    assert await status_of(guarded.h2c, submit_one, token="reader") is Status.PERMISSION_DENIED
    assert (await guarded.broker.stats()).totals.get("submitted", 0) == 0


async def test_an_admin_token_may_write(guarded: GrpcServer) -> None:
    assert await status_of(guarded.h2c, submit_one, token="admin-token") is Status.OK


async def test_health_needs_no_token(guarded: GrpcServer) -> None:
    async def check(stub: TaskQueueStub) -> Any:
        return await HealthStub(stub.channel).check(health_pb.HealthCheckRequest())

    reply = await grpc_call(guarded.h2c, check)
    assert reply.status == health_pb.HealthCheckResponseServingStatus.SERVING


async def test_without_tokens_configured_every_call_is_allowed(server: GrpcServer) -> None:
    assert await status_of(server.h2c, submit_one) is Status.OK
    assert await status_of(server.h2c, submit_one, token="anything") is Status.OK


# -- health ------------------------------------------------------------------------------------


async def test_health_follows_readiness_and_refuses_unknown_services(server: GrpcServer) -> None:
    async def check(stub: TaskQueueStub, service: str) -> Any:
        return await HealthStub(stub.channel).check(health_pb.HealthCheckRequest(service))

    serving = health_pb.HealthCheckResponseServingStatus
    named = await grpc_call(server.h2c, lambda s: check(s, "taskqueue.v1.TaskQueue"))
    assert named.status == serving.SERVING
    server.context.health.draining = True
    assert (await grpc_call(server.h2c, lambda s: check(s, ""))).status == serving.NOT_SERVING
    with pytest.raises(GRPCError) as info:
        await grpc_call(server.h2c, lambda s: check(s, "no.such.Service"))
    assert info.value.status is Status.NOT_FOUND


async def test_health_watch_sends_the_current_status_first(server: GrpcServer) -> None:
    async def first(stub: TaskQueueStub) -> Any:
        watch = HealthStub(stub.channel).watch(health_pb.HealthCheckRequest())
        async with closing(watch) as replies:
            async for reply in replies:
                return reply
        return None

    reply = await grpc_call(server.h2c, first)
    assert reply.status == health_pb.HealthCheckResponseServingStatus.SERVING


# -- the call's context ------------------------------------------------------------------------


async def test_a_handler_sees_the_calls_metadata_and_deadline(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[CallContext] = []
    real_stats = server.broker.queue_report

    async def stats_seeing_the_call() -> Any:
        seen.append(current_call())
        return await real_stats()

    monkeypatch.setattr(server.broker, "queue_report", stats_seeing_the_call)
    await grpc_call(
        server.h2c,
        lambda stub: stub.get_queue_stats(pb.GetQueueStatsRequest(), timeout=30),
        metadata={"x-request-id": "abc-123"},
    )
    (call,) = seen
    assert call.method == "/taskqueue.v1.TaskQueue/GetQueueStats"
    assert call.get("X-Request-ID") == "abc-123"
    assert call.deadline is not None and 25 < call.deadline - trio.current_time() <= 30


async def test_the_idempotency_key_may_come_as_metadata(server: GrpcServer) -> None:
    async def submit_twice(stub: TaskQueueStub) -> list[pb.SubmitTaskResponse]:
        request = pb.SubmitTaskRequest(type="email")
        return [await stub.submit_task(request) for _ in range(2)]

    first, second = await grpc_call(server.h2c, submit_twice, metadata={"idempotency-key": "k"})
    assert (first.created, second.created, second.id) == (True, False, first.id)


async def test_a_deadline_submitted_over_grpc_is_kept_and_shown(server: GrpcServer) -> None:
    async def use(stub: TaskQueueStub) -> tuple[pb.Task, pb.Task]:
        relative = await stub.submit_task(pb.SubmitTaskRequest(type="t", expires_in_seconds=60))
        at = await stub.submit_task(pb.SubmitTaskRequest(type="t", expires_at_ms=1_893_456_000_000))
        return (
            await stub.get_task(pb.GetTaskRequest(id=relative.id)),
            await stub.get_task(pb.GetTaskRequest(id=at.id)),
        )

    relative, at = await grpc_call(server.h2c, use)
    assert relative.expires_ms is not None
    assert relative.expires_ms - relative.created_ms == 60_000
    assert at.expires_ms == 1_893_456_000_000  # 2030-01-01
    assert (await server.broker.get(at.id)).expires_ms == 1_893_456_000_000
