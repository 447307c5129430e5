"""The parts of the gRPC API that need no socket: the wire format, the strict protobuf check,
the conversions between model and messages, and how an error becomes a status."""

from __future__ import annotations

import math

import pytest
from grpclib.const import Status

from taskqueue.api.errors import ApiError
from taskqueue.api.grpc import convert, pb
from taskqueue.api.grpc.dispatcher import _outcome_of
from taskqueue.api.grpc.framing import (
    check_protobuf,
    encode_message,
    frame,
    parse_timeout,
    unframe,
)
from taskqueue.api.grpc.response import Outcome
from taskqueue.errors import InvalidTaskError, TaskNotFoundError
from taskqueue.models import MAX_BATCH, Priority, Task, TaskEvent, TaskState

# -- frames, timeouts, messages ----------------------------------------------------------------


def test_frames_round_trip() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert unframe(frame(b"abc") + frame(b"")) == [b"abc", b""]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600), ("2M", 120), ("3S", 3), ("250m", 0.25), ("10u", 1e-5), ("99999999n", 0.1)],
)
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert math.isclose(parse_timeout(value), seconds, rel_tol=1e-6)


@pytest.mark.parametrize("value", ["", "5", "5s", "123456789S", "-1S", "1.5S"])
def test_a_malformed_grpc_timeout_is_refused(value: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_timeout(value)
    assert info.value.grpc_status == "INTERNAL"


def test_grpc_message_is_percent_encoded_outside_printable_ascii() -> None:
    assert encode_message("plain text: ok") == b"plain text: ok"
    assert encode_message("100% h\u00e9\n") == b"100%25 h%C3%A9%0A"


# -- the strict protobuf check -----------------------------------------------------------------


def test_well_formed_messages_pass_the_check() -> None:
    request = pb.SubmitTasksRequest(
        tasks=[pb.SubmitTaskRequest(type="a", timeout_seconds=1.5, eta_ms=5, max_retries=-1)]
    )
    check_protobuf(bytes(request), pb.SubmitTasksRequest)
    check_protobuf(bytes(pb.QueueStats(by_state={"pending": 3})), pb.QueueStats)
    check_protobuf(b"\xa8\x06\x01", pb.GetTaskRequest)  # an unknown field 101 is fine


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x02\x08\x01",  # tasks[0].type is a varint
        b"\x0a\x05\x0a\x01",  # a nested message longer than its data
        b"\x29\x00\x00",  # fixed64 field cut short
        b"\x0b",  # wire type 3 (a group)
        b"\x80",  # an unterminated varint
        b"\x00",  # field number 0
    ],
)
def test_malformed_messages_fail_the_check(data: bytes) -> None:
    with pytest.raises(ValueError):
        check_protobuf(data, pb.SubmitTasksRequest)


# -- conversions -------------------------------------------------------------------------------


def test_a_bare_submission_leaves_the_defaults_to_the_broker() -> None:
    # None: enqueue.lua fills in the task type's registered default, else the broker's.
    submission = convert.submission(pb.SubmitTaskRequest(type="email"))
    assert submission.payload is None
    assert (
        submission.priority,
        submission.max_retries,
        submission.timeout,
        submission.delay,
        submission.eta,
    ) == (None, None, None, None, None)
    assert submission.idempotency_key is None


def test_a_full_submission_is_converted_field_by_field() -> None:
    submission = convert.submission(
        pb.SubmitTaskRequest(
            type="email",
            payload_json='{"a": [1]}',
            priority=pb.Priority.CRITICAL,
            max_retries=0,
            timeout_seconds=2.5,
            eta_ms=1_700_000_000_500,
        ),
        idempotency_key="from-metadata",
    )
    assert submission.payload == {"a": [1]}
    assert submission.priority == "critical"
    assert (submission.max_retries, submission.timeout) == (0, 2.5)
    assert submission.eta == 1_700_000_000.5
    assert submission.idempotency_key == "from-metadata"


def test_the_request_key_wins_over_the_metadata_key() -> None:
    request = pb.SubmitTaskRequest(type="email", idempotency_key="mine")
    assert convert.submission(request, "metadata").idempotency_key == "mine"


@pytest.mark.parametrize(
    ("broker_field", "request_field"),
    [("timeout", "timeout_seconds"), ("3.eta", "tasks[3].eta_ms"), ("type", "type")],
)
def test_broker_field_names_become_request_field_names(
    broker_field: str, request_field: str
) -> None:
    renamed = convert.request_field(InvalidTaskError("bad", field=broker_field))
    assert (renamed.field, str(renamed)) == (request_field, "bad")


def test_a_batch_over_the_limit_is_refused() -> None:
    batch = pb.SubmitTasksRequest(tasks=[pb.SubmitTaskRequest(type="a")] * (MAX_BATCH + 1))
    with pytest.raises(InvalidTaskError) as info:
        convert.submissions(batch)
    assert info.value.field == "tasks"


def test_a_task_becomes_a_message_with_json_text() -> None:
    task = Task(
        id="t1",
        type="email",
        priority=Priority.LOW,
        payload={"x": 1},
        state=TaskState.SUCCEEDED,
        result=None,
        progress=[1, 2],
        started_ms=5,
    )
    message = convert.task_message(task)
    assert (message.payload_json, message.result_json, message.progress_json) == (
        '{"x":1}',
        "null",
        "[1,2]",
    )
    assert (message.priority, message.state) == (pb.Priority.LOW, pb.TaskState.SUCCEEDED)
    assert (message.started_ms, message.finished_ms) == (5, None)


def test_a_pending_task_has_no_result() -> None:
    assert convert.task_message(Task(id="t", type="a")).result_json is None


def test_events_become_messages() -> None:
    assert convert.event_message(TaskEvent("t", "a", "dead")).state == pb.TaskState.DEAD
    progress = convert.event_message(TaskEvent("t", "a", "progress"))
    assert (progress.state, progress.progress) == (pb.TaskState.ACTIVE, True)


# -- errors become statuses --------------------------------------------------------------------


def test_a_field_error_names_the_field_in_message_and_trailer() -> None:
    outcome = Outcome.of(ApiError(422, "INVALID_ARGUMENT", "Invalid", "too big", "limit"))
    assert outcome == Outcome(
        Status.INVALID_ARGUMENT, "limit: too big", ((b"taskqueue-field", b"limit"),)
    )


def test_a_single_error_in_nested_groups_keeps_its_status() -> None:
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [TaskNotFoundError("x")])])
    assert _outcome_of(nested, "/m").status is Status.NOT_FOUND


def test_several_errors_in_a_group_are_internal() -> None:
    group = ExceptionGroup("two", [TaskNotFoundError("x"), TaskNotFoundError("y")])
    assert _outcome_of(group, "/m") == Outcome(
        Status.INTERNAL, "internal error; the server's log has the details"
    )
