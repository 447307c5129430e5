"""``taskqueue pause|resume`` on Redis: the types' live ``paused`` setting, which claims obey."""

from __future__ import annotations

import trio
from cli_helpers import cli_env, run_in_process

from taskqueue import SyncClient
from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.redis import Redis

NAMESPACE = "cli-pausing"
SETTINGS = BrokerSettings(namespace=NAMESPACE)


def claimed(redis_url: str) -> int:
    """How many report.build tasks a claim gets now (the CLI runs its own trio loop)."""

    async def claim() -> int:
        redis = Redis.from_url(redis_url)
        try:
            return len(await Broker(redis, SETTINGS).claim("w1", ["report.build"], 10))
        finally:
            await redis.aclose()

    return trio.run(claim)


def test_pause_holds_a_type_back_and_resume_lets_it_go(redis_url: str) -> None:
    env = cli_env(redis_url, NAMESPACE)
    with SyncClient(redis_url, settings=SETTINGS) as client:
        client.submit_many([Submission(type="report.build")] * 3)

        paused = run_in_process(env, "pause", "report.build", "mail.send")
        assert paused.code == 0, paused
        assert paused.out == "paused report.build (3 pending)\npaused mail.send (0 pending)\n"
        assert client.policy().layer("live", "report.build").paused is True
        assert claimed(redis_url) == 0

        resumed = run_in_process(env, "resume", "report.build", "--json")
        assert resumed.json() == {"report.build": {"paused": False, "pending": 3}}
        assert client.policy().layer("live", "report.build").paused is None
        assert claimed(redis_url) == 3
