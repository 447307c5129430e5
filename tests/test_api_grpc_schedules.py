"""Schedules over gRPC, through a real server socket and the generated grpclib stub: create,
read, page, replace, pause, resume, delete; the errors REST answers, as gRPC statuses naming
the field; write scope enforced; a schedule made over gRPC reads the same over REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import api_server
from grpc_helpers import GrpcServer, Target, grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.auth import hash_token
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.wire import iso

NIGHTLY = pb.ScheduleSpec(
    name="nightly",
    type="report.build",
    payload_json='{"format":"pdf"}',
    cron="0 3 * * *",
    timezone="Europe/Berlin",
    missed=pb.MissedPolicy.ONCE,
    priority=pb.Priority.HIGH,
    max_retries=2,
    timeout_seconds=60,
)


def every(name: str, seconds: float = 60, **fields: Any) -> pb.ScheduleSpec:
    return pb.ScheduleSpec(name=name, type="echo", every_seconds=seconds, **fields)


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url) as server:
        yield server


async def failure(target: Target, call: Any, *, token: str | None = None) -> GRPCError:
    """The error a call through the stub fails with (it must fail)."""
    with pytest.raises(GRPCError) as info:
        await grpc_call(target, call, token=token)
    return info.value


# -- the round trip ---------------------------------------------------------------------------


async def test_a_schedule_is_created_read_listed_and_deleted(server: GrpcServer) -> None:
    async def use(stub: TaskQueueStub) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["created"] = await stub.create_schedule(pb.CreateScheduleRequest(spec=NIGHTLY))
        out["got"] = await stub.get_schedule(pb.GetScheduleRequest(name="nightly"))
        for name in ("b", "a"):
            await stub.create_schedule(pb.CreateScheduleRequest(spec=every(name)))
        first = await stub.list_schedules(pb.ListSchedulesRequest(limit=2))
        rest = await stub.list_schedules(pb.ListSchedulesRequest(cursor=first.next_cursor))
        out["pages"] = [first, rest]
        out["deleted"] = await stub.delete_schedule(pb.DeleteScheduleRequest(name="nightly"))
        return out

    out = await grpc_call(server.h2c, use)
    created: pb.Schedule = out["created"]
    assert created.spec == NIGHTLY
    assert created.paused is False and created.fired == 0
    assert created.next_run_ms == created.upcoming_ms[0]
    assert len(created.upcoming_ms) == 5
    assert all(iso(tick).endswith(":00:00.000Z") for tick in created.upcoming_ms)  # type: ignore[union-attr]  # 03:00 Berlin, in UTC
    assert created.created_ms > 0 and created.updated_ms == created.created_ms
    assert created.last_task_state == pb.TaskState.UNSPECIFIED and created.last_run_ms is None
    assert out["got"] == created
    first, rest = out["pages"]
    assert [s.spec.name for s in first.schedules] == ["a", "b"]
    assert first.schedules[0].spec.every_seconds == 60
    assert first.schedules[0].spec.missed == pb.MissedPolicy.SKIP  # unset: the default, read back
    assert ([s.spec.name for s in rest.schedules], rest.next_cursor) == (["nightly"], "")
    assert out["deleted"] == pb.DeleteScheduleResponse()

    gone = await failure(
        server.h2c, lambda stub: stub.get_schedule(pb.GetScheduleRequest(name="nightly"))
    )
    assert (gone.status, gone.message) == (Status.NOT_FOUND, "no schedule named 'nightly'")
    again = await failure(
        server.h2c, lambda stub: stub.delete_schedule(pb.DeleteScheduleRequest(name="nightly"))
    )
    assert again.status is Status.NOT_FOUND


async def test_put_creates_then_replaces_keeping_the_pause(server: GrpcServer) -> None:
    async def use(stub: TaskQueueStub) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["created"] = await stub.put_schedule(pb.PutScheduleRequest(spec=every("poll", 30)))
        out["same"] = await stub.put_schedule(pb.PutScheduleRequest(spec=every("poll", 30)))
        out["paused"] = await stub.pause_schedule(pb.PauseScheduleRequest(name="poll"))
        out["replaced"] = await stub.put_schedule(pb.PutScheduleRequest(spec=every("poll", 60)))
        out["resumed"] = await stub.resume_schedule(pb.ResumeScheduleRequest(name="poll"))
        return out

    out = await grpc_call(server.h2c, use)
    assert (out["created"].created, out["same"].created, out["replaced"].created) == (
        True,
        False,
        False,
    )
    assert out["created"].schedule.next_run_ms % 30_000 == 0
    paused: pb.Schedule = out["paused"]
    assert paused.paused is True and paused.next_run_ms is None
    assert len(paused.upcoming_ms) == 5  # the ticks it would fire at
    replaced: pb.Schedule = out["replaced"].schedule
    assert replaced.paused is True  # a new definition keeps the pause
    assert replaced.spec.every_seconds == 60
    resumed: pb.Schedule = out["resumed"]
    assert resumed.paused is False
    assert resumed.next_run_ms is not None and resumed.next_run_ms % 60_000 == 0
    assert (await server.broker.schedule("poll")).spec.every == 60


async def test_create_refuses_a_taken_name(server: GrpcServer) -> None:
    await grpc_call(
        server.h2c, lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=NIGHTLY))
    )
    other = every("nightly")
    error = await failure(
        server.h2c, lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=other))
    )
    assert error.status is Status.FAILED_PRECONDITION
    assert error.message == ("a schedule named 'nightly' exists: replace it or delete it first")
    assert (await server.broker.schedule("nightly")).spec.cron == "0 3 * * *"  # untouched


async def test_pausing_or_resuming_an_unknown_schedule_is_not_found(server: GrpcServer) -> None:
    pause = await failure(
        server.h2c, lambda stub: stub.pause_schedule(pb.PauseScheduleRequest(name="nope"))
    )
    resume = await failure(
        server.h2c, lambda stub: stub.resume_schedule(pb.ResumeScheduleRequest(name="nope"))
    )
    assert (pause.status, pause.message) == (Status.NOT_FOUND, "no schedule named 'nope'")
    assert resume.status is Status.NOT_FOUND


# -- INVALID_ARGUMENT names the field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            pb.ScheduleSpec(name="x", type="echo", cron="0 3 * *"),
            "spec.cron: '0 3 * *' has 4 fields, expected 5 (minute hour day month weekday) or 6",
        ),
        (
            pb.ScheduleSpec(name="x", type="echo", cron="0 99 * * *"),
            "spec.cron: '0 99 * * *' is not a valid cron expression",
        ),
        (
            # cron and every_seconds are a oneof, so "both" cannot be sent: neither is the case
            pb.ScheduleSpec(name="x", type="echo"),
            "spec.cron: give exactly one of 'cron' and 'every'",
        ),
        (
            every("x", timezone="Mars/Olympus"),
            "spec.timezone: unknown time zone 'Mars/Olympus': expected an IANA name such as "
            "'UTC' or 'Europe/Berlin'",
        ),
        (every("x", 0.5), "spec.every_seconds: Expected float >= 1.0, not 0.5"),
        (every("x", timeout_seconds=-1), "spec.timeout_seconds: Expected float > 0.0, not -1"),
        (pb.ScheduleSpec(type="echo", every_seconds=60), "spec.name: this field is required"),
        (every("has space"), "spec.name: invalid schedule name 'has space': "),
        (every("x", payload_json="{nope"), "spec.payload_json: spec.payload_json is not valid"),
        (every("x", max_retries=-1), "spec.max_retries: "),
        (every("x", priority=99), "spec.priority: unknown priority 99"),
        (every("x", missed=7), "spec.missed: unknown missed policy 7"),
    ],
)
async def test_an_invalid_definition_names_its_field(
    server: GrpcServer, spec: pb.ScheduleSpec, message: str
) -> None:
    for call in (
        lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=spec)),
        lambda stub: stub.put_schedule(pb.PutScheduleRequest(spec=spec)),
    ):
        error = await failure(server.h2c, call)
        assert error.status is Status.INVALID_ARGUMENT
        assert (error.message or "").startswith(message), error.message
    assert (await server.broker.schedules()).items == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda stub: stub.get_schedule(pb.GetScheduleRequest(name="a/b")),
            "name: invalid schedule name 'a/b': ",
        ),
        (
            lambda stub: stub.pause_schedule(pb.PauseScheduleRequest()),
            "name: invalid schedule name '': ",
        ),
        (lambda stub: stub.list_schedules(pb.ListSchedulesRequest(limit=5000)), "limit: "),
        (lambda stub: stub.list_schedules(pb.ListSchedulesRequest(cursor="x")), "cursor: "),
    ],
)
async def test_other_invalid_requests_name_their_field(
    server: GrpcServer, call: Any, message: str
) -> None:
    error = await failure(server.h2c, call)
    assert error.status is Status.INVALID_ARGUMENT
    assert (error.message or "").startswith(message), error.message


async def test_a_payload_over_the_limit_is_resource_exhausted(redis_url: str) -> None:
    spec = every("big", payload_json='"' + "x" * 200 + '"')
    async with grpc_server(redis_url, task__max_payload_bytes=100) as server:
        error = await failure(
            server.h2c, lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=spec))
        )
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert (error.message or "").startswith("spec.payload_json: 202 bytes of JSON, over ")


# -- auth -------------------------------------------------------------------------------------


async def test_a_read_token_reads_schedules_but_may_not_write_them(
    redis_url: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"{hash_token('reader')} read\n")
    writes = [
        lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=every("w"))),
        lambda stub: stub.put_schedule(pb.PutScheduleRequest(spec=every("w"))),
        lambda stub: stub.pause_schedule(pb.PauseScheduleRequest(name="kept")),
        lambda stub: stub.resume_schedule(pb.ResumeScheduleRequest(name="kept")),
        lambda stub: stub.delete_schedule(pb.DeleteScheduleRequest(name="kept")),
    ]
    async with grpc_server(
        redis_url, server__tokens=["admin-token"], server__token_file=str(token_file)
    ) as server:
        await grpc_call(
            server.h2c,
            lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=every("kept"))),
            token="admin-token",
        )
        for write in writes:
            error = await failure(server.h2c, write, token="reader")
            assert error.status is Status.PERMISSION_DENIED
        listed = await grpc_call(
            server.h2c, lambda stub: stub.list_schedules(pb.ListSchedulesRequest()), token="reader"
        )
        got = await grpc_call(
            server.h2c,
            lambda stub: stub.get_schedule(pb.GetScheduleRequest(name="kept")),
            token="reader",
        )
        assert [s.spec.name for s in listed.schedules] == ["kept"]
        assert got.paused is False


# -- the same schedule over REST --------------------------------------------------------------


async def test_a_schedule_made_over_grpc_reads_the_same_over_rest(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        host, _, port = server.url.removeprefix("http://").rpartition(":")
        made = await grpc_call(
            Target(host, int(port)),
            lambda stub: stub.create_schedule(pb.CreateScheduleRequest(spec=NIGHTLY)),
        )
        response = await client.get("/api/v1/schedules/nightly")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["spec"] == {
        "name": "nightly",
        "type": "report.build",
        "payload": {"format": "pdf"},
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "missed": "once",
        "priority": "high",
        "max_retries": 2,
        "timeout": 60.0,
    }
    assert document["paused"] is made.paused
    for name in ("next_run_ms", "last_run_ms", "last_tick_ms", "created_ms", "updated_ms"):
        assert document[name] == getattr(made, name), name
    assert (document["fired"], document["skipped"]) == (made.fired, made.skipped)
    assert document["upcoming_at"] == [iso(tick) for tick in made.upcoming_ms]  # daily ticks
