"""Shared fixtures.

The suite runs its own ``redis-server`` (see :mod:`taskqueue.embedded`) on a free port, so it
never touches a Redis the machine already runs on 6379.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from taskqueue.broker import Broker, BrokerSettings
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis

# Discovery (taskqueue.discovery) reads the environment: no Redis URL and no systemd directory
# of whoever runs the suite may steer a test's clients.
for _name in [
    n
    for n in os.environ
    if n.startswith("TASKQUEUE_")
    or n in ("STATE_DIRECTORY", "CONFIGURATION_DIRECTORY", "CREDENTIALS_DIRECTORY")
]:
    del os.environ[_name]

# -- Redis server ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One private, non-persistent redis-server for the whole session."""
    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), persistent=False) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session server's URL, emptied (FLUSHALL) before each test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


# -- Broker ---------------------------------------------------------------------------------------

#: A realistic epoch (2023-11-14): times of 13 digits in milliseconds, as in production, so a
#: Lua script that mangles a large number (a float printed as "1.7e+12") fails here too.
EPOCH_MS = 1_700_000_000_000


class FakeClock:
    """The broker's clock in tests: epoch milliseconds that move only when the test says so.

    Pass it as ``Broker(..., clock=clock)``. Redis' own expiries (``PX``, ``PEXPIRE``) still run
    on the server's real clock; everything the broker decides by time follows this one.
    """

    def __init__(self, now_ms: int = EPOCH_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def set(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def advance(self, seconds: float = 0.0, *, ms: int = 0) -> int:
        """Move the clock forward by ``seconds`` plus ``ms``; returns the new time."""
        self.now_ms += round(seconds * 1000) + ms
        return self.now_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="redis")
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A trio-native client of the (emptied) session server, closed after the test."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


MakeBroker = Callable[..., Broker]


@pytest.fixture
def make_broker(redis: Redis, clock: FakeClock) -> MakeBroker:
    """A factory of brokers on the test's client and clock: ``make_broker(lease_ttl=5.0)``.

    Keyword arguments are :class:`BrokerSettings` fields; the rng is seeded, so retry jitter
    is the same from run to run.
    """

    def make(*, seed: int = 1234, **settings: Any) -> Broker:
        return Broker(redis, BrokerSettings(**settings), clock=clock, rng=random.Random(seed))

    return make


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    """A broker with default settings on the fake clock and a seeded rng."""
    return make_broker()
