"""Task ids: well-formed UUIDv7s, never repeated across calls, threads or a fork."""

from __future__ import annotations

import os
import threading
import uuid

from taskqueue.ids import new_task_id, new_task_ids

NOW_MS = 1_796_000_000_000


def test_ids_are_uuid7_with_the_time_in_front() -> None:
    for task_id in new_task_ids(50, NOW_MS):
        parsed = uuid.UUID(task_id)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert int(task_id.replace("-", "")[:12], 16) == NOW_MS


def test_single_ids_drawn_past_the_pool_are_all_distinct() -> None:
    """Thousands of one-id calls in a row."""
    ids = [new_task_id(NOW_MS) for _ in range(5000)]
    assert len(set(ids)) == len(ids)


def test_a_large_batch_is_distinct() -> None:
    ids = new_task_ids(1000, NOW_MS)
    assert len(set(ids)) == 1000


def test_threads_never_get_the_same_random_bits() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(into: list[str]) -> None:
        for _ in range(2000):
            into.append(new_task_id(NOW_MS))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [task_id for ids in made for task_id in ids]
    assert len(set(every)) == len(every) == 16000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_task_id(NOW_MS)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, "\n".join(new_task_ids(5, NOW_MS)).encode())
        os._exit(0)
    os.close(write)
    parent = new_task_ids(5, NOW_MS)
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    assert len(child) == 5
    assert not set(child) & set(parent)
