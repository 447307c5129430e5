"""The queue policy and unserved task types through the real ``taskqueue`` command and both
Python clients, against a real ``taskqueue worker`` process (issue 10, items 1 and 2).

The worker's configuration sets ``[task]``; the command line and the clients are started with
no configuration at all, so what they obey comes from Redis, not from their own defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cli_helpers import Daemon, start_daemon
from daemon_helpers import write_toml

from taskqueue import Client, QueueFullError, SyncClient, UnservedTypeError
from taskqueue.broker import BrokerSettings
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import Submission

NAMESPACE = "cli-policy"
#: Served by nobody: the worker claims only noop, so these tasks stay pending.
QUEUED = "echo"
TYPO = "imag.fake"
CONFIG = """
[task]
max_queue_depth = 5
max_retries = 6
default_timeout = "45s"

[worker]
task_types = ["noop"]
"""


@pytest.fixture
def daemon(redis_url: str, tmp_path: Path) -> Iterator[Daemon]:
    config = write_toml(tmp_path / "it.toml", CONFIG)
    with start_daemon(redis_url, NAMESPACE, tmp_path, "--config", str(config)) as daemon:
        yield daemon


def settings() -> BrokerSettings:
    """What a client built with no configuration has: the built-in defaults."""
    return BrokerSettings(namespace=NAMESPACE)


def test_the_cli_obeys_the_daemons_depth_limit_and_defaults(daemon: Daemon) -> None:
    codes = [daemon.run("submit", QUEUED).code for _ in range(7)]

    assert codes == [0] * 5 + [1] * 2
    refused = daemon.run("submit", QUEUED)
    assert refused.error == f"queue of task type {QUEUED!r} is full: 5 pending, limit 5"
    first = daemon.run("tasks", "--type", QUEUED, "--json").json()
    assert {(t["max_retries"], t["timeout_ms"]) for t in first} == {(6, 45_000)}


def test_both_clients_obey_the_daemons_depth_limit_and_defaults(
    daemon: Daemon, redis_server: EmbeddedRedis
) -> None:
    with SyncClient(redis_server.url, settings=settings()) as sync:
        ids = [sync.submit(QUEUED).id for _ in range(3)]
        assert {(t.max_retries, t.timeout_ms) for t in map(sync.get, ids)} == {(6, 45_000)}

    async def from_trio() -> None:
        async with Client(redis_server.url, settings=settings()) as client:
            await client.submit_many([Submission(type=QUEUED), Submission(type=QUEUED)])
            with pytest.raises(QueueFullError, match="5 pending, limit 5"):
                await client.submit(QUEUED)

    trio.run(from_trio)
    with SyncClient(redis_server.url, settings=settings()) as sync, pytest.raises(QueueFullError):
        sync.submit(QUEUED)


def test_a_live_policy_change_binds_the_next_submit_of_the_cli_and_both_clients(
    daemon: Daemon, redis_server: EmbeddedRedis
) -> None:
    changed = daemon.run("policy", "set", "--type", QUEUED, "max_queue_depth=1", "max_retries=2")
    assert changed.code == 0, changed
    assert daemon.run("submit", QUEUED).code == 0
    assert daemon.run("submit", QUEUED).code == 1  # full at 1, no longer 5
    with SyncClient(redis_server.url, settings=settings()) as sync:
        with pytest.raises(QueueFullError, match="limit 1"):
            sync.submit(QUEUED)
        sync.set_policy(QUEUED, max_queue_depth=3)
        assert sync.get(sync.submit(QUEUED).id).max_retries == 2

    async def from_trio() -> None:
        async with Client(redis_server.url, settings=settings()) as client:
            assert (await client.get((await client.submit(QUEUED)).id)).max_retries == 2
            await client.set_policy(QUEUED, max_retries=4)
            with pytest.raises(QueueFullError, match="limit 3"):
                await client.submit(QUEUED)
            await client.unset_policy("max_queue_depth", task_type=QUEUED)

    trio.run(from_trio)
    # Unset live: the daemon's configured limit (5) applies again.
    assert [daemon.run("submit", QUEUED).code for _ in range(3)] == [0, 0, 1]
    shown = daemon.run("policy", "show", "--type", QUEUED, "--json").json()
    assert shown["live"] == {"max_retries": 4}
    assert shown["effective"]["max_queue_depth"] == 5


def test_a_restart_keeps_what_was_set_live_and_rewrites_the_config_layer(
    redis_url: str, tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "it.toml", CONFIG)
    with start_daemon(redis_url, NAMESPACE, tmp_path, "--config", str(config)) as daemon:
        assert daemon.run("policy", "set", "max_queue_depth=2").code == 0
    write_toml(config, CONFIG.replace("max_queue_depth = 5", "max_queue_depth = 9"))
    with start_daemon(redis_url, NAMESPACE, tmp_path, "--config", str(config)) as daemon:
        shown = daemon.run("policy", "show", "--json").json()["global"]
        assert (shown["live"], shown["config"]["max_queue_depth"]) == ({"max_queue_depth": 2}, 9)
        assert [daemon.run("submit", QUEUED).code for _ in range(3)] == [0, 0, 1]
        assert daemon.run("policy", "unset", "max_queue_depth").code == 0
        assert (
            daemon.run("policy", "show", "--json").json()["global"]["effective"]["max_queue_depth"]
            == 9
        )


def test_an_unserved_type_is_warned_about_refused_when_strict_and_flagged_by_queues(
    daemon: Daemon,
) -> None:
    warned = daemon.run("submit", TYPO)
    assert warned.code == 0, warned
    assert warned.err.strip() == (
        f"warning: no live worker serves task type {TYPO!r}: it waits until one starts"
    )
    served = daemon.run("submit", "noop")
    assert (served.code, served.err) == (0, "")

    strict = daemon.run("submit", TYPO, "--strict")
    assert strict.code == 1
    assert f"no live worker serves task type {TYPO!r}" in strict.error

    queues = daemon.run("queues", "--json").json()
    assert queues["unserved_types"] == [TYPO]
    assert "noop" in queues["served_types"]
    assert "task types no live worker serves" in daemon.run("queues").out


def test_refuse_unserved_policy_refuses_for_the_cli_and_both_clients(
    daemon: Daemon, redis_server: EmbeddedRedis
) -> None:
    assert daemon.run("policy", "set", "refuse_unserved=true").code == 0
    assert daemon.run("submit", TYPO).code == 1
    assert daemon.run("submit", "noop").code == 0  # a served type is not refused
    with SyncClient(redis_server.url, settings=settings()) as sync:
        with pytest.raises(UnservedTypeError) as refused:
            sync.submit(TYPO)
        assert (refused.value.task_type, refused.value.field) == (TYPO, "type")

    async def from_trio() -> None:
        async with Client(redis_server.url, settings=settings()) as client:
            with pytest.raises(UnservedTypeError):
                await client.submit(TYPO)
            await client.unset_policy("refuse_unserved")
            submitted = await client.submit(TYPO)
            assert submitted.warnings == [
                f"no live worker serves task type {TYPO!r}: it waits until one starts"
            ]

    trio.run(from_trio)


def test_submit_wait_ends_when_no_worker_serves_the_type(daemon: Daemon) -> None:
    done = daemon.run("submit", TYPO, "--wait", "--unserved-grace", "300ms")

    assert done.code == 1, done
    warning, error = done.err.splitlines()
    assert warning.startswith("warning: no live worker serves task type")
    assert error.startswith("taskqueue: no worker serves this type: ")
    assert TYPO in error


def test_policy_set_takes_a_group_limit_and_the_clients_read_it(
    daemon: Daemon, redis_server: EmbeddedRedis
) -> None:
    changed = daemon.run(
        "policy", "set", "--type", "grouped.cli", "group_concurrency=3", "group_rate_limit=5/s"
    )
    assert changed.code == 0, changed
    with SyncClient(redis_server.url, settings=settings()) as sync:
        effective = sync.policy().effective("grouped.cli")
        assert (effective.group_concurrency, effective.group_rate_limit) == (3, "5/s")
    bad = daemon.run("policy", "set", "--type", "grouped.cli", "group_rate_limit=5")
    assert bad.code == 2 and "group_rate_limit" in bad.error, bad
    refused = daemon.run("policy", "set", "group_concurrency=3")
    assert refused.code != 0 and "per task type" in refused.error, refused
