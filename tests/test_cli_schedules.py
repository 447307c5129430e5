"""``taskqueue schedules`` on Redis (no API server), and the schedule methods of both Python
clients: what one makes, the others read."""

from __future__ import annotations

import pytest
from cli_helpers import cli_env, run_in_process

from taskqueue import Client, ScheduleNotFoundError, SyncClient
from taskqueue.broker import BrokerSettings
from taskqueue.cli import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE

NAMESPACE = "cli-schedules"


def test_add_list_show_pause_and_delete(redis_url: str) -> None:
    env = cli_env(redis_url, NAMESPACE)

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return run_in_process(env, *args)

    made = cli("schedules", "add", "poll", "feed.poll", "--every", "30s", "--priority", "low")
    assert made.code == 0, made
    assert made.out.startswith("made schedule poll\n")
    listed = cli("schedules")
    header, row = listed.out.splitlines()
    assert header.split() == ["NAME", "TYPE", "WHEN", "NEXT", "LAST", "LAST", "TASK", "FIRED"]
    assert row.split()[:4] == ["poll", "feed.poll", "every", "30s"]
    document = cli("schedules", "show", "poll", "--json").json()
    assert document["spec"] == {"name": "poll", "type": "feed.poll", "every": 30.0,
                                "priority": "low"}  # fmt: skip
    assert document["next_run_ms"] % 30_000 == 0

    paused = cli("schedules", "pause", "poll", "--json").json()
    assert (paused["paused"], paused["next_run_ms"]) == (True, None)
    assert "paused" in cli("schedules").out
    assert cli("schedules", "resume", "poll", "--json").json()["paused"] is False

    replaced = cli("schedules", "add", "poll", "feed.poll", "--every", "1m", "--replace")
    assert replaced.code == 0, replaced
    assert cli("schedules", "show", "poll", "--json").json()["spec"]["every"] == 60.0

    refused = cli("schedules", "delete", "poll")  # no terminal, no --yes: nothing deleted
    assert refused.code == EXIT_USAGE, refused
    assert "pass --yes" in refused.error
    assert cli("schedules", "delete", "poll", "--yes").code == 0
    gone = cli("schedules", "show", "poll")
    assert (gone.code, gone.error) == (EXIT_NOT_FOUND, "no schedule named 'poll'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x", "echo"), "cron: give exactly one of 'cron' and 'every'"),
        (("x", "echo", "--cron", "99 * * * *"), "cron: '99 * * * *' is not a valid cron"),
        (("x", "echo", "--every", "5s", "--timezone", "Moon/Base"), "unknown time zone"),
        (("x", "echo", "--every", "5s", "--payload", "{"), "--payload is not JSON"),
    ],
)
def test_a_bad_definition_exits_2_before_anything_is_sent(
    redis_url: str, args: tuple[str, ...], message: str
) -> None:
    result = run_in_process(cli_env(redis_url, NAMESPACE), "schedules", "add", *args)
    assert result.code == EXIT_USAGE, result
    assert message in result.error


def test_a_taken_name_exits_1(redis_url: str) -> None:
    env = cli_env(redis_url, NAMESPACE)
    assert run_in_process(env, "schedules", "add", "a", "echo", "--every", "1m").code == 0
    again = run_in_process(env, "schedules", "add", "a", "echo", "--every", "1m")
    assert again.code == EXIT_FAILED, again


async def test_both_clients_make_and_read_the_same_schedules(redis_url: str) -> None:
    settings = BrokerSettings(namespace=NAMESPACE)
    definition = {"name": "sync", "type": "echo", "cron": "*/5 * * * *", "payload": [1]}
    with SyncClient(redis_url, settings=settings) as sync:
        made = sync.put_schedule(definition)
        assert (made.spec.cron, made.paused) == ("*/5 * * * *", False)
    async with Client(redis_url, settings=settings) as client:
        assert (await client.schedule("sync")).spec == made.spec
        assert (await client.pause_schedule("sync")).paused
        page = await client.schedules()
        assert [s.spec.name for s in page.items] == ["sync"]
        await client.delete_schedule("sync")
        with pytest.raises(ScheduleNotFoundError):
            await client.schedule("sync")
