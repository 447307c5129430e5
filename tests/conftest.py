"""Shared fixtures.

The suite runs its own ``redis-server`` (see :mod:`taskqueue.embedded`) on a free port, so it
never touches a Redis the machine already runs on 6379.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from taskqueue.embedded import EmbeddedRedis

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
