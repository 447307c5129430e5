"""What a scrape of ``/metrics`` costs Redis, with 100,000 tasks queued.

Counted two ways: by wrapping the daemon's Redis client (round trips and commands it sends) and
by Redis itself (``INFO commandstats``: calls and microseconds of server time per command,
before and after one scrape). The daemon is API-only, so nothing else of it talks to Redis
meanwhile (its two subscriptions are idle). The limit on server time is Redis' own accounting of
the scrape's commands, not the test's wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
from api_helpers import api_server

from taskqueue.broker import Broker, Submission
from taskqueue.models import Priority, TaskState
from taskqueue.redis import Redis

QUEUED = 100_000
#: Redis-side time a scrape may take: "a few milliseconds" is the budget; it needs microseconds.
MAX_SCRAPE_USEC = 2_000


async def command_stats(redis: Redis) -> dict[str, tuple[int, int]]:
    """``command -> (calls, usec)`` from ``INFO commandstats``."""
    info: str = await redis.execute("INFO", "commandstats")
    stats: dict[str, tuple[int, int]] = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.removeprefix("cmdstat_").partition(":")
            values = dict(field.split("=") for field in fields.split(","))
            stats[name] = (int(values["calls"]), int(values["usec"]))
    return stats


def delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Calls and usec per command between two readings, leaving out the readings' own INFO."""
    out: dict[str, tuple[int, int]] = {}
    for name, (calls, usec) in after.items():
        was_calls, was_usec = before.get(name, (0, 0))
        if name != "info" and calls != was_calls:
            out[name] = (calls - was_calls, usec - was_usec)
    return out


class CommandCounter:
    """Wraps a :class:`Redis` client's command methods to count round trips and commands."""

    def __init__(self, redis: Redis) -> None:
        self.round_trips = 0
        self.commands: list[str] = []
        self._wrap(redis, "execute", lambda args: [str(args[0])])
        self._wrap(redis, "pipeline", lambda args: [str(c[0]) for c in args[0]])
        self._wrap(redis, "run_script", lambda args: [f"EVALSHA {args[0].name}"])

    def _wrap(self, redis: Redis, method: str, names: Callable[[Sequence[Any]], list[str]]) -> None:
        original = getattr(redis, method)

        async def counted(*args: Any) -> Any:
            self.round_trips += 1
            self.commands += names(args)
            return await original(*args)

        setattr(redis, method, counted)


async def scrape_cost(
    client: httpx.AsyncClient, daemon_redis: Redis, redis: Redis
) -> tuple[CommandCounter, dict[str, tuple[int, int]]]:
    counter = CommandCounter(daemon_redis)
    before = await command_stats(redis)
    response = await client.get("/metrics")
    after = await command_stats(redis)
    for method in ("execute", "pipeline", "run_script"):
        delattr(daemon_redis, method)  # unwrap: back to the class's methods
    assert response.status_code == 200
    assert "taskqueue_redis_up 1.0" in response.text
    return counter, delta(before, after)


async def test_a_scrape_sends_one_round_trip_of_eight_cheap_commands_however_many_tasks_wait(
    redis_url: str, redis: Redis
) -> None:
    broker = Broker(redis)
    priorities = list(Priority)
    # The trimmer (every second by default) would add its own round trip to a scrape it meets.
    async with (
        api_server(redis_url, retention__interval="1h") as server,
        server.client() as client,
    ):
        daemon_redis = server.daemon.broker.redis
        empty_counter, empty_stats = await scrape_cost(client, daemon_redis, redis)

        for start in range(0, QUEUED, 1000):
            await broker.enqueue_many(
                [
                    Submission(type=f"load.{n % 10}", priority=priorities[n % 4])
                    for n in range(start, start + 1000)
                ]
            )
        assert (await broker.stats()).by_state[TaskState.PENDING] == QUEUED
        counter, stats = await scrape_cost(client, daemon_redis, redis)
        body = (await client.get("/metrics")).text

    usec = sum(u for _, u in stats.values())
    print(
        f"\nscrape with {QUEUED:,} tasks queued: {counter.round_trips} round trip, "
        f"commands {counter.commands}; Redis commandstats delta {stats} "
        f"= {usec} usec of Redis time (empty queue: {empty_stats})"
    )
    assert counter.round_trips == 1
    # Broker.stats_and_served(): the counts hash, the sizes of the succeeded, cancelled,
    # expired and worker sets, the types a limit held back (one field per limited type), the
    # groups script (which reads the grouped types: none here), and the served-types hash
    # (which types get a label of their own).
    assert counter.commands == [
        "HGETALL", "ZCARD", "ZCARD", "ZCARD", "ZCARD", "HGETALL", "EVALSHA", "HGETALL"
    ]  # fmt: skip
    calls = {name: calls for name, (calls, _) in stats.items()}
    assert calls == {"hgetall": 3, "zcard": 4, "evalsha": 1, "hkeys": 1}
    assert usec < MAX_SCRAPE_USEC
    # The same commands as with nothing queued: the cost does not grow with the queue.
    assert counter.commands == empty_counter.commands
    assert stats.keys() == empty_stats.keys()
    for priority in priorities:
        line = f'taskqueue_queue_depth{{priority="{priority.value}",state="pending"}} 25000.0'
        assert line in body
