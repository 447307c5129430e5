"""The policy's layers and scopes as enqueue.lua resolves them, and the served types that
heartbeats keep, on a real Redis with a fake clock."""

from __future__ import annotations

import pytest
from broker_helpers import worker_info
from conftest import FakeClock, MakeBroker

from taskqueue.broker import Broker, Submission
from taskqueue.errors import InvalidTaskError, UnservedTypeError
from taskqueue.models import Policy, Priority


async def test_a_setting_resolves_live_type_then_config_type_then_live_then_config_global(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(default_max_retries=1)  # the fallback: no layer sets max_retries
    assert (await broker.get((await broker.enqueue(Submission(type="t"))).id)).max_retries == 1

    async def retries() -> int:
        return (await broker.get((await broker.enqueue(Submission(type="t"))).id)).max_retries

    await broker.set_policy(Policy(max_retries=2), layer="config")
    assert await retries() == 2
    await broker.set_policy(Policy(max_retries=3))  # live, global
    assert await retries() == 3
    await broker.set_type_policies({"t": Policy(max_retries=4, priority=Priority.HIGH)})
    assert await retries() == 4
    await broker.set_policy(Policy(max_retries=5), "t")
    assert await retries() == 5
    await broker.unset_policy(["max_retries"], "t")
    assert await retries() == 4
    view = await broker.policy()
    assert view.effective("t") == Policy(
        max_queue_depth=0,
        max_retries=4,
        timeout=300.0,
        priority=Priority.HIGH,
        idempotency_window=86400.0,
        refuse_unserved=False,
        max_task_types=1000,
        unique=False,
        max_snoozes=100,
    )


async def test_writing_the_config_policy_never_touches_the_live_layer(broker: Broker) -> None:
    await broker.set_policy(Policy(max_queue_depth=7))
    await broker.write_config_policy()
    view = await broker.policy()
    assert view.layer("live", None) == Policy(max_queue_depth=7)
    assert view.layer("config", None) == broker.settings.policy()
    assert view.effective(None).max_queue_depth == 7


async def test_invalid_settings_and_types_are_refused_naming_the_field(broker: Broker) -> None:
    with pytest.raises(InvalidTaskError) as bad:
        await broker.set_policy(Policy(max_retries=-1))
    assert bad.value.field == "max_retries"
    with pytest.raises(InvalidTaskError) as bad_type:
        await broker.set_policy(Policy(max_retries=1), "a b")
    assert bad_type.value.field == "type"
    with pytest.raises(InvalidTaskError) as unknown:
        await broker.unset_policy(["depth"])
    assert unknown.value.field == "depth"


async def test_a_type_is_served_from_a_heartbeat_until_its_registration_lapses(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(lease_ttl=8.0)
    assert (await broker.enqueue(Submission(type="t"))).warnings != []

    await broker.heartbeat(worker_info("w1", clock(), ("t",)), [])
    assert (await broker.enqueue(Submission(type="t"))).warnings == []
    assert await broker.served_types() == {"t"}

    clock.set(clock() + 8001)  # the registration's TTL has passed without a beat
    assert await broker.served_types() == frozenset()
    with pytest.raises(UnservedTypeError):
        await broker.enqueue(Submission(type="t"), strict=True)


async def test_a_clean_stop_unserves_only_the_types_no_other_worker_serves(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.heartbeat(worker_info("w1", clock(), ("a", "b")), [])
    await broker.heartbeat(worker_info("w2", clock(), ("b",)), [])

    await broker.deregister("w1")

    assert await broker.served_types() == {"b"}
