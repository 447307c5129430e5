"""Every way a gRPC call can fail, and the status it fails with: through the grpclib stub for
what a client can get wrong, through a raw HTTP/2 client for what only a broken one sends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from grpc_helpers import (
    TASKQUEUE_SERVICE,
    GrpcServer,
    grpc_call,
    grpc_server,
    raw_call,
)
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.api.grpc.framing import frame
from taskqueue.errors import TaskNotFoundError


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url) as server:
        yield server


async def failure(server: GrpcServer, call: Any, **kwargs: Any) -> GRPCError:
    """The error a call through the stub fails with (it must fail)."""
    with pytest.raises(GRPCError) as info:
        await grpc_call(server.h2c, call, **kwargs)
    return info.value


def submit(**fields: Any) -> Any:
    return lambda stub: stub.submit_task(pb.SubmitTaskRequest(**{"type": "email", **fields}))


# -- INVALID_ARGUMENT names the field -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": ""}, "type"),
        ({"type": "has space"}, "type"),
        ({"timeout_seconds": -1.0}, "timeout_seconds"),
        ({"max_retries": -1}, "max_retries"),
        ({"delay_seconds": 5.0, "eta_ms": 1}, "delay_seconds"),
        ({"payload_json": "{not json"}, "payload_json"),
        ({"priority": 99}, "priority"),
        ({"expires_in_seconds": 0.0}, "expires_in_seconds"),
        ({"expires_in_seconds": 5.0, "expires_at_ms": 1}, "expires_in_seconds"),
        ({"expires_at_ms": 1}, "expires_at_ms"),
        ({"delay_seconds": 60.0, "expires_in_seconds": 30.0}, "expires_in_seconds"),
    ],
)
async def test_an_invalid_submission_names_its_field(
    server: GrpcServer, fields: dict[str, Any], field: str
) -> None:
    error = await failure(server, submit(**fields))
    assert error.status is Status.INVALID_ARGUMENT
    assert (error.message or "").startswith(f"{field}: ")


async def test_an_invalid_task_in_a_batch_is_named_by_its_index(server: GrpcServer) -> None:
    batch = pb.SubmitTasksRequest(
        tasks=[pb.SubmitTaskRequest(type="ok"), pb.SubmitTaskRequest(type="ok", max_retries=-1)]
    )
    error = await failure(server, lambda stub: stub.submit_tasks(batch))
    assert error.status is Status.INVALID_ARGUMENT
    assert (error.message or "").startswith("tasks[1].max_retries: task 1: ")
    assert (await server.broker.stats()).totals.get("submitted", 0) == 0  # all or nothing


async def test_the_field_is_also_in_a_trailer(server: GrpcServer) -> None:
    request = bytes(pb.SubmitTaskRequest(type="email", timeout_seconds=0))
    response = await raw_call(server.h2c, TASKQUEUE_SERVICE + "SubmitTask", frame(request))
    assert response.grpc_status == Status.INVALID_ARGUMENT.value
    assert response.trailers["taskqueue-field"] == "timeout_seconds"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda stub: stub.list_tasks(pb.ListTasksRequest()), "state"),
        (lambda stub: stub.list_tasks(pb.ListTasksRequest(state=42)), "state"),  # type: ignore[arg-type]  # a number the proto lacks
        (
            lambda stub: stub.list_tasks(pb.ListTasksRequest(state=pb.TaskState.DEAD, limit=5000)),
            "limit",
        ),
        (
            lambda stub: stub.list_tasks(pb.ListTasksRequest(state=pb.TaskState.DEAD, cursor="x")),
            "cursor",
        ),
        (lambda stub: stub.get_task(pb.GetTaskRequest()), "id"),
        (lambda stub: stub.cancel_task(pb.CancelTaskRequest()), "id"),
        (
            lambda stub: stub.requeue_dead_letters(pb.RequeueDeadLettersRequest(id="a", type="b")),
            "type",
        ),
    ],
)
async def test_other_invalid_requests_name_their_field(
    server: GrpcServer, call: Any, field: str
) -> None:
    error = await failure(server, call)
    assert error.status is Status.INVALID_ARGUMENT
    assert (error.message or "").startswith(f"{field}: ")


# -- NOT_FOUND, FAILED_PRECONDITION ------------------------------------------------------------


async def test_an_unknown_task_is_not_found(server: GrpcServer) -> None:
    error = await failure(server, lambda stub: stub.get_task(pb.GetTaskRequest(id="nope")))
    assert error.status is Status.NOT_FOUND
    assert error.message == "no task with id 'nope'"
    cancel = await failure(server, lambda stub: stub.cancel_task(pb.CancelTaskRequest(id="nope")))
    assert cancel.status is Status.NOT_FOUND


async def test_cancelling_a_finished_task_is_a_failed_precondition(server: GrpcServer) -> None:
    async def cancel_twice(stub: TaskQueueStub) -> None:
        submitted = await stub.submit_task(pb.SubmitTaskRequest(type="email"))
        await stub.cancel_task(pb.CancelTaskRequest(id=submitted.id))
        await stub.cancel_task(pb.CancelTaskRequest(id=submitted.id))

    error = await failure(server, cancel_twice)
    assert error.status is Status.FAILED_PRECONDITION
    assert "already ended (cancelled)" in (error.message or "")


async def test_requeueing_a_task_that_is_not_dead_is_a_failed_precondition(
    server: GrpcServer,
) -> None:
    async def requeue_pending(stub: TaskQueueStub) -> None:
        submitted = await stub.submit_task(pb.SubmitTaskRequest(type="email"))
        await stub.requeue_dead_letters(pb.RequeueDeadLettersRequest(id=submitted.id))

    error = await failure(server, requeue_pending)
    assert error.status is Status.FAILED_PRECONDITION
    assert "not in the dead-letter queue" in (error.message or "")


# -- RESOURCE_EXHAUSTED ------------------------------------------------------------------------


async def test_a_full_queue_is_resource_exhausted(redis_url: str) -> None:
    async with grpc_server(redis_url, task__max_queue_depth=1) as server:
        await grpc_call(server.h2c, submit())
        error = await failure(server, submit())
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert "queue of task type 'email' is full" in (error.message or "")


async def test_a_payload_over_the_limit_is_resource_exhausted(redis_url: str) -> None:
    async with grpc_server(redis_url, task__max_payload_bytes="100B") as server:
        error = await failure(server, submit(payload_json='"' + "x" * 200 + '"'))
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert (error.message or "").startswith("payload_json: payload is 202 bytes")


async def test_a_request_over_the_size_limit_is_resource_exhausted(redis_url: str) -> None:
    async with grpc_server(redis_url, server__max_request_bytes="1KiB") as server:
        error = await failure(server, submit(payload_json='"' + "x" * 4000 + '"'))
        assert error.status is Status.RESOURCE_EXHAUSTED
        assert "larger than the server's limit of 1024 bytes" in (error.message or "")
        # The connection that carried it still works.
        assert (await grpc_call(server.h2c, submit())).created


# -- UNAVAILABLE, INTERNAL ---------------------------------------------------------------------


async def test_an_unreachable_redis_is_unavailable() -> None:
    async with grpc_server("redis://127.0.0.1:1", redis_ready=False) as server:
        error = await failure(server, lambda stub: stub.get_queue_stats(pb.GetQueueStatsRequest()))
    assert error.status is Status.UNAVAILABLE
    assert (error.message or "").startswith("Redis is unreachable")


async def test_a_bug_is_internal_and_its_details_stay_in_the_log(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret-detail-123")

    monkeypatch.setattr(server.broker, "queue_report", broken)
    with caplog.at_level(logging.ERROR, logger="taskqueue.api.grpc.dispatcher"):
        error = await failure(server, lambda stub: stub.get_queue_stats(pb.GetQueueStatsRequest()))
    assert error.status is Status.INTERNAL
    assert "secret" not in (error.message or "") and "secret" not in str(error.details)
    (record,) = [r for r in caplog.records if r.name == "taskqueue.api.grpc.dispatcher"]
    assert "GetQueueStats" in record.getMessage()
    assert "secret-detail-123" in caplog.text


async def test_a_known_error_inside_an_exception_group_keeps_its_status(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def grouped(task_id: str) -> None:
        raise ExceptionGroup("from a nursery", [TaskNotFoundError(task_id)])

    monkeypatch.setattr(server.broker, "get", grouped)
    error = await failure(server, lambda stub: stub.get_task(pb.GetTaskRequest(id="x")))
    assert error.status is Status.NOT_FOUND


# -- what only a broken client sends ------------------------------------------------------------

GET_TASK = TASKQUEUE_SERVICE + "GetTask"


async def test_an_unknown_method_is_unimplemented(server: GrpcServer) -> None:
    response = await raw_call(server.h2c, TASKQUEUE_SERVICE + "Frobnicate", frame(b""))
    assert response.grpc_status == Status.UNIMPLEMENTED.value
    assert response.grpc_message == "unknown method /taskqueue.v1.TaskQueue/Frobnicate"

    async def unknown(stub: TaskQueueStub) -> Any:
        return await stub._unary_unary("/taskqueue.v1.Nothing/Here", pb.GetTaskRequest(), pb.Task)

    assert (await failure(server, unknown)).status is Status.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (frame(b"\xff\xff\xff"), "request is not a valid GetTaskRequest message"),
        (frame(b"\x08\x01"), "field 'id': wire type 0, expected 2"),
        (frame(b"\x0a\x02\xff\xfe"), "field 'id': not valid UTF-8"),
        (frame(b"\x0a\x05ab"), "field 1: truncated"),
        (b"\x00\x00\x00\x00\x10abc", "truncated gRPC message: 3 of 16 bytes"),
        (b"\x00\x00", "truncated gRPC message prefix"),
        (b"", "expected one request message, got 0"),
        (frame(b"") + frame(b""), "expected one request message, got 2"),
        (b"\x01\x00\x00\x00\x00", "compressed message without a grpc-encoding"),
    ],
)
async def test_a_body_that_is_not_one_protobuf_message_is_internal(
    server: GrpcServer, body: bytes, message: str
) -> None:
    response = await raw_call(server.h2c, GET_TASK, body)
    assert response.grpc_status == Status.INTERNAL.value
    assert message in response.grpc_message


async def test_a_compressed_request_is_unimplemented(server: GrpcServer) -> None:
    response = await raw_call(server.h2c, GET_TASK, frame(b""), headers={"grpc-encoding": "gzip"})
    assert response.grpc_status == Status.UNIMPLEMENTED.value


async def test_a_malformed_timeout_is_internal(server: GrpcServer) -> None:
    response = await raw_call(server.h2c, GET_TASK, frame(b""), headers={"grpc-timeout": "soon"})
    assert response.grpc_status == Status.INTERNAL.value
    assert "malformed grpc-timeout" in response.grpc_message


async def test_a_request_without_te_trailers_gets_its_status_in_the_headers(
    server: GrpcServer,
) -> None:
    response = await raw_call(server.h2c, GET_TASK, frame(b""), te=None)
    assert response.status == 200
    assert response.headers["grpc-status"] == str(Status.INTERNAL.value)
    assert "te: trailers" in response.grpc_message


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content_type": "application/json"}, 415),
        ({"content_type": "application/grpc+json"}, 415),
        ({"method": "GET"}, 405),
    ],
)
async def test_a_request_that_is_not_grpc_gets_an_http_error(
    server: GrpcServer, kwargs: dict[str, Any], status: int
) -> None:
    response = await raw_call(server.h2c, GET_TASK, b"", **kwargs)
    assert response.status == status


async def test_grpc_over_http1_is_refused(server: GrpcServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://{server.h2c.host}:{server.h2c.port}{GET_TASK}",
            content=frame(b""),
            headers={"content-type": "application/grpc", "te": "trailers"},
        )
    assert response.status_code == 505
