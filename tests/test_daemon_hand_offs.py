"""An idle daemon's worker takes tasks by hand-off: leased to it by the submit and sent on its
channel, with no claim between (see broker/lua/_lib.lua); a lost message, and a stop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.lowlevel
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state, wait_until
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.daemon.consumer import Consumer
from taskqueue.daemon.consumer import service as consumer_module
from taskqueue.daemon.consumer.slot import Running, TaskRunner
from taskqueue.models import Claim, TaskState
from taskqueue.outcomes import Outcome

WORKER = "w-hand-offs"


async def wait_registered(broker: Broker, worker: str = WORKER) -> None:
    """Until ``worker`` waits for a hand-off (its last claim came back short)."""

    async def registered() -> bool:
        return bool(await broker.redis.execute("HEXISTS", broker.keys.idle_workers, worker))

    await wait_until(registered, f"{worker} waits for a hand-off")


async def test_an_idle_worker_runs_tasks_no_claim_returned(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "IDLE_RECHECK", 3600.0)
    claimed: list[int] = []
    claim_batch = Broker.claim_batch

    async def counted(
        self: Broker, worker_id: str, task_types: Sequence[str], count: int, **options: Any
    ) -> Claim:
        claim = await claim_batch(self, worker_id, task_types, count, **options)
        claimed.append(len(claim.tasks) + len(claim.handed))
        return claim

    monkeypatch.setattr(Broker, "claim_batch", counted)
    async with running_daemon(daemon_config(redis_url, worker__id=WORKER)):
        for _ in range(5):
            await wait_registered(broker)
            task = await wait_for_state(broker, await submit(broker, "noop"))
            assert (task.state, task.worker_id, task.attempt) == (TaskState.SUCCEEDED, WORKER, 1)

    assert claimed and sum(claimed) == 0, f"claims returned {claimed} tasks"
    await assert_invariants(broker)


async def test_a_lost_hand_off_message_is_made_good_by_the_next_claim(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription broken at the wrong moment loses the message; the task runs anyway, on
    its first attempt, after the idle worker's next claim (here: its safety-net recheck)."""
    monkeypatch.setattr(consumer_module, "IDLE_RECHECK", 0.2)
    lost: list[str] = []
    receive = Consumer.receive_hand_off

    def lossy(self: Consumer, message: str) -> None:
        if not lost:
            lost.append(message)
        else:
            receive(self, message)

    monkeypatch.setattr(Consumer, "receive_hand_off", lossy)
    async with running_daemon(daemon_config(redis_url, worker__id=WORKER)):
        await wait_registered(broker)
        task_id = await submit(broker, "noop")
        task = await wait_for_state(broker, task_id)

    assert len(lost) == 1 and task_id in lost[0]
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 1)
    await assert_invariants(broker)


async def test_a_draining_worker_is_handed_nothing_more(redis_url: str, broker: Broker) -> None:
    """Its registration ends as its drain begins: a task submitted meanwhile waits for another
    worker instead of being handed to this one and given back."""
    config = daemon_config(redis_url, worker__id=WORKER, worker__concurrency=2)
    async with running_daemon(config) as daemon:
        slow = await submit(broker, "sleep", {"seconds": 30})
        await wait_for_state(broker, slow, TaskState.ACTIVE)
        await wait_registered(broker)  # one slot still free
        assert daemon.consumer is not None
        daemon.consumer.stop()

        async def unregistered() -> bool:
            entry = await broker.redis.execute("HEXISTS", broker.keys.idle_workers, WORKER)
            return not entry

        await wait_until(unregistered, "the draining worker's registration ends")
        waiting = await submit(broker, "noop")
        await trio.lowlevel.checkpoint()
        assert (await broker.get(waiting)).state is TaskState.PENDING
        daemon.consumer.end_drain()

    task = await broker.get(waiting)
    assert (task.state, task.attempt, task.worker_id) == (TaskState.PENDING, 0, None)
    await assert_invariants(broker)


async def test_the_claim_after_a_hand_off_waits_for_the_task_to_start(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim that registers the worker again goes out once the handed task has started,
    not ahead of it (trio may run a woken claim loop before the slot)."""
    monkeypatch.setattr(consumer_module, "IDLE_RECHECK", 3600.0)
    events: list[str] = []
    claim_batch = Broker.claim_batch
    receive = Consumer.receive_hand_off
    run = TaskRunner.run

    async def claim(
        self: Broker, worker_id: str, task_types: Sequence[str], count: int, **options: Any
    ) -> Claim:
        events.append("claim")
        return await claim_batch(self, worker_id, task_types, count, **options)

    def handed(self: Consumer, message: str) -> None:
        events.append("handed")
        receive(self, message)

    async def started(self: TaskRunner, running: Running) -> Outcome:
        events.append("start")
        return await run(self, running)

    monkeypatch.setattr(Broker, "claim_batch", claim)
    monkeypatch.setattr(Consumer, "receive_hand_off", handed)
    monkeypatch.setattr(TaskRunner, "run", started)
    async with running_daemon(daemon_config(redis_url, worker__id=WORKER)):
        for _ in range(8):
            await wait_registered(broker)
            await wait_for_state(broker, await submit(broker, "noop"))
        await wait_registered(broker)

    hand_offs = [i for i, event in enumerate(events) if event == "handed"]
    assert len(hand_offs) == 8, events
    for i in hand_offs:
        assert events[i + 1 : i + 3] == ["start", "claim"], events
