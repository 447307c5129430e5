"""Request ids and access log lines, through a real API server and real clients.

Every request, REST or gRPC, gets an id: the client's ``X-Request-ID`` when it is sane, a new one
otherwise. It comes back in the response headers (gRPC: the response metadata), it is on every
line logged while the request is served, and on the one access line written when it ends. The
logs go to JSON lines on a stream, or to a stand-in journald socket, as the daemon configures
them.
"""

from __future__ import annotations

import io
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ApiServer, api_server
from daemon_helpers import wait_until
from grpc_helpers import Target, raw_call
from log_helpers import captured_json_logs, journal_entry, json_records

from taskqueue.api.grpc import pb
from taskqueue.api.grpc.framing import frame
from taskqueue.logs import configure_logging

both_http_versions = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])

_GENERATED = re.compile(r"[0-9a-f]{16}")
#: A well-formed task id that names no task.
MISSING_ID = "00000000-0000-7000-8000-000000000000"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The process's logging as JSON lines on a stream, for the test."""
    with captured_json_logs("info") as stream:
        yield stream


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [r for r in json_records(stream) if r["logger"] == "taskqueue.access"]


async def wait_for_access_lines(stream: io.StringIO, count: int) -> list[dict[str, Any]]:
    """The access lines, once ``count`` are written: a line follows its response's last byte,
    so the client can have the response a moment before the server has logged it."""

    async def written() -> bool:
        return len(access_lines(stream)) >= count

    await wait_until(written, f"{count} access log line(s) are written")
    return access_lines(stream)


@both_http_versions
async def test_the_clients_request_id_comes_back_and_is_on_the_access_line(
    redis_url: str, http2: bool, log_lines: io.StringIO
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks",
            json={"type": "echo", "payload": {"card": "4111-secret"}},
            headers={"X-Request-ID": "order-42/submit"},
        )
        assert response.status_code == 201
        assert response.headers["x-request-id"] == "order-42/submit"
        (line,) = await wait_for_access_lines(log_lines, 1)

    assert line["request_id"] == "order-42/submit"
    assert line["message"].startswith("POST /api/v1/tasks 201 ")
    assert line["level"] == "info"
    assert line["api"] == "rest"
    assert line["method"] == "POST"
    assert line["path"] == "/api/v1/tasks"
    assert line["route"] == "/api/v1/tasks"
    assert line["status"] == "201"
    assert line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    # Payloads stay out of the logs.
    assert "4111-secret" not in log_lines.getvalue()


@both_http_versions
async def test_without_a_sane_request_id_the_server_makes_one(
    redis_url: str, http2: bool, log_lines: io.StringIO
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        plain = await client.get("/healthz")
        again = await client.get("/healthz")
        odd = await client.get("/healthz", headers={"X-Request-ID": "two words"})
        long = await client.get("/healthz", headers={"X-Request-ID": "x" * 129})
        lines = await wait_for_access_lines(log_lines, 4)

    ids = [r.headers["x-request-id"] for r in (plain, again, odd, long)]
    assert all(_GENERATED.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == 4
    assert [line["request_id"] for line in lines] == ids


@both_http_versions
async def test_a_line_logged_while_serving_a_request_carries_its_request_id(
    redis_url: str, http2: bool, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        break_get_task(server, monkeypatch)
        response = await client.get(
            f"/api/v1/tasks/{MISSING_ID}", headers={"X-Request-ID": "req-7"}
        )
        assert response.status_code == 500
        assert response.headers["x-request-id"] == "req-7"
        await wait_for_access_lines(log_lines, 1)

    (bug,) = [r for r in json_records(log_lines) if r["message"].startswith("bug:")]
    assert bug["request_id"] == "req-7"
    assert "RuntimeError: disk on fire" in bug["traceback"]
    (line,) = access_lines(log_lines)
    assert (line["request_id"], line["route"], line["status"]) == (
        "req-7",
        "/api/v1/tasks/{task_id}",
        "500",
    )


def break_get_task(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading a task fail with an unexpected error (a bug, as far as the API knows)."""

    async def view(task_id: str, cut_at: int) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.daemon.broker, "view", view)


async def test_grpc_calls_get_a_request_id_in_metadata_logs_and_the_access_line(
    redis_url: str, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_server(redis_url) as server:
        host, _, port = server.url.removeprefix("http://").rpartition(":")
        target = Target(host, int(port))
        break_get_task(server, monkeypatch)
        body = frame(bytes(pb.GetTaskRequest(id=MISSING_ID)))
        given = await raw_call(
            target, "/taskqueue.v1.TaskQueue/GetTask", body, headers={"x-request-id": "rpc-1"}
        )
        made = await raw_call(target, "/taskqueue.v1.TaskQueue/GetTask", body)
        lines = await wait_for_access_lines(log_lines, 2)

    assert given.headers["x-request-id"] == "rpc-1"
    assert _GENERATED.fullmatch(made.headers["x-request-id"])
    assert given.grpc_status == made.grpc_status == 13  # INTERNAL
    bugs = [
        r for r in json_records(log_lines) if "gRPC" in r["message"] and "failed" in r["message"]
    ]
    assert [b["request_id"] for b in bugs] == ["rpc-1", made.headers["x-request-id"]]
    assert [(r["request_id"], r["api"], r["route"], r["status"]) for r in lines] == [
        ("rpc-1", "grpc", "/taskqueue.v1.TaskQueue/GetTask", "INTERNAL"),
        (made.headers["x-request-id"], "grpc", "/taskqueue.v1.TaskQueue/GetTask", "INTERNAL"),
    ]
    assert lines[0]["message"].startswith("gRPC /taskqueue.v1.TaskQueue/GetTask INTERNAL ")


# -- journald -----------------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for journald, and the process's logging sent to it.

    Read without blocking from the test's trio loop: the daemon's handler sends synchronously
    from that same loop, so the socket's queue only has to hold the few entries of one test.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        configure_logging("info", "journald", journal_socket=str(path))
        try:
            yield sock
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
                    handler.close()
            root.setLevel(level)


@both_http_versions
async def test_access_line_reaches_journald_with_its_request_fields(
    redis_url: str, http2: bool, journal: socket.socket
) -> None:
    entries: list[dict[str, str]] = []

    async def access_entry_arrived() -> bool:
        while True:
            try:
                entries.append(journal_entry(journal.recv(1 << 20)))
            except BlockingIOError:
                break
        return any(e.get("LOGGER") == "taskqueue.access" for e in entries)

    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.get("/readyz", headers={"X-Request-ID": "probe-1"})
        assert response.status_code == 200
        await wait_until(access_entry_arrived, "the access line reaches the journal")

    (entry,) = [e for e in entries if e.get("LOGGER") == "taskqueue.access"]
    assert entry["REQUEST_ID"] == "probe-1"
    assert entry["ROUTE"] == "/readyz"
    assert entry["STATUS"] == "200"
    assert entry["METHOD"] == "GET"
    assert entry["PRIORITY"] == "6"
    assert entry["MESSAGE"].startswith("GET /readyz 200 ")
