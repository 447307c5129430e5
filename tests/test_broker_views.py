"""Reading tasks for a response: each large field is cut in Redis (``view.lua``), so a page of
big tasks costs what the response carries; ``truncated`` names each cut field with its size in
bytes as stored, and a text keeps its first whole characters."""

from __future__ import annotations

import pytest
from broker_helpers import claim_one, failed, submit, succeeded

from taskqueue import _json
from taskqueue.broker import Broker
from taskqueue.errors import TaskNotFoundError
from taskqueue.models import TaskState


def stored_size(value: object) -> int:
    return len(_json.dumps(value).encode())


async def test_fields_over_the_limit_are_left_in_redis_and_named_with_their_size(
    broker: Broker,
) -> None:
    payload = {"blob": "p" * 500}
    task_id = await submit(broker, payload=payload)
    task = await claim_one(broker)
    assert await broker.set_progress(task.id, task.attempt, ["q"] * 200)
    await broker.report([succeeded(task, result="r" * 300)])

    view = await broker.view(task_id, cut_at=100)

    assert view.truncated == {
        "payload": stored_size(payload),
        "result": stored_size("r" * 300),
        "progress": stored_size(["q"] * 200),
    }
    assert (view.task.payload, view.task.result, view.task.progress) == (None, None, None)
    whole = await broker.get(task_id)
    assert view.task.state is TaskState.SUCCEEDED
    assert (view.task.id, view.task.type, view.task.attempt) == (whole.id, whole.type, 1)
    assert view.task.finished_ms == whole.finished_ms


async def test_a_task_within_the_limit_comes_whole(broker: Broker) -> None:
    task_id = await submit(broker, payload={"small": True})

    view = await broker.view(task_id, cut_at=100)

    assert view.truncated == {}
    assert view.task == await broker.get(task_id)


@pytest.mark.parametrize(
    ("char", "cut_at", "kept"),
    [
        ("é", 101, 50),  # 2 bytes each: the 51st would be split
        ("€", 7, 2),  # 3 bytes each
        ("😀", 10, 2),  # 4 bytes each
        ("a", 10, 10),
    ],
)
async def test_a_cut_text_keeps_whole_characters(
    broker: Broker, char: str, cut_at: int, kept: int
) -> None:
    task_id = await submit(broker, max_retries=0)
    task = await claim_one(broker)
    error = char * 300
    await broker.report([failed(task, error=error, traceback="t" * (cut_at + 1))])

    view = await broker.view(task_id, cut_at=cut_at)

    assert view.task.state is TaskState.DEAD
    assert view.task.error == char * kept
    assert view.task.traceback == "t" * cut_at
    assert view.truncated == {"error": len(error.encode()), "traceback": cut_at + 1}


async def test_a_missing_task_is_not_found_alone_and_none_in_a_batch(broker: Broker) -> None:
    with pytest.raises(TaskNotFoundError):
        await broker.view("no-such-task", cut_at=100)
    task_id = await submit(broker)
    await broker.cancel(task_id)
    page = await broker.list_views(TaskState.CANCELLED, cut_at=100)
    assert [v.task.id for v in page.items] == [task_id]


async def test_a_page_of_views_lists_what_the_whole_listing_lists(broker: Broker) -> None:
    ids = [await submit(broker, payload="x" * n) for n in (10, 1000, 20, 2000, 30)]

    whole = await broker.list_tasks(TaskState.PENDING, limit=3)
    views = await broker.list_views(TaskState.PENDING, cut_at=100, limit=3)

    assert [v.task.id for v in views.items] == [t.id for t in whole.items] == ids[:3]
    assert views.next_cursor == whole.next_cursor
    assert [v.truncated for v in views.items] == [{}, {"payload": 1002}, {}]
    rest = await broker.list_views(TaskState.PENDING, cut_at=100, cursor=views.next_cursor)
    assert [v.task.id for v in rest.items] == ids[3:]
    assert rest.next_cursor is None
    assert [v.task.payload for v in rest.items] == [None, "x" * 30]
