"""The gRPC wire format, without I/O: message frames, ``grpc-timeout``, ``grpc-message`` and a
strict check of protobuf bytes.

Kept apart from the ASGI glue so each rule is a plain function a test calls directly (the
gRPC-over-HTTP/2 spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
"""

from __future__ import annotations

import re
import struct
from typing import Any, Final, TypeVar

import betterproto

from taskqueue.api.errors import ApiError
from taskqueue.errors import InvalidTaskError
from taskqueue.models import MAX_BATCH

#: The 5-byte prefix of every message: a compressed flag and the big-endian length.
_PREFIX = struct.Struct(">?I")

_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")  # ASCII digits: \d takes any script's
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

#: Bytes ``grpc-message`` may carry unescaped: printable ASCII except ``%`` (the spec's rule).
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("%")}


def protocol_error(detail: str) -> ApiError:
    """A request that breaks the gRPC protocol: INTERNAL, as grpc-go and grpc-java answer it."""
    return ApiError(400, "INTERNAL", "Protocol error", detail)


def frame(message: bytes) -> bytes:
    """One uncompressed length-prefixed message, as it goes into a DATA frame."""
    return _PREFIX.pack(False, len(message)) + message


def unframe(body: bytes) -> list[bytes]:
    """The messages of a request body; raises a protocol error for a malformed body.

    Only uncompressed messages are accepted: the server advertises no ``grpc-encoding`` (the
    caller refuses one before it gets here), so a compressed flag is a protocol violation.
    """
    messages = []
    at = 0
    while at < len(body):
        if len(body) - at < _PREFIX.size:
            raise protocol_error("truncated gRPC message prefix")
        compressed, length = _PREFIX.unpack_from(body, at)
        at += _PREFIX.size
        if compressed:
            raise protocol_error("compressed message without a grpc-encoding")
        if len(body) - at < length:
            raise protocol_error(f"truncated gRPC message: {len(body) - at} of {length} bytes")
        messages.append(body[at : at + length])
        at += length
    return messages


def parse_timeout(value: str) -> float:
    """Seconds from a ``grpc-timeout`` value like ``100m`` (at most 8 digits and a unit)."""
    match = _TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise protocol_error(f"malformed grpc-timeout {value!r}")
    return int(match[1]) * _TIMEOUT_UNITS[match[2]]


def encode_message(text: str) -> bytes:
    """``grpc-message``: UTF-8, percent-encoded outside printable ASCII (and ``%`` itself)."""
    return b"".join(
        bytes((byte,)) if byte in _PLAIN else b"%%%02X" % byte for byte in text.encode()
    )


# -- strict protobuf check -------------------------------------------------------------------
#
# betterproto's parser is lenient: a truncated field or one of the wrong wire type is dropped
# or stored as is (an ``int`` in a ``str`` field), so "any bytes" parse as some message. A
# request must instead be refused when it is not the message it claims to be, so its bytes are
# checked first: every field well formed, known fields of their declared wire type, strings
# valid UTF-8, nested messages checked the same way. Unknown fields are allowed (a newer client).

_WIRE_OF: dict[str, int] = {
    **{t: betterproto.WIRE_VARINT for t in betterproto.WIRE_VARINT_TYPES},
    **{t: betterproto.WIRE_FIXED_32 for t in betterproto.WIRE_FIXED_32_TYPES},
    **{t: betterproto.WIRE_FIXED_64 for t in betterproto.WIRE_FIXED_64_TYPES},
    **{t: betterproto.WIRE_LEN_DELIM for t in betterproto.WIRE_LEN_DELIM_TYPES},
}
_FIXED_SIZE = {betterproto.WIRE_FIXED_32: 4, betterproto.WIRE_FIXED_64: 8}


M = TypeVar("M", bound=betterproto.Message)


class _Malformed(ValueError):
    pass


def decode(data: bytes, message_type: type[M]) -> M:
    """The request message in ``data``, or a protocol error saying why it is not one.

    Pure Python, so slow for a large message: call :func:`count_entries` first (it bounds
    the work), and run this off the event loop for a large ``data``.
    """
    try:
        check_protobuf(data, message_type)
        return message_type().parse(data)
    except TooManyFieldsError:
        raise
    except ValueError as exc:  # _Malformed, or what betterproto raises on what we let through
        raise protocol_error(
            f"request is not a valid {message_type.__name__} message: {exc}"
        ) from None


def check_protobuf(data: bytes, message_type: type[betterproto.Message]) -> None:
    """Raise ValueError (saying what is wrong) unless ``data`` is a well-formed message of at
    most :data:`MAX_FIELDS` fields (nested ones included)."""
    _check(memoryview(data), message_type, [MAX_FIELDS])


# -- bounded work before decoding -------------------------------------------------------------
#
# Decoding is pure Python (betterproto): ~70 µs per field on this machine, so 2 MiB of
# two-byte entries (~262,000 of them) held the event loop for 15-19 s before the batch limit
# could refuse them. The limits below are checked by a scan that stops at the first field
# past them, so the work before a refusal is bounded by the limits, not by the message.

#: Most entries of a request's repeated field, by message and field name; a repeated field
#: not listed here is bounded by :data:`MAX_FIELDS` alone.
REPEATED_LIMITS: dict[str, dict[str, int]] = {"SubmitTasksRequest": {"tasks": MAX_BATCH}}
#: Most fields in one request message, nested messages' included: a full batch of
#: :data:`MAX_BATCH` tasks with every field set has ~10,000.
MAX_FIELDS: Final = 20 * MAX_BATCH


class TooManyFieldsError(InvalidTaskError):
    """A request with more entries or fields than :func:`count_entries` allows."""


def count_entries(data: bytes, message_type: type[betterproto.Message]) -> None:
    """Raise TooManyFieldsError (naming the limit) if a repeated field of ``data``'s top level
    has more entries than :data:`REPEATED_LIMITS` allows, or the top level more than
    :data:`MAX_FIELDS` fields. Reads tags and lengths only, and stops at the first field past
    a limit. A malformed message is left for :func:`decode` to refuse."""
    meta: Any = message_type._betterproto  # type: ignore[arg-type]
    limits = {
        meta.meta_by_field_name[name].number: (name, limit)
        for name, limit in REPEATED_LIMITS.get(message_type.__name__, {}).items()
    }
    counts: dict[int, int] = {}
    view = memoryview(data)
    at = fields = 0
    try:
        while at < len(view):
            key, at = _varint(view, at)
            number, wire = key >> 3, key & 7
            fields += 1
            if fields > MAX_FIELDS:
                raise TooManyFieldsError(
                    f"a {message_type.__name__} holds at most {MAX_FIELDS} fields"
                )
            if number in limits:
                counts[number] = count = counts.get(number, 0) + 1
                name, limit = limits[number]
                if count > limit:
                    raise TooManyFieldsError(
                        f"{name} holds at most {limit} entries; this request has more",
                        field=name,
                    )
            at = _skip(view, at, wire)
    except _Malformed:
        return


def _skip(data: memoryview, at: int, wire: int) -> int:
    """Where the value of a field of wire type ``wire`` that starts at ``at`` ends."""
    if wire == betterproto.WIRE_VARINT:
        return _varint(data, at)[1]
    if wire in _FIXED_SIZE:
        return at + _FIXED_SIZE[wire]
    if wire == betterproto.WIRE_LEN_DELIM:
        length, at = _varint(data, at)
        return at + length
    raise _Malformed(f"unsupported wire type {wire}")


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise _Malformed("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _check(data: memoryview, message_type: type[Any], budget: list[int]) -> None:
    """Check one message; ``budget`` holds how many more fields the whole request may have."""
    meta = message_type._betterproto  # betterproto's per-class field table
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        budget[0] -= 1
        if budget[0] < 0:
            raise TooManyFieldsError(f"a request message holds at most {MAX_FIELDS} fields")
        if number == 0:
            raise _Malformed("field number 0")
        if wire == betterproto.WIRE_VARINT:
            _, at = _varint(data, at)
            value = None
        elif wire in _FIXED_SIZE:
            at += _FIXED_SIZE[wire]
            value = None
        elif wire == betterproto.WIRE_LEN_DELIM:
            length, at = _varint(data, at)
            value = data[at : at + length]
            at += length
        else:
            raise _Malformed(f"field {number}: unsupported wire type {wire}")
        if at > len(data):
            raise _Malformed(f"field {number}: truncated")
        name = meta.field_name_by_number.get(number)
        if name is None:
            continue
        field = meta.meta_by_field_name[name]
        expected = _WIRE_OF[field.proto_type]
        packed = wire == betterproto.WIRE_LEN_DELIM and expected != wire  # a packed repeated
        if wire != expected and not packed:
            raise _Malformed(f"field {name!r}: wire type {wire}, expected {expected}")
        if value is None or packed:
            continue
        if field.proto_type == betterproto.TYPE_STRING:
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"field {name!r}: not valid UTF-8") from None
        elif field.proto_type in (betterproto.TYPE_MESSAGE, betterproto.TYPE_MAP):
            _check(value, meta.cls_by_field[name], budget)  # a map entry is a message too
