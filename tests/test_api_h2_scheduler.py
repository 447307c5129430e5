"""The HTTP/2 send task's scheduler (:class:`taskqueue.api.patches.hypercorn_h2.RoundRobin`):
every stream with data is served in its turn, however many new streams keep arriving.

``priority.PriorityTree``, which it replaces, passed over a stream that had waited for its
handler while newcomers kept arriving, without bound: the soak's call that hit its 30 s
deadline. The scenario below is that one, driven by hand."""

from __future__ import annotations

import pytest
from priority.priority import DeadlockError, MissingStreamError

from taskqueue.api.patches.hypercorn_h2 import RoundRobin

OPEN = 30  # streams with data at any moment, each replaced by a new one once served


def turns_until_served(scheduler: RoundRobin, waited: int) -> int:
    """Open streams are served once and replaced; stream ``S`` waits ``waited`` turns for its
    handler (blocked, as hypercorn blocks a new stream), then has data: the turns it waits."""
    ids = iter(range(1, 10**7, 2))

    def open_stream() -> int:
        stream_id = next(ids)
        scheduler.insert_stream(stream_id)
        scheduler.block(stream_id)
        scheduler.unblock(stream_id)  # its response is buffered
        return stream_id

    def serve_one() -> int:
        stream_id = next(scheduler)
        scheduler.remove_stream(stream_id)  # finished: reaped
        open_stream()
        return stream_id

    for _ in range(OPEN):
        open_stream()
    waiting = next(ids)
    scheduler.insert_stream(waiting)
    scheduler.block(waiting)
    for _ in range(waited):
        serve_one()
    scheduler.unblock(waiting)
    for turn in range(1, 100_000):
        if serve_one() == waiting:
            return turn
    raise AssertionError("the stream that waited was never served")


@pytest.mark.parametrize("waited", [5, 50, 500])
def test_a_stream_that_waited_is_served_within_one_turn_of_the_others(waited: int) -> None:
    assert turns_until_served(RoundRobin(), waited) <= OPEN + 1


def test_streams_without_data_are_skipped_and_none_at_all_deadlocks() -> None:
    scheduler = RoundRobin()
    for stream_id in (1, 3, 5):
        scheduler.insert_stream(stream_id)
    scheduler.block(3)
    assert [next(scheduler) for _ in range(4)] == [1, 5, 1, 5]
    scheduler.unblock(3)
    scheduler.unblock(3)  # twice is once
    assert [next(scheduler) for _ in range(3)] == [1, 5, 3]
    for stream_id in (1, 3, 5):
        scheduler.block(stream_id)
    with pytest.raises(DeadlockError):  # what hypercorn's send task waits on
        next(scheduler)
    scheduler.remove_stream(3)
    with pytest.raises(MissingStreamError):
        scheduler.unblock(3)
