"""gRPC: large messages are built and encoded in worker threads, so no call holds the loop."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from broker_helpers import submit_many
from grpc_helpers import GrpcServer, grpc_call, guarded_grpc_server

from taskqueue.api.grpc import TaskQueueStub, convert, offload, pb


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    async with guarded_grpc_server(redis_url, tmp_path) as server:
        yield server


async def test_small_work_stays_on_the_loop_and_large_work_goes_to_a_thread() -> None:
    loop_thread = threading.get_ident()
    assert await offload.run(threading.get_ident, large=False) == loop_thread
    assert await offload.run(threading.get_ident, large=True) != loop_thread


async def test_no_more_than_its_threads_work_at_once() -> None:
    release = threading.Event()
    started_send, started = trio.open_memory_channel[int](math.inf)
    done: list[int] = []

    def work(index: int) -> int:
        trio.from_thread.run_sync(started_send.send_nowait, index)
        release.wait()
        return index

    async def one(index: int) -> None:
        done.append(await offload.run(work, index, large=True))

    try:
        async with trio.open_nursery() as nursery:
            for index in range(offload.THREADS + 2):
                nursery.start_soon(one, index)
            for _ in range(offload.THREADS):
                await started.receive()
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.WouldBlock):
                started.receive_nowait()
            release.set()
    finally:
        release.set()
    assert sorted(done) == list(range(offload.THREADS + 2))


def test_entries_counts_the_top_level_repeated_fields() -> None:
    page = pb.ListTasksResponse(tasks=[pb.Task(id=str(i)) for i in range(3)], next_cursor="c")
    assert offload.entries(page) == 3
    assert offload.entries(pb.ListTasksResponse(next_cursor="c")) == 0
    assert offload.entries(pb.Task(id="a", type="t")) == 0


def _recording(threads: list[int], work: Callable[..., Any]) -> Callable[..., Any]:
    def recorded(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return work(*args)

    return recorded


@pytest.mark.parametrize(
    ("tasks", "off_the_loop"), [(offload.INLINE_ENTRIES + 20, True), (10, False)]
)
async def test_a_large_page_is_built_and_encoded_in_a_thread(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch, tasks: int, off_the_loop: bool
) -> None:
    built: list[int] = []
    encoded: list[int] = []
    monkeypatch.setattr(convert, "tasks_message", _recording(built, convert.tasks_message))
    to_bytes = pb.ListTasksResponse.__bytes__
    monkeypatch.setattr(pb.ListTasksResponse, "__bytes__", _recording(encoded, to_bytes))
    submitted = set(await submit_many(server.broker, tasks, "kind.a"))

    async def list_page(stub: TaskQueueStub) -> pb.ListTasksResponse:
        return await stub.list_tasks(pb.ListTasksRequest(state=pb.TaskState.PENDING, limit=1000))

    page = await grpc_call(server.h2c, list_page, token="reader")

    assert {t.id for t in page.tasks} == submitted
    loop_thread = threading.get_ident()
    assert len(built) == 1 and (built[0] != loop_thread) is off_the_loop
    assert len(encoded) == 1 and (encoded[0] != loop_thread) is off_the_loop
