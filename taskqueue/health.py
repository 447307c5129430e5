"""What a process knows about its own health: the source of ``/readyz``, of gRPC health checks
and of systemd's STATUS line.

Shared by the daemon's services and the API alike: loops report Redis successes and failures
through :class:`RedisGuard`; the probes read :class:`Health`.
"""

from __future__ import annotations

import logging
import random
from types import TracebackType

import trio

from taskqueue.redis import NotRedisError, RedisError

log = logging.getLogger(__name__)


class Health:
    """Whether Redis answers and which services run.

    Services report Redis successes and failures through :class:`RedisGuard`; readiness is
    "Redis answered the last command, and every service that should run has started".
    """

    def __init__(self) -> None:
        self.redis_ok = False
        self.redis_error: str | None = None
        self.started: set[str] = set()
        self.expected: set[str] = set()
        self.draining = False

    def redis_up(self) -> None:
        if not self.redis_ok and self.redis_error is not None:
            log.info("Redis is reachable again")
        self.redis_ok = True
        self.redis_error = None

    def redis_down(self, error: BaseException) -> None:
        if self.redis_ok or self.redis_error is None:
            log.warning("Redis is unreachable: %s; retrying with backoff", error)
        self.redis_ok = False
        self.redis_error = str(error)

    @property
    def ready(self) -> bool:
        return self.redis_ok and self.expected <= self.started and not self.draining

    def describe(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "redis": "ok" if self.redis_ok else (self.redis_error or "not connected"),
            "services": {name: name in self.started for name in sorted(self.expected)},
            "draining": self.draining,
        }


class RedisGuard:
    """``async with guard:`` around one iteration of a service loop.

    A Redis error is not a crash: it is logged (once per outage), marks the daemon not-ready,
    and the guard sleeps an exponentially growing, jittered delay (at most ``maximum``) before
    suppressing it, so the loop simply goes round again. Any other exception propagates: a
    programming error must crash the daemon, and systemd restarts it. So does
    :class:`~taskqueue.redis.NotRedisError`: what answers at the address is not Redis, which
    waiting will not change (the command line reports it in one line, exit 4).
    """

    def __init__(self, health: Health, *, initial: float = 0.1, maximum: float = 5.0) -> None:
        self.health = health
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def succeeded(self) -> None:
        """Redis answered. Leaving the block without an error says so too; a block that goes on
        to wait (a sleep, a subscription) calls this first, or readiness would lag behind."""
        self._delay = self.initial
        self.health.redis_up()

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self.succeeded()
            return False
        if not isinstance(exc, RedisError) or isinstance(exc, NotRedisError):
            return False  # a server that is not Redis will not become one: stop, saying so
        self.health.redis_down(exc)
        await trio.sleep(random.uniform(self._delay / 2, self._delay))
        self._delay = min(self.maximum, self._delay * 2)
        return True
