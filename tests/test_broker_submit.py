"""Submitting tasks: what is stored, defaults, delays, idempotency, validation, back-pressure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from broker_helpers import (
    TYPE,
    claim,
    command_calls,
    failed,
    namespace_keys,
    ready_list,
    state_of,
    submit,
    zscore,
)
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.broker import operations as ops
from taskqueue.errors import InvalidTaskError, PayloadTooLargeError, QueueFullError
from taskqueue.models import Policy, Priority, TaskState

# -- enqueue ---------------------------------------------------------------------------------


async def test_enqueue_stores_the_fields_as_given(broker: Broker, clock: FakeClock) -> None:
    payload = {"to": ["a@example.com"], "n": 3, "nested": {"ok": True, "x": None}}
    submitted = await broker.enqueue(
        Submission(
            type="mail.send",
            payload=payload,
            priority="high",
            max_retries=5,
            timeout=2.5,
            idempotency_key="order-17",
        )
    )

    assert submitted.created
    assert submitted.state is TaskState.PENDING
    task = await broker.get(submitted.id)
    assert task.id == submitted.id
    assert task.type == "mail.send"
    assert task.payload == payload
    assert task.priority is Priority.HIGH
    assert task.max_retries == 5
    assert task.timeout_ms == 2500
    assert task.idempotency_key == "order-17"
    assert task.state is TaskState.PENDING
    assert task.attempt == 0
    assert task.created_ms == task.ready_ms == clock()
    assert (task.started_ms, task.finished_ms, task.worker_id) == (None, None, None)
    assert await ready_list(broker, "high", "mail.send") == [submitted.id]
    await assert_invariants(broker)


async def test_enqueue_takes_unset_fields_from_the_broker_settings(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(default_timeout=12.5, default_max_retries=7)

    task = await broker.get(await submit(broker))

    assert task.timeout_ms == 12_500
    assert task.max_retries == 7
    assert task.priority is Priority.MEDIUM
    assert task.payload is None
    assert task.idempotency_key is None


async def test_unset_fields_take_the_task_types_registered_defaults(broker: Broker) -> None:
    await broker.set_type_policies(
        {
            "mail.send": Policy(priority=Priority.HIGH, max_retries=9, timeout=4.5),
            "report.build": Policy(timeout=600),  # the rest: the broker's
        }
    )

    mail, report, other = await broker.enqueue_many(
        [Submission(type="mail.send"), Submission(type="report.build"), Submission(type="x")]
    )

    mail_task, report_task, other_task = await broker.get_many([mail.id, report.id, other.id])
    assert mail_task and report_task and other_task
    assert (mail_task.priority, mail_task.max_retries, mail_task.timeout_ms) == (
        Priority.HIGH,
        9,
        4500,
    )
    assert (report_task.priority, report_task.max_retries, report_task.timeout_ms) == (
        Priority.MEDIUM,
        broker.settings.default_max_retries,
        600_000,
    )
    assert (other_task.max_retries, other_task.timeout_ms) == (
        broker.settings.default_max_retries,
        broker.settings.default_timeout * 1000,
    )
    assert await ready_list(broker, "high", "mail.send") == [mail.id]
    # The reply says which priority each task got, so a caller need not look it up.
    assert (mail.priority, report.priority) == (Priority.HIGH, Priority.MEDIUM)


async def test_fields_a_submission_sets_override_the_types_defaults(broker: Broker) -> None:
    await broker.set_type_policies(
        {"mail.send": Policy(priority=Priority.HIGH, max_retries=9, timeout=4.5)}
    )

    submitted = await broker.enqueue(
        Submission(type="mail.send", priority="low", max_retries=0, timeout=1)
    )

    task = await broker.get(submitted.id)
    assert (task.priority, task.max_retries, task.timeout_ms) == (Priority.LOW, 0, 1000)


async def test_type_policies_read_back_as_recorded_and_the_last_writer_wins(
    broker: Broker,
) -> None:
    await broker.set_type_policies({"a": Policy(priority=Priority.LOW), "b": Policy()})
    await broker.set_type_policies({"a": Policy(max_retries=2, timeout=0.25)})

    policy = await broker.policy()
    assert policy.layer("config", "a") == Policy(max_retries=2, timeout=0.25)
    assert policy.layer("config", "b") == Policy()
    assert policy.task_types == ["a"]


async def test_enqueue_many_writes_a_batch_in_one_round_trip(broker: Broker) -> None:
    await submit(broker)  # the server has the script cached from here on
    before = await command_calls(broker)

    submitted = await broker.enqueue_many(
        [Submission(type="mail.send", payload=i, priority="low") for i in range(50)]
    )

    after = await command_calls(broker)
    assert after["evalsha"] - before["evalsha"] == 1
    assert after.get("eval", 0) == before.get("eval", 0)
    assert all(s.created and s.state is TaskState.PENDING for s in submitted)
    assert len({s.id for s in submitted}) == 50
    ids = [s.id for s in submitted]
    assert await ready_list(broker, "low") == ids  # in submission order
    assert [t.payload for t in await broker.get_many(ids) if t] == list(range(50))
    await assert_invariants(broker)


async def test_enqueue_many_of_nothing_does_nothing(broker: Broker) -> None:
    assert await broker.enqueue_many([]) == []
    assert await namespace_keys(broker) == []


async def test_delayed_task_is_scheduled_until_promoted_after_its_delay(
    broker: Broker, clock: FakeClock
) -> None:
    start = clock()
    task_id = await submit(broker, delay=10)

    task = await broker.get(task_id)
    assert task.state is TaskState.SCHEDULED
    assert task.ready_ms == start + 10_000
    assert await zscore(broker, broker.keys.scheduled, task_id) == start + 10_000
    assert await claim(broker) == []

    clock.advance(ms=9_999)
    early = await broker.promote()
    assert (early.promoted, early.next_due_ms) == (0, start + 10_000)
    assert await state_of(broker, task_id) is TaskState.SCHEDULED

    clock.advance(ms=1)
    due = await broker.promote()
    assert (due.promoted, due.next_due_ms) == (1, None)
    assert await state_of(broker, task_id) is TaskState.PENDING
    assert [t.id for t in await claim(broker)] == [task_id]
    await assert_invariants(broker)


async def test_eta_as_aware_datetime_or_epoch_seconds_schedules_the_task(
    broker: Broker, clock: FakeClock
) -> None:
    at = datetime.fromtimestamp(clock() / 1000, UTC) + timedelta(minutes=5)
    by_datetime = await broker.enqueue(Submission(type="mail.send", eta=at))
    by_seconds = await broker.enqueue(Submission(type="mail.send", eta=clock() / 1000 + 60))

    assert by_datetime.state is TaskState.SCHEDULED
    assert (await broker.get(by_datetime.id)).ready_ms == clock() + 300_000
    assert (await broker.get(by_seconds.id)).ready_ms == clock() + 60_000

    clock.advance(60)
    assert (await broker.promote()).promoted == 1
    assert await state_of(broker, by_seconds.id) is TaskState.PENDING
    assert await state_of(broker, by_datetime.id) is TaskState.SCHEDULED
    await assert_invariants(broker)


async def test_eta_in_the_past_or_zero_delay_makes_the_task_pending_at_once(
    broker: Broker, clock: FakeClock
) -> None:
    past = await broker.enqueue(Submission(type="mail.send", eta=clock() / 1000 - 3600))
    now = await broker.enqueue(Submission(type="mail.send", delay=0))

    assert past.state is now.state is TaskState.PENDING
    assert (await broker.get(past.id)).ready_ms == clock()


async def test_promote_moves_due_tasks_in_order_of_their_ready_time(
    broker: Broker, clock: FakeClock
) -> None:
    late = await submit(broker, delay=3)
    early = await submit(broker, delay=1)
    later = await submit(broker, delay=30)

    clock.advance(5)
    result = await broker.promote()

    assert result.promoted == 2
    assert result.next_due_ms == (await broker.get(later)).ready_ms
    assert await ready_list(broker, "medium") == [early, late]


async def test_promote_respects_its_limit(broker: Broker, clock: FakeClock) -> None:
    for _ in range(5):
        await submit(broker, delay=1)
    clock.advance(1)

    assert (await broker.promote(limit=2)).promoted == 2
    assert (await broker.promote(limit=2)).promoted == 2
    assert (await broker.promote(limit=2)).promoted == 1
    await assert_invariants(broker)


# -- idempotency -----------------------------------------------------------------------------


async def test_same_idempotency_key_returns_the_first_task_and_creates_nothing(
    broker: Broker,
) -> None:
    first = await broker.enqueue(Submission(type="mail.send", payload=1, idempotency_key="k1"))
    keys_before = await namespace_keys(broker)
    stats_before = await broker.stats()

    again = await broker.enqueue(Submission(type="mail.send", payload=2, idempotency_key="k1"))

    assert first.created
    assert (again.id, again.state, again.created, again.priority) == (
        first.id,
        TaskState.PENDING,
        False,
        Priority.MEDIUM,
    )
    assert (await broker.get(first.id)).payload == 1
    assert await namespace_keys(broker) == keys_before
    assert await broker.stats() == stats_before
    await assert_invariants(broker)


async def test_duplicate_idempotency_key_reports_the_first_tasks_current_state(
    broker: Broker,
) -> None:
    first = await submit(broker, idempotency_key="k1")
    await claim(broker)

    again = await broker.enqueue(Submission(type="mail.send", idempotency_key="k1"))

    assert (again.id, again.state, again.created) == (first, TaskState.ACTIVE, False)


async def test_same_idempotency_key_twice_in_one_batch_creates_one_task(broker: Broker) -> None:
    one, two = await broker.enqueue_many(
        [
            Submission(type="mail.send", idempotency_key="same"),
            Submission(type="mail.send", idempotency_key="same"),
        ]
    )

    assert one.created and not two.created
    assert two.id == one.id
    assert await ready_list(broker, "medium") == [one.id]
    await assert_invariants(broker)


async def test_idempotency_key_lives_for_the_configured_window(make_broker: MakeBroker) -> None:
    broker = make_broker(idempotency_window=90.0)

    await submit(broker, idempotency_key="k1")

    ttl = await broker.redis.execute("PTTL", broker.keys.idempotency("k1"))
    assert 89_000 < ttl <= 90_000


async def test_idempotency_window_under_a_millisecond_still_sets_a_valid_expiry(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(idempotency_window=0.0001)

    await submit(broker, idempotency_key="k1")

    assert await broker.redis.execute("PTTL", broker.keys.idempotency("k1")) in (0, 1, -2)


async def test_after_the_idempotency_window_the_same_key_makes_a_new_task(
    broker: Broker,
) -> None:
    first = await submit(broker, idempotency_key="k1")
    # The window is Redis' own expiry (real time): end it now instead of waiting for it.
    await broker.redis.execute("PEXPIRE", broker.keys.idempotency("k1"), 0)

    again = await broker.enqueue(Submission(type="mail.send", idempotency_key="k1"))

    assert again.created
    assert again.id != first
    assert await broker.redis.execute("GET", broker.keys.idempotency("k1")) == again.id
    await assert_invariants(broker)


async def test_idempotency_key_of_a_purged_task_makes_a_new_task(broker: Broker) -> None:
    first = await submit(broker, idempotency_key="k1", max_retries=0)
    (task,) = await claim(broker)
    await broker.report([failed(task)])
    assert await broker.purge_dead() == 1

    again = await broker.enqueue(Submission(type="mail.send", idempotency_key="k1"))

    assert again.created
    assert again.id != first
    assert again.state is TaskState.PENDING
    await assert_invariants(broker)


# -- validation ------------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"priority": "urgent"}, "priority", "'urgent'; expected one of critical, high, medium, low"),
    ({"priority": 3}, "priority", "got int (3); expected one of critical, high"),
    ({"payload": {1, 2}}, "payload", "not JSON-serialisable"),
    ({"payload": object()}, "payload", "not JSON-serialisable"),
    ({"max_retries": -1}, "max_retries", "max_retries: Expected int >= 0, not -1"),
    ({"max_retries": 1001}, "max_retries", "Expected int <= 1000, not 1001"),
    ({"max_retries": True}, "max_retries", "got bool (True)"),
    ({"max_retries": 2.0}, "max_retries", "got float (2.0)"),
    ({"timeout": 0}, "timeout", "timeout: Expected float > 0.0, not 0"),
    ({"timeout": -5}, "timeout", "not -5"),
    ({"timeout": float("nan")}, "timeout", "not nan"),
    ({"delay": 1, "eta": 1_700_000_000.0}, "delay", "either delay or eta, not both"),
    ({"delay": -1}, "delay", "delay: Expected float >= 0.0, not -1"),
    ({"eta": datetime(2030, 1, 1)}, "eta", "with a timezone component"),
    ({"eta": "tomorrow"}, "eta", "Invalid RFC3339 encoded datetime, not 'tomorrow'"),
    ({"eta": 1e20}, "eta", "eta: Expected float <= 9999999999.0"),
    ({"type": ""}, "type", "type: Expected str of length >= 1"),
    ({"type": "mail send"}, "type", "invalid task type 'mail send'"),
    ({"type": "mail:send"}, "type", "invalid task type 'mail:send'"),
    ({"type": "mail{send}"}, "type", "ASCII letters, digits, '.', '_' or '-'"),
    ({"type": "no\u0000op"}, "type", "invalid task type 'no\\x00op'"),
    ({"type": "mail\u00e9"}, "type", "invalid task type"),
    ({"type": ".hidden"}, "type", "starting with a letter or digit"),
    ({"type": "x" * 201}, "type", "Expected str of length <= 200"),
    ({"idempotency_key": "k" * 201}, "idempotency_key", "Expected str of length <= 200"),
    ({"idempotency_key": ""}, "idempotency_key", "Expected str of length >= 1"),
]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    INVALID,
    ids=[f"{field}-{i}" for i, (_, field, _) in enumerate(INVALID)],
)
async def test_invalid_submission_is_refused_naming_the_field_and_problem(
    broker: Broker, fields: dict[str, Any], field: str, message: str
) -> None:
    submission = Submission(**{"type": "mail.send", **fields})

    with pytest.raises(InvalidTaskError) as caught:
        await broker.enqueue(submission)

    assert caught.value.field == field
    assert message in str(caught.value)
    assert await namespace_keys(broker) == []


async def test_oversized_payload_is_refused_with_payload_too_large(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_payload_bytes=64)
    await submit(broker, payload="x" * 62)  # 64 bytes of JSON with the quotes: just fits

    with pytest.raises(PayloadTooLargeError) as caught:
        await broker.enqueue(Submission(type="mail.send", payload="x" * 63))

    assert caught.value.field == "payload"
    assert "65 bytes of JSON, over the limit of 64" in str(caught.value)


async def test_invalid_submission_in_a_batch_names_its_index_and_writes_nothing(
    broker: Broker,
) -> None:
    batch = [
        Submission(type="mail.send"),
        Submission(type="mail.send", priority="urgent"),
        Submission(type="mail.send"),
    ]

    with pytest.raises(InvalidTaskError) as caught:
        await broker.enqueue_many(batch)

    assert caught.value.field == "1.priority"
    assert str(caught.value).startswith("task 1: priority: Invalid enum value 'urgent'")
    assert await namespace_keys(broker) == []


async def test_oversized_payload_in_a_batch_keeps_its_error_type(make_broker: MakeBroker) -> None:
    broker = make_broker(max_payload_bytes=10)

    with pytest.raises(PayloadTooLargeError) as caught:
        await broker.enqueue_many(
            [Submission(type="a"), Submission(type="a"), Submission(type="a", payload="y" * 20)]
        )

    assert caught.value.field == "2.payload"
    assert await namespace_keys(broker) == []


# -- back-pressure ---------------------------------------------------------------------------


async def test_queue_full_refuses_a_batch_that_would_exceed_the_depth_and_writes_nothing(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_queue_depth=3)
    await broker.enqueue_many([Submission(type="a"), Submission(type="a")])
    keys_before = await namespace_keys(broker)
    stats_before = await broker.stats()

    with pytest.raises(QueueFullError) as caught:
        await broker.enqueue_many([Submission(type="b"), Submission(type="a", priority="low")] * 2)

    assert "queue of task type 'a' is full: 2 pending, limit 3" in str(caught.value)
    assert await namespace_keys(broker) == keys_before
    assert await broker.stats() == stats_before


async def test_queue_depth_counts_each_type_and_all_priorities_of_it(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_queue_depth=2)
    await submit(broker, "a", priority="critical")
    await submit(broker, "a", priority="low")

    await submit(broker, "b")  # another type has room of its own
    with pytest.raises(QueueFullError):
        await submit(broker, "a", priority="high")

    await claim(broker, 1, ("a",))  # a claimed task no longer counts
    await submit(broker, "a", priority="high")
    await assert_invariants(broker)


async def test_queue_full_does_not_refuse_a_resubmission_with_a_known_idempotency_key(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_queue_depth=1)
    first = await submit(broker, idempotency_key="k1")

    again = await broker.enqueue(Submission(type="mail.send", idempotency_key="k1"))

    assert (again.id, again.created) == (first, False)


async def test_queue_full_counts_a_batchs_repeated_idempotency_key_once(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_queue_depth=1)

    one, two = await broker.enqueue_many(
        [
            Submission(type="mail.send", idempotency_key="k1"),
            Submission(type="mail.send", idempotency_key="k1"),
        ]
    )

    assert (one.created, two.created, two.id) == (True, False, one.id)
    await assert_invariants(broker)


# -- enqueue and view in one round trip --------------------------------------------------------


async def test_a_new_task_is_submitted_and_read_back_in_one_round_trip(
    broker: Broker, clock: FakeClock
) -> None:
    earlier = await broker.enqueue(Submission(type=TYPE, payload={}))
    await broker.view(earlier.id, 1000)  # Redis has both scripts now: no NOSCRIPT round
    submission = Submission(type=TYPE, payload={"n": 1}, priority="high")
    operation = ops.enqueue_and_view(broker.settings, broker.keys, submission, clock(), 1000)
    step = operation.send(None)
    assert isinstance(step, ops.Pipeline)
    assert [command[0] for command in step.commands] == ["EVALSHA", "EVALSHA"]
    replies = await broker.redis.pipeline(step.commands)
    with pytest.raises(StopIteration) as stop:
        operation.send(replies)  # no second step: the reply to the pipeline is all it needs
    submitted, view = stop.value.value
    assert submitted.created and submitted.state is TaskState.PENDING
    assert view.task == await broker.get(submitted.id)
    assert view.task.payload == {"n": 1} and view.task.priority is Priority.HIGH


async def test_enqueue_and_view_of_a_known_idempotency_key_reads_the_earlier_task(
    broker: Broker,
) -> None:
    first = await broker.enqueue(Submission(type=TYPE, payload={"n": 1}, idempotency_key="k"))
    again, view = await broker.enqueue_and_view(
        Submission(type=TYPE, payload={"n": 2}, idempotency_key="k"), 1000
    )
    assert (again.id, again.created) == (first.id, False)
    assert view.task.id == first.id and view.task.payload == {"n": 1}


async def test_enqueue_and_view_cuts_fields_over_the_limit(broker: Broker) -> None:
    submitted, view = await broker.enqueue_and_view(
        Submission(type=TYPE, payload={"text": "x" * 500}), 100
    )
    assert submitted.created
    assert view.truncated == {"payload": len('{"text":""}') + 500}
    assert view.task.payload is None


async def test_enqueue_and_view_works_after_redis_forgot_its_scripts(broker: Broker) -> None:
    await broker.redis.execute("SCRIPT", "FLUSH")
    submitted, view = await broker.enqueue_and_view(Submission(type=TYPE, payload={}), 1000)
    assert view.task.id == submitted.id and submitted.created
    # the first, refused try wrote nothing
    assert (await broker.stats()).by_state[TaskState.PENDING] == 1


async def test_enqueue_and_view_refuses_as_enqueue_does(make_broker: MakeBroker) -> None:
    broker = make_broker(max_queue_depth=1)
    await broker.enqueue(Submission(type=TYPE, payload={}))
    with pytest.raises(QueueFullError):
        await broker.enqueue_and_view(Submission(type=TYPE, payload={}), 1000)
    assert (await broker.stats()).by_state[TaskState.PENDING] == 1
