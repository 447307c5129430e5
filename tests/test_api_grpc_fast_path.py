"""SubmitTasks's fast path (:mod:`taskqueue.api.grpc.fastpath`) against the betterproto path it
stands in for: the same submissions from the same bytes, the same response bytes, and, for
anything the fast path does not take, the same answer from the server as before."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import attrs
import pytest
from grpc_helpers import TASKQUEUE_SERVICE, GrpcServer, grpc_server, raw_call
from grpclib.const import Status
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskqueue import _json
from taskqueue.api.errors import ApiError
from taskqueue.api.grpc import convert, fastpath, pb
from taskqueue.api.grpc.framing import MAX_FIELDS, count_entries, decode, frame
from taskqueue.broker import Submission, Submitted
from taskqueue.errors import InvalidTaskError
from taskqueue.models import MAX_BATCH, TaskState

SUBMIT_TASKS = TASKQUEUE_SERVICE + "SubmitTasks"
CHECKS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(data: bytes) -> list[Submission] | Exception:
    """What the betterproto path makes of a request message's bytes: its submissions, or the
    error it answers with (what the dispatcher's entry count refuses included). Any error:
    a few malformed messages pass the strict check and then break betterproto or
    :mod:`convert` (a scalar field sent packed, say: INTERNAL), and those too must be left to
    that path, to be answered as before."""
    try:
        count_entries(data, pb.SubmitTasksRequest)
        return convert.submissions(decode(data, pb.SubmitTasksRequest))
    except Exception as exc:
        return exc


def agrees(data: bytes) -> list[Submission] | None:
    """The fast path's submissions of ``data``, checked against :func:`reference`: equal when it
    takes the request, and it must leave every request the betterproto path refuses to it."""
    fast = fastpath.submissions(data)
    expected = reference(data)
    if isinstance(expected, Exception):
        assert fast is None, f"the fast path took what the reference refuses: {expected!r}"
    elif fast is not None:
        assert fast == expected
    return fast


# -- generated messages ----------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=False)  # NaN != NaN: test_a_nan_timeout_is_kept checks it
JSON = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | DOUBLES.filter(lambda f: abs(f) != float("inf"))
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
PAYLOADS = st.one_of(
    st.just(""),
    JSON.map(_json.dumps),
    st.sampled_from(["{not json", "[1,", "nul", " ", '"\\ud800"']),  # refused by both paths
)
DEPENDENCIES = st.one_of(
    st.builds(pb.Dependency, task_id=st.text()),
    st.builds(pb.Dependency, index=st.integers(0, 2**32 - 1)),
    st.just(pb.Dependency()),  # no ref: refused
)


@st.composite
def tasks(draw: st.DrawFn) -> pb.SubmitTaskRequest:
    task = pb.SubmitTaskRequest(
        type=draw(st.text()),
        payload_json=draw(PAYLOADS),
        priority=pb.Priority.try_value(
            draw(st.sampled_from([0, 1, 2, 3, 4, 5, 99]))
        ),  # 5+: unknown
        idempotency_key=draw(st.text()),
        depends_on=draw(st.lists(DEPENDENCIES, max_size=3)),
        on_dependency_failure=pb.DependencyFailure.try_value(draw(st.sampled_from([0, 1, 2, 7]))),
    )
    for name, values in (
        ("max_retries", INT32),
        ("timeout_seconds", DOUBLES),
        ("delay_seconds", DOUBLES),
        ("eta_ms", INT64),
        ("unique", st.booleans()),
        ("expires_in_seconds", DOUBLES),
        ("expires_at_ms", INT64),
    ):
        if draw(st.booleans()):
            setattr(task, name, draw(values))
    return task


@CHECKS
@given(st.lists(tasks(), max_size=8))
def test_generated_requests_decode_as_the_betterproto_path_converts_them(
    batch: list[pb.SubmitTaskRequest],
) -> None:
    data = bytes(pb.SubmitTasksRequest(tasks=batch))
    fast = agrees(data)
    if not isinstance(reference(data), Exception):
        assert fast is not None, "a well-formed, valid request must take the fast path"


@CHECKS
@given(st.lists(tasks(), max_size=4), st.data())
def test_mangled_bytes_are_decoded_the_same_or_left_to_betterproto(
    batch: list[pb.SubmitTaskRequest], data: st.DataObject
) -> None:
    message = bytearray(bytes(pb.SubmitTasksRequest(tasks=batch)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(message)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(message):
            message[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del message[at:]
        else:
            message[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    agrees(bytes(message))


@CHECKS
@given(st.binary(max_size=64))
@example(b"\x0a\x02\x08\x01")  # tasks[0].type is a varint
@example(b"\x0a\x05\x0a\x01")  # a nested message longer than its data
@example(b"\x0a\x03\x29\x00\x00")  # fixed64 field cut short
@example(b"\x0b")  # wire type 3 (a group)
@example(b"\x80")  # an unterminated varint
@example(b"\x00")  # field number 0
@example(b"\x0a\x02\x0a\xff")  # a length past the end
@example(b"\x0a\x03\x0a\x01\xff")  # invalid UTF-8
@example(b"\x0a\x02\x4a\x00")  # a dependency without a ref
@example(b"\x0a\x03\x4a\x01\x08")  # a dependency's field truncated
@example(b"\x08\x01")  # tasks as a varint
@example(b"\x0a\x01\x8a")  # a long key cut short
@example(b"\x0a\x0b\x20" + b"\xff" * 9 + b"\x7f")  # a varint over 64 bits
def test_arbitrary_bytes_are_decoded_the_same_or_left_to_betterproto(data: bytes) -> None:
    agrees(data)


# -- unknown fields, repeated fields, oneofs ---------------------------------------------------


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, value: bytes) -> bytes:
    """A length-delimited field."""
    return key(number, 2) + varint(len(value)) + value


#: One unknown field of each wire type, with numbers past every message's own (and one long).
UNKNOWN = (
    key(112, 0)
    + varint(2**63)
    + key(113, 1)
    + b"\x01" * 8
    + field(114, b"\xff\xfe not UTF-8: nobody reads it")
    + key(115, 5)
    + b"\x02" * 4
    + key(100_000, 0)
    + b"\x05"
)


def test_unknown_fields_are_skipped_at_every_level() -> None:
    dependency = field(9, bytes(pb.Dependency(index=0)) + UNKNOWN)
    first = field(1, bytes(pb.SubmitTaskRequest(type="a", payload_json="[1]")) + UNKNOWN)
    second = field(1, UNKNOWN + bytes(pb.SubmitTaskRequest(type="b", eta_ms=-5)) + dependency)
    data = UNKNOWN + first + UNKNOWN + second + UNKNOWN
    assert agrees(data) == [
        Submission(type="a", payload=[1]),
        Submission(type="b", eta=-0.005, depends_on=[0]),
    ]


def test_the_last_value_of_a_field_wins_and_repeated_ones_add_up() -> None:
    task = (
        field(1, b"first")
        + field(1, b"last")
        + key(3, 0)
        + b"\x01"
        + key(3, 0)
        + b"\x04"
        + field(9, field(1, b"id-1"))
        + field(9, key(2, 0) + b"\x01")
        + key(11, 0)
        + b"\x01"
        + key(11, 0)
        + b"\x00"
    )
    assert agrees(field(1, task)) == [
        Submission(type="last", priority="low", depends_on=["id-1", 1], unique=False)
    ]


@pytest.mark.parametrize(
    ("dependency", "ref"),
    [
        (field(1, b"id") + key(2, 0) + b"\x03", 3),
        (key(2, 0) + b"\x03" + field(1, b"id"), "id"),
        (field(1, b""), ""),  # set, though empty
        (key(2, 0) + b"\x00", 0),
    ],
)
def test_the_last_member_of_a_oneof_set_wins(dependency: bytes, ref: str | int) -> None:
    data = field(1, field(1, b"t") + field(9, dependency))
    assert agrees(data) == [Submission(type="t", depends_on=[ref])]


def test_out_of_range_integers_are_kept_as_betterproto_keeps_them() -> None:
    max_retries = key(4, 0) + varint(2**40 + 7)  # int32: the low 32 bits
    eta = key(7, 0) + varint(2**64 - 1000)  # int64: -1000
    index = field(9, key(2, 0) + varint(2**40))  # uint32: all of it
    [submission] = agrees(field(1, field(1, b"t") + max_retries + eta + index)) or []
    assert (submission.max_retries, submission.eta, submission.depends_on) == (7, -1.0, [2**40])


def test_a_nan_timeout_is_kept() -> None:
    data = field(1, key(5, 1) + struct.pack("<d", float("nan")))
    [submission] = fastpath.submissions(data) or []
    assert submission.timeout != submission.timeout


def test_a_full_batch_is_decoded_and_one_more_task_is_left_to_betterproto() -> None:
    task = field(1, bytes(pb.SubmitTaskRequest(type="t")))
    assert len(agrees(task * MAX_BATCH) or []) == MAX_BATCH
    assert fastpath.submissions(task * (MAX_BATCH + 1)) is None


def test_a_request_over_the_field_limit_is_left_to_betterproto() -> None:
    empty = field(1, b"")
    assert fastpath.submissions(empty * 100 + key(20, 0) + b"\x00") is not None
    over = field(1, (key(20, 0) + b"\x00") * MAX_FIELDS)
    assert fastpath.submissions(over) is None
    assert isinstance(reference(over), ApiError | InvalidTaskError)


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x03\x1a\x01\x02",  # priority sent packed: convert fails on a list
        b"\x0a\x03\x3a\x01\x05",  # eta_ms sent packed
        b"\x0a\x03\x1a\x01\x80",  # packed, with a truncated varint inside
    ],
)
def test_what_breaks_the_betterproto_path_is_left_to_it(data: bytes) -> None:
    assert not isinstance(reference(data), ApiError | InvalidTaskError | list)
    assert agrees(data) is None


# -- the response ------------------------------------------------------------------------------

SUBMITTED = st.builds(
    Submitted,
    id=st.text(),
    state=st.sampled_from(TaskState),
    created=st.booleans(),
    warnings=st.lists(st.text(), max_size=3),
)


@CHECKS
@given(st.lists(SUBMITTED, max_size=10))
def test_the_response_is_encoded_as_betterproto_encodes_it(submitted: list[Submitted]) -> None:
    message = pb.SubmitTasksResponse(results=[convert.submitted_message(s) for s in submitted])
    fast = fastpath.submitted_bytes(submitted)
    assert fast == bytes(message)
    assert pb.SubmitTasksResponse().parse(fast) == message


def test_a_long_id_and_many_warnings_get_multi_byte_lengths() -> None:
    submitted = [Submitted("x" * 300, TaskState.BLOCKED, True, warnings=["w" * 200] * 3)]
    message = pb.SubmitTasksResponse(results=[convert.submitted_message(s) for s in submitted])
    assert fastpath.submitted_bytes(submitted) == bytes(message)


# -- through the server ------------------------------------------------------------------------


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url) as server:
        yield server


async def test_the_service_offers_the_fast_path_unless_submit_tasks_is_overridden(
    server: GrpcServer,
) -> None:
    assert server.app.routes[SUBMIT_TASKS].wire is not None
    assert server.app.routes[TASKQUEUE_SERVICE + "SubmitTask"].wire is None

    from taskqueue.api.grpc.service import TaskQueueService

    class Custom(TaskQueueService):
        async def submit_tasks(self, request: pb.SubmitTasksRequest) -> pb.SubmitTasksResponse:
            return pb.SubmitTasksResponse()

    assert Custom(server.broker, server.events).wire_methods() == {}


def task(**fields: object) -> bytes:
    return field(1, bytes(pb.SubmitTaskRequest(**{"type": "email", **fields})))  # type: ignore[arg-type]


OK = task()


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(OK * 2 + UNKNOWN, id="unknown fields"),
        pytest.param(
            OK + task(depends_on=[pb.Dependency(index=0)], priority=pb.Priority.HIGH),
            id="a dependency",
        ),
        pytest.param(b"", id="empty"),
        pytest.param(OK + task(payload_json="{not json"), id="bad JSON"),
        pytest.param(OK + task(priority=99), id="unknown priority"),
        pytest.param(OK + task(on_dependency_failure=7), id="unknown on_dependency_failure"),
        pytest.param(OK + task(depends_on=[pb.Dependency()]), id="no ref"),
        pytest.param(OK + task(max_retries=-1), id="max_retries"),  # the broker's checks
        pytest.param(OK + task(type="has space"), id="type"),
        pytest.param(OK + task(timeout_seconds=-1.0), id="timeout_seconds"),
        pytest.param(OK + task(delay_seconds=5.0, eta_ms=1), id="delay and eta"),
        pytest.param(OK + task(depends_on=[pb.Dependency(index=5)]), id="a later index"),
        pytest.param(OK + b"\x0a\x02\x08\x01", id="wrong wire type"),
        pytest.param(OK + b"\x0a\x03\x0a\x01\xff", id="invalid UTF-8"),
        pytest.param(OK + b"\x0a\x05\x0a\x01", id="truncated"),
        pytest.param(OK * (MAX_BATCH + 1), id="too many tasks"),
    ],
)
async def test_the_server_answers_as_the_betterproto_path_does(
    server: GrpcServer, message: bytes
) -> None:
    fast = await raw_call(server.h2c, SUBMIT_TASKS, frame(message))
    route = server.app.routes[SUBMIT_TASKS]
    server.app.routes[SUBMIT_TASKS] = attrs.evolve(route, wire=None)
    try:
        slow = await raw_call(server.h2c, SUBMIT_TASKS, frame(message))
    finally:
        server.app.routes[SUBMIT_TASKS] = route
    assert (fast.grpc_status, fast.grpc_message) == (slow.grpc_status, slow.grpc_message)
    assert fast.trailers == slow.trailers
    if fast.grpc_status == Status.OK.value:
        replies = [pb.SubmitTasksResponse().parse(r.data[5:]) for r in (fast, slow)]
        for reply in replies:  # the ids differ; the rest must not
            for result in reply.results:
                result.id = ""
        assert replies[0] == replies[1]
