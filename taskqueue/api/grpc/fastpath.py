"""SubmitTasks without betterproto: the request's bytes straight to submissions, and the
submitted tasks straight to the response's bytes.

betterproto (pure Python) spent ~95% of a 100-task SubmitTasks call parsing the request,
converting it (:func:`convert.submissions`) and encoding the response; this module does the same
work with a hand-written reader and writer of the protobuf wire format for these two messages
only (``SubmitTasksRequest`` -> ``SubmitTaskRequest`` -> ``Dependency``, and
``SubmitTasksResponse`` -> ``SubmitTaskResponse``; the field numbers of
``proto/taskqueue/v1/taskqueue.proto``).

The betterproto path stays the reference: :func:`submissions` gives what
``convert.submissions(framing.decode(data, pb.SubmitTasksRequest))`` would, or None whenever it
meets anything but a well-formed request whose every value converts without error (a wrong wire
type, a truncated field, invalid UTF-8 or JSON, an unknown enum number, a dependency with no
``ref``, too many fields...). The caller then takes the betterproto path, which refuses the
request with the very status and message it always did. ``tests/test_api_grpc_fast_path.py``
compares both paths on generated messages.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

from taskqueue import _json
from taskqueue.api.grpc.framing import MAX_FIELDS
from taskqueue.api.grpc.gen.taskqueue import v1 as pb
from taskqueue.broker import Submission, Submitted
from taskqueue.models import MAX_BATCH, DependencyFailure, TaskState

#: Priority numbers -> the model's names (UNSPECIFIED, 0, is None: the default applies).
_PRIORITIES = {int(p): p.name.lower() for p in pb.Priority if p and p.name}
#: The highest field number of SubmitTaskRequest in the proto: a field this decoder does not
#: read (one added to the proto since) sends the request down the betterproto path instead of
#: being skipped as unknown.
_TASK_FIELDS = max(
    f.metadata["betterproto"].number for f in dataclasses.fields(pb.SubmitTaskRequest)
)
#: DependencyFailure numbers -> the model's (UNSPECIFIED is None).
_FAILURES = {
    int(f): DependencyFailure(f.name.lower()) for f in pb.DependencyFailure if f and f.name
}
#: The model's states -> their TaskState field (number 2) as it goes on the wire (every state
#: has a number under 128, none 0: one byte, never left out as a default).
_STATE_FIELDS = {s: bytes((0x10, int(pb.TaskState[s.name]))) for s in TaskState}
assert all(0 < field[1] < 0x80 for field in _STATE_FIELDS.values())
_DOUBLE = struct.Struct("<d")
_U64 = 1 << 64


class _Unhandled(Exception):
    """Something only the betterproto path may judge."""


def submissions(data: bytes) -> list[Submission] | None:
    """The submissions of a ``SubmitTasksRequest``'s bytes; None to take the betterproto path."""
    try:
        return _request(data)
    # LookupError: truncated data, an unknown enum number; ValueError: invalid UTF-8 or JSON
    except (_Unhandled, LookupError, ValueError, struct.error):
        return None


def submitted_bytes(submitted: Sequence[Submitted]) -> bytes:
    """The bytes of ``SubmitTasksResponse(results=[convert.submitted_message(s) ...])``, as
    betterproto writes them (fields in number order, defaults left out)."""
    out = bytearray()
    for s in submitted:
        item = bytearray()
        if s.id:
            _string(item, 0x0A, s.id)
        item += _STATE_FIELDS[s.state]
        if s.created:
            item += b"\x18\x01"
        for warning in s.warnings:
            _string(item, 0x22, warning)
        out.append(0x0A)
        _write_varint(out, len(item))
        out += item
    return bytes(out)


# -- writing ----------------------------------------------------------------------------------


def _string(out: bytearray, key: int, text: str) -> None:
    encoded = text.encode()
    out.append(key)
    _write_varint(out, len(encoded))
    out += encoded


def _write_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


# -- reading ----------------------------------------------------------------------------------
#
# Each reader walks one message from ``at`` to ``end``; a read past ``end`` (or past the data,
# an IndexError) is a truncated message. The known fields' keys are all one byte, compared as
# such; any other key is read as a varint and is either an unknown field (skipped, as protobuf
# requires) or a known field of the wrong wire type (unhandled).


def _int64(value: int) -> int:
    """A varint's value read as protobuf's int64 (two's complement in 64 bits)."""
    return ((value & 0xFFFFFFFFFFFFFFFF) ^ 1 << 63) - (1 << 63)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= _U64:
                raise _Unhandled("varint over 64 bits")
            return value, at
        shift += 7
        if shift >= 70:
            raise _Unhandled("varint longer than 10 bytes")


def _length(data: bytes, at: int, end: int) -> tuple[int, int]:
    """Where a length-delimited value that starts at ``at`` begins, and where it ends."""
    size = data[at]
    if size < 0x80:
        at += 1
    else:
        size, at = _varint(data, at)
    stop = at + size
    if stop > end:
        raise _Unhandled("truncated field")
    return at, stop


def _unknown(data: bytes, at: int, end: int, known: int) -> int:
    """Skip the field whose key starts at ``at``; unhandled if its number is 0 or a known
    one (1 to ``known``: a known field of the wrong wire type, or a key written long)."""
    key, at = _varint(data, at)
    number, wire = key >> 3, key & 7
    if number <= known:
        raise _Unhandled(f"field {number}, wire type {wire}")
    if wire == 0:
        _, at = _varint(data, at)
    elif wire == 1:
        at += 8
    elif wire == 5:
        at += 4
    elif wire == 2:
        at = _length(data, at, end)[1]
    else:
        raise _Unhandled(f"wire type {wire}")
    if at > end:
        raise _Unhandled("truncated field")
    return at


def _request(data: bytes) -> list[Submission]:
    batch = []
    end = len(data)
    at = 0
    budget = MAX_FIELDS  # as framing.check_protobuf counts: every field, nested ones too
    while at < end:
        if data[at] == 0x0A:  # tasks = 1
            start, at = _length(data, at + 1, end)
            submission, fields = _task(data, start, at)
            batch.append(submission)
            budget -= fields + 1
        else:
            at = _unknown(data, at, end, 1)
            budget -= 1
        if budget < 0:
            raise _Unhandled("too many fields")
    if len(batch) > MAX_BATCH:
        raise _Unhandled("too many tasks")
    return batch


def _task(data: bytes, at: int, end: int) -> tuple[Submission, int]:
    """One ``SubmitTaskRequest`` as :func:`convert.submission` converts it (without the
    metadata's idempotency key: a batch has none), and how many fields it holds."""
    task_type = ""
    payload = None
    priority = None
    max_retries = None
    timeout = None
    delay = None
    eta = None
    key = ""
    depends_on: list[str | int] = []
    failure = None
    unique = None
    expires_in = None
    expires_at = None
    fields = 0
    while at < end:
        tag = data[at]
        fields += 1
        if tag == 0x0A:  # type = 1
            start, at = _length(data, at + 1, end)
            task_type = data[start:at].decode()
        elif tag == 0x12:  # payload_json = 2: empty is null
            start, at = _length(data, at + 1, end)
            payload = _json.loads(data[start:at].decode()) if at > start else None
        elif tag == 0x18:  # priority = 3
            value, at = _varint(data, at + 1)
            priority = _PRIORITIES[value] if value else None  # KeyError: unknown, unhandled
        elif tag == 0x20:  # optional int32 max_retries = 4 (betterproto keeps the low 32 bits)
            value, at = _varint(data, at + 1)
            max_retries = ((value & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        elif tag == 0x29:  # optional double timeout_seconds = 5
            timeout = _DOUBLE.unpack_from(data, at + 1)[0]
            at += 9
        elif tag == 0x31:  # optional double delay_seconds = 6
            delay = _DOUBLE.unpack_from(data, at + 1)[0]
            at += 9
        elif tag == 0x38:  # optional int64 eta_ms = 7
            value, at = _varint(data, at + 1)
            eta = _int64(value) / 1000
        elif tag == 0x42:  # idempotency_key = 8
            start, at = _length(data, at + 1, end)
            key = data[start:at].decode()
        elif tag == 0x4A:  # repeated Dependency depends_on = 9
            start, at = _length(data, at + 1, end)
            ref, nested = _dependency(data, start, at)
            depends_on.append(ref)
            fields += nested
        elif tag == 0x50:  # on_dependency_failure = 10
            value, at = _varint(data, at + 1)
            failure = _FAILURES[value] if value else None
        elif tag == 0x58:  # optional bool unique = 11
            value, at = _varint(data, at + 1)
            unique = value > 0
        elif tag == 0x61:  # optional double expires_in_seconds = 12
            expires_in = _DOUBLE.unpack_from(data, at + 1)[0]
            at += 9
        elif tag == 0x68:  # optional int64 expires_at_ms = 13
            value, at = _varint(data, at + 1)
            expires_at = _int64(value) / 1000
        else:
            at = _unknown(data, at, end, _TASK_FIELDS)
        if at > end:
            raise _Unhandled("truncated field")
    return Submission(
        type=task_type,
        payload=payload,
        priority=priority,
        max_retries=max_retries,
        timeout=timeout,
        delay=delay,
        eta=eta,
        idempotency_key=key or None,
        depends_on=depends_on or None,
        on_dependency_failure=failure,
        unique=unique,
        expires_in=expires_in,
        expires_at=expires_at,
    ), fields


def _dependency(data: bytes, at: int, end: int) -> tuple[str | int, int]:
    """A ``Dependency``'s ref (the last one set, as for any oneof), and its field count."""
    ref: str | int | None = None
    fields = 0
    while at < end:
        tag = data[at]
        fields += 1
        if tag == 0x0A:  # task_id = 1
            start, at = _length(data, at + 1, end)
            ref = data[start:at].decode()
        elif tag == 0x10:  # uint32 index = 2 (betterproto keeps the whole varint)
            ref, at = _varint(data, at + 1)
        else:
            at = _unknown(data, at, end, 2)
        if at > end:
            raise _Unhandled("truncated field")
    if ref is None:
        raise _Unhandled("a dependency without a ref")
    return ref, fields
