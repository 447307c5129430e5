"""Requests are refused before they are decoded when they hold too many entries or fields:
the scan that refuses them reads tags and lengths only, and stops at the first one too many."""

from __future__ import annotations

import pytest
from betterproto import encode_varint

from taskqueue.api.grpc import pb
from taskqueue.api.grpc.framing import MAX_FIELDS, TooManyFieldsError, count_entries, decode
from taskqueue.models import MAX_BATCH


def batch(entries: int) -> bytes:
    one = bytes(pb.SubmitTaskRequest(type="a"))
    return (b"\x0a" + bytes([len(one)]) + one) * entries


def test_a_batch_of_the_limit_passes_and_one_more_is_refused_naming_the_limit() -> None:
    count_entries(batch(MAX_BATCH), pb.SubmitTasksRequest)
    assert len(decode(batch(MAX_BATCH), pb.SubmitTasksRequest).tasks) == MAX_BATCH
    with pytest.raises(TooManyFieldsError, match=f"at most {MAX_BATCH} entries") as info:
        count_entries(batch(262_000), pb.SubmitTasksRequest)
    assert info.value.field == "tasks"


def test_too_many_fields_are_refused_at_the_top_and_nested() -> None:
    with pytest.raises(TooManyFieldsError, match=f"at most {MAX_FIELDS} fields"):
        count_entries(b"\x08\x01" * (MAX_FIELDS + 1), pb.GetTaskRequest)
    inner = b"\x12\x00" * (MAX_FIELDS + 1)  # one task of many (repeated) payload_json fields
    nested = b"\x0a" + encode_varint(len(inner)) + inner
    count_entries(nested, pb.SubmitTasksRequest)  # one top-level entry: passes the scan
    with pytest.raises(TooManyFieldsError):
        decode(nested, pb.SubmitTasksRequest)


def test_a_malformed_message_is_left_to_the_decoder() -> None:
    count_entries(b"\x0a\x05\x0a\x01", pb.SubmitTasksRequest)  # truncated: no verdict here
