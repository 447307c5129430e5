"""``taskqueue cancel --type`` and ``taskqueue purge``: how many they would affect, a question
before they act (a refusal without a terminal, unless --yes), on Redis and over ``--api``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import trio
from cli_helpers import TASKQUEUE, Result, cli_env, run_in_process
from invariants import assert_invariants

from taskqueue import SyncClient
from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.models import TaskState
from taskqueue.redis import Redis

NAMESPACE = "cli-bulk"


@pytest.fixture
def client(redis_url: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url, settings=BrokerSettings(namespace=NAMESPACE)) as sync:
        yield sync


def taskqueue(redis_url: str, *args: str) -> Result:
    return run_in_process(cli_env(redis_url, NAMESPACE), *args)


def on_a_terminal(redis_url: str, answer: str, *args: str) -> Result:
    """``taskqueue *args`` with a terminal as its standard input, ``answer`` typed into it."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        done = subprocess.run(
            [TASKQUEUE, *args],
            env=cli_env(redis_url, NAMESPACE),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def seed(client: SyncClient) -> None:
    client.submit_many([Submission(type="report.build", payload=i) for i in range(30)])
    client.submit_many([Submission(type="report.build", delay=600) for _ in range(20)])
    client.submit_many([Submission(type="mail.send") for _ in range(5)])


def check_invariants(redis_url: str) -> None:
    async def check() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await assert_invariants(Broker(redis, BrokerSettings(namespace=NAMESPACE)))
        finally:
            await redis.aclose()

    trio.run(check)


def test_cancel_of_a_type_refuses_without_a_terminal_and_proceeds_with_yes(
    redis_url: str, client: SyncClient
) -> None:
    seed(client)

    refused = taskqueue(redis_url, "cancel", "--type", "report.build")
    assert refused.code == 2, refused
    assert refused.error == (
        "cancel would end 30 pending and 20 scheduled tasks of type report.build: "
        "pass --yes to confirm"
    )
    assert client.stats().by_state[TaskState.PENDING] == 35

    done = taskqueue(redis_url, "cancel", "--type", "report.build", "--yes")
    assert done.code == 0, done
    assert done.out == "cancelled 50 tasks of type report.build (30 pending, 20 scheduled)\n"
    stats = client.stats()
    assert (stats.by_state[TaskState.PENDING], stats.by_state[TaskState.CANCELLED]) == (5, 50)
    check_invariants(redis_url)


def test_cancel_of_one_state_with_json(redis_url: str, client: SyncClient) -> None:
    seed(client)

    done = taskqueue(
        redis_url, "cancel", "--type", "report.build", "--state", "scheduled", "--yes", "--json"
    )

    assert done.json() == {
        "type": "report.build",
        "cancelled": 20,
        "by_state": {"scheduled": 20},
        "by_priority": {"medium": 20},
        "requested": 0,
    }
    assert client.stats().by_state[TaskState.PENDING] == 35


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name what to cancel: an ID, or --type TYPE (one of them)"),
        (("some-id", "--type", "x"), "name what to cancel: an ID, or --type TYPE (one of them)"),
        (("some-id", "--yes"), "--state, --active and --yes go with --type"),
        (("--type", "no spaces", "--yes"), "task type"),
    ],
)
def test_cancel_says_what_is_wrong_with_its_arguments(
    redis_url: str, args: tuple[str, ...], message: str
) -> None:
    refused = taskqueue(redis_url, "cancel", *args)
    assert refused.code == 2, refused
    assert message in refused.error


def test_on_a_terminal_cancel_asks_and_a_no_changes_nothing(
    redis_url: str, client: SyncClient
) -> None:
    seed(client)

    declined = on_a_terminal(redis_url, "n", "cancel", "--type", "report.build")
    assert declined.code == 1, declined
    assert "Cancel 30 pending and 20 scheduled tasks of type report.build?" in declined.err
    assert declined.err.endswith("taskqueue: nothing was cancelled\n")
    assert client.stats().by_state[TaskState.CANCELLED] == 0

    accepted = on_a_terminal(redis_url, "y", "cancel", "--type", "report.build")
    assert accepted.code == 0, accepted
    assert accepted.out.startswith("cancelled 50 tasks of type report.build")
    assert client.stats().by_state[TaskState.CANCELLED] == 50


def test_purge_of_a_state_refuses_without_a_terminal_and_proceeds_with_yes(
    redis_url: str, client: SyncClient
) -> None:
    seed(client)
    client.cancel_all("report.build")

    refused = taskqueue(redis_url, "purge", "cancelled")
    assert refused.code == 2, refused
    assert refused.error == "purge would delete 50 cancelled tasks: pass --yes to confirm"
    typed = taskqueue(redis_url, "purge", "cancelled", "--type", "report.build")
    assert typed.error == (
        "purge would delete the cancelled tasks of type report.build (of 50 cancelled in all):"
        " pass --yes to confirm"
    )

    done = taskqueue(redis_url, "purge", "cancelled", "--type", "mail.send", "--yes", "--json")
    assert done.json() == {"state": "cancelled", "type": "mail.send", "purged": 0}
    done = taskqueue(redis_url, "purge", "cancelled", "--yes")
    assert done.out == "purged 50 cancelled tasks\n"
    assert taskqueue(redis_url, "purge", "cancelled").out == "purged 0 cancelled tasks\n"
    assert client.stats().by_state[TaskState.CANCELLED] == 0
    check_invariants(redis_url)


def test_on_a_terminal_purge_asks_first(redis_url: str, client: SyncClient) -> None:
    seed(client)
    client.cancel_all("report.build", states=["scheduled"])

    declined = on_a_terminal(redis_url, "n", "purge", "cancelled")
    assert declined.code == 1, declined
    assert "Delete 20 cancelled tasks? This cannot be undone." in declined.err
    assert client.stats().by_state[TaskState.CANCELLED] == 20

    accepted = on_a_terminal(redis_url, "y", "purge", "cancelled")
    assert accepted.code == 0, accepted
    assert client.stats().by_state[TaskState.CANCELLED] == 0


@pytest.mark.parametrize("state", ["pending", "active", "gone"])
def test_purge_takes_only_finished_states(redis_url: str, state: str) -> None:
    refused = taskqueue(redis_url, "purge", state, "--yes")
    assert refused.code == 2, refused
    assert "succeeded" in refused.error
