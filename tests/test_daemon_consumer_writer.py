"""The consumer's coalescing writer: whatever gathers while a batch is on its way is written in
one next call; a keyed item replaces the pending one of its key; a batch Redis refused is
written again, ahead of newer items; and closing flushes everything before ``run`` returns.

The write is a fake that records each call and can hold it open or fail it; time is trio's mock
clock (the backoff after a failure sleeps on it), and "the writer has done what it can" is
:func:`trio.testing.wait_all_tasks_blocked`, never a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from taskqueue.daemon.consumer.writer import CoalescingWriter
from taskqueue.health import Health, RedisGuard
from taskqueue.redis import RedisConnectionError

Item = tuple[str, int]


class FakeWrite:
    """Records each batch it is called with; waits while ``held``; fails ``failures`` times."""

    def __init__(self) -> None:
        self.calls: list[list[Item]] = []
        self.written: list[list[Item]] = []
        self.held: trio.Event | None = None
        self.failures = 0

    def hold(self) -> None:
        self.held = trio.Event()

    def release(self) -> None:
        assert self.held is not None
        self.held.set()
        self.held = None

    async def __call__(self, batch: list[Item]) -> None:
        self.calls.append(batch)
        if self.held is not None:
            await self.held.wait()
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("connection refused")
        self.written.append(batch)


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def write() -> FakeWrite:
    return FakeWrite()


@pytest.fixture
def writer(write: FakeWrite, health: Health) -> CoalescingWriter[Item]:
    return CoalescingWriter(write, RedisGuard(health))


@asynccontextmanager
async def running(writer: CoalescingWriter[Item]) -> AsyncIterator[None]:
    """The writer's loop runs for the block, and is cancelled after it."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        yield
        nursery.cancel_scope.cancel()


async def test_items_appended_while_a_batch_is_on_its_way_go_in_one_next_batch(
    writer: CoalescingWriter[Item], write: FakeWrite
) -> None:
    async with running(writer):
        write.hold()
        writer.append(("a", 1))
        await trio.testing.wait_all_tasks_blocked()
        assert write.calls == [[("a", 1)]]

        for n in range(2, 6):
            writer.append(("a", n))
        assert len(writer) == 5  # one on its way, four waiting
        write.release()
        await trio.testing.wait_all_tasks_blocked()

    assert write.written == [[("a", 1)], [("a", 2), ("a", 3), ("a", 4), ("a", 5)]]
    assert len(writer) == 0


async def test_a_newer_item_replaces_the_pending_one_of_its_key_in_its_place(
    writer: CoalescingWriter[Item], write: FakeWrite
) -> None:
    writer.put("a", ("a", 1))
    writer.put("b", ("b", 1))
    writer.put("a", ("a", 2))
    assert len(writer) == 2
    async with running(writer):
        await trio.testing.wait_all_tasks_blocked()

    assert write.written == [[("a", 2), ("b", 1)]]


async def test_a_key_written_already_is_written_again_when_it_gets_a_new_item(
    writer: CoalescingWriter[Item], write: FakeWrite
) -> None:
    async with running(writer):
        writer.put("a", ("a", 1))
        await trio.testing.wait_all_tasks_blocked()
        writer.put("a", ("a", 2))
        await trio.testing.wait_all_tasks_blocked()

    assert write.written == [[("a", 1)], [("a", 2)]]


async def test_a_failed_batch_is_written_again_ahead_of_newer_items_and_newer_values_win(
    writer: CoalescingWriter[Item],
    write: FakeWrite,
    health: Health,
    autojump_clock: trio.testing.MockClock,
) -> None:
    write.failures = 1
    async with running(writer):
        write.hold()
        writer.put("a", ("a", 1))
        writer.put("b", ("b", 1))
        await trio.testing.wait_all_tasks_blocked()
        writer.put("c", ("c", 1))
        writer.put("a", ("a", 2))  # newer than the value in the batch that fails
        write.release()
        writer.close()
        # The guard's backoff sleeps on the mock clock, which jumps once all else waits.
        with trio.fail_after(60):
            await writer.wait_written()

    assert write.calls[0] == [("a", 1), ("b", 1)]
    assert write.written == [[("a", 2), ("b", 1), ("c", 1)]]
    assert health.redis_ok


async def test_appended_items_keep_their_order_across_a_failed_write(
    writer: CoalescingWriter[Item], write: FakeWrite, autojump_clock: trio.testing.MockClock
) -> None:
    write.failures = 2
    async with running(writer):
        write.hold()
        writer.append(("a", 1))
        await trio.testing.wait_all_tasks_blocked()
        writer.append(("a", 2))
        writer.append(("a", 1))  # appended items never replace one another
        write.release()
        writer.close()
        with trio.fail_after(60):
            await writer.wait_written()

    assert write.written == [[("a", 1), ("a", 2), ("a", 1)]]
    assert len(write.calls) == 3


async def test_close_writes_what_is_pending_then_run_returns(
    writer: CoalescingWriter[Item], write: FakeWrite
) -> None:
    for n in range(3):
        writer.append(("a", n))
    writer.close()
    with trio.fail_after(1):  # run returns by itself: no cancellation needed
        await writer.run()
        await writer.wait_written()

    assert write.written == [[("a", 0), ("a", 1), ("a", 2)]]
    assert len(writer) == 0


async def test_close_while_a_batch_is_on_its_way_waits_for_it_and_what_came_after(
    writer: CoalescingWriter[Item], write: FakeWrite
) -> None:
    async with running(writer):
        write.hold()
        writer.append(("a", 1))
        await trio.testing.wait_all_tasks_blocked()
        writer.append(("a", 2))
        writer.close()
        await trio.testing.wait_all_tasks_blocked()
        assert len(writer) == 2
        write.release()
        with trio.fail_after(1):
            await writer.wait_written()

    assert write.written == [[("a", 1)], [("a", 2)]]


async def test_while_redis_stays_down_nothing_is_dropped_and_the_unwritten_are_counted(
    writer: CoalescingWriter[Item],
    write: FakeWrite,
    health: Health,
    autojump_clock: trio.testing.MockClock,
) -> None:
    write.failures = 1_000_000
    async with running(writer):
        for n in range(3):
            writer.append(("a", n))
        writer.close()
        with trio.move_on_after(30) as gave_up:
            await writer.wait_written()
        assert gave_up.cancelled_caught
        assert len(writer) == 3  # on its way (or backing off) again, not lost

    assert write.written == []
    assert len(write.calls) > 3  # retried, with backoff
    assert not health.redis_ok
    assert len(writer) == 3  # cancelled mid-write: the batch is still counted unwritten


async def test_an_error_other_than_redis_s_propagates_out_of_run(health: Health) -> None:
    async def broken(batch: list[Item]) -> None:
        raise ValueError("a bug")

    writer = CoalescingWriter(broken, RedisGuard(health))
    writer.append(("a", 1))
    with pytest.raises(ValueError, match="a bug"):
        await writer.run()
