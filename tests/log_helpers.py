"""Helpers for the log tests: capture the process's JSON log lines, decode journald datagrams."""

from __future__ import annotations

import io
import json
import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskqueue.logs import configure_logging


@contextmanager
def captured_json_logs(level: str = "info") -> Iterator[io.StringIO]:
    """The process's logging as JSON lines on a stream, for the ``with`` block; the root
    logger's handlers and level are as they were afterwards."""
    root = logging.getLogger()
    handlers, previous = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(previous)


def json_records(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each of which must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def journal_fields(data: bytes) -> list[tuple[str, str]]:
    """One datagram of journald's native protocol, in order: ``NAME=value\\n`` or
    ``NAME\\n<u64 le length><value>\\n``."""
    fields = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            pos = end + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary value not terminated"
            pos = end + 10 + size
        fields.append((name.decode(), value.decode()))
    return fields


def journal_entry(data: bytes) -> dict[str, str]:
    """One datagram of journald's native protocol as a dict (the last of repeated names)."""
    return dict(journal_fields(data))
