"""A small trio-native Redis client: connections on hiredis, a pool, scripts and pub/sub."""

from taskqueue.redis.client import Redis, Script, Subscription
from taskqueue.redis.cluster import ClusterError, ClusterRedis
from taskqueue.redis.connection import Connection
from taskqueue.redis.errors import (
    AuthenticationError,
    NoScriptError,
    NotRedisError,
    RedisConnectionError,
    RedisError,
    ResponseError,
)
from taskqueue.redis.url import RedisAddress

__all__ = [
    "AuthenticationError",
    "ClusterError",
    "ClusterRedis",
    "Connection",
    "NoScriptError",
    "NotRedisError",
    "Redis",
    "RedisAddress",
    "RedisConnectionError",
    "RedisError",
    "ResponseError",
    "Script",
    "Subscription",
]
