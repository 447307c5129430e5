"""The trio client: submit, inspect, wait for and steer tasks from trio code.

It talks to Redis directly through the broker (the same Lua scripts the API and the workers
run), so submitting needs no API server and costs one round trip::

    async with taskqueue.Client("redis://localhost:6379/0") as client:
        submitted = await client.submit("http.request", {"url": "https://example.com/hook"})
        task = await client.wait(submitted.id, timeout=30)

For code that is not async, :class:`taskqueue.SyncClient` offers the same operations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

import trio

from taskqueue import tracing
from taskqueue.broker import (
    Broker,
    BrokerSettings,
    BulkCancellation,
    CancelOutcome,
    Page,
    PolicyView,
    QueueReport,
    Submission,
    Submitted,
    events_from_message,
)
from taskqueue.broker.model import BULK_CANCEL_STATES
from taskqueue.discovery import DEFAULT_URL, find_redis, redis_address
from taskqueue.models import (
    DEFAULT_PAGE,
    Policy,
    QueueStats,
    SubmitOptions,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
    Workflow,
    validated,
)
from taskqueue.redis import Redis, Subscription
from taskqueue.schedules import Schedule, ScheduleSpec, schedule_spec

if TYPE_CHECKING:
    from taskqueue.config import Config

__all__ = ["DEFAULT_URL", "Client"]


class EventStream:
    """The task events of one subscription (see :meth:`Client.events`), one at a time."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self._buffer: deque[TaskEvent] = deque()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> TaskEvent:
        while not self._buffer:
            _, data = await self._subscription.get_message()
            self._buffer.extend(events_from_message(data))
        return self._buffer.popleft()


class Client:
    """Operations on one taskqueue namespace of one Redis, from trio code.

    Holds a pool of connections: close it with :meth:`aclose`, or use ``async with``. Unset
    submission options and limits come from the queue policy in Redis, exactly as for a
    submission through the API; ``settings`` only stand in where no daemon has written one.
    """

    def __init__(
        self,
        url: str | Redis | None = None,
        *,
        settings: BrokerSettings | None = None,
        pool_size: int = 8,
    ) -> None:
        """``url`` None: the Redis :func:`~taskqueue.discovery.find_redis` names (the
        environment's, a ``taskqueue run``'s in ``./data``, else 127.0.0.1:6379)."""
        if url is None:
            found = find_redis()
            assert found is not None  # the default is allowed
            url = found.url
        redis = url if isinstance(url, Redis) else Redis.from_url(url, pool_size=pool_size)
        self.broker = Broker(redis, settings)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        url: str | None = None,
        pool_size: int | None = None,
        connect_attempts: int = 3,
    ) -> Client:
        """A client with the daemon's Redis (found as the daemon finds it: ``url``, the
        environment, redis.url, an advertised embedded Redis, the default), credentials,
        timeout, namespace and task defaults, so what it submits is what the daemon's API would
        have written."""
        redis = config.redis
        address = redis_address(config, url)
        connection = Redis(
            address,
            pool_size=pool_size or redis.pool_size,
            connect_timeout=redis.connect_timeout,
            connect_attempts=connect_attempts,
        )
        return cls(connection, settings=BrokerSettings.from_config(config))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.broker.redis.aclose()

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        strict: bool = False,
        **options: Unpack[SubmitOptions],
    ) -> Submitted:
        """Submit one task; ``options`` are the other fields of a :class:`~taskqueue.Submission`
        (see :class:`~taskqueue.models.SubmitOptions`): its priority, retries, run-time limit
        (``timeout``: the task's, not this call's), a delay or a start time, an idempotency key.

        The queue policy in Redis applies, as to every submitter: unset ``priority``,
        ``max_retries`` and ``timeout`` take the type's policy, else the global one (the
        client's settings only where Redis holds none).

        Raises :class:`~taskqueue.InvalidTaskError` (naming the field) before anything is
        written, :class:`~taskqueue.QueueFullError` over the type's ``max_queue_depth``, and
        :class:`~taskqueue.UnservedTypeError` for a type no live worker serves when ``strict``
        or the policy's ``refuse_unserved`` (else the result's ``warnings`` say so).
        """
        submission = Submission(type=type, payload=payload, **options)
        with tracing.sending((submission,), None) as traced:
            return await self.broker.enqueue(traced[0], strict=strict)

    async def submit_many(
        self, submissions: Iterable[Submission], *, strict: bool = False
    ) -> list[Submitted]:
        """Submit a batch atomically, in one round trip: all are written, or none."""
        with tracing.sending(list(submissions), None) as traced:
            return await self.broker.enqueue_many(traced, strict=strict)

    async def served_types(self) -> frozenset[str]:
        """The task types some live worker serves."""
        return await self.broker.served_types()

    # -- policy ------------------------------------------------------------------------------

    async def policy(self) -> PolicyView:
        """The queue policy: both layers (live, config) and what each type gets."""
        return await self.broker.policy()

    async def set_policy(self, task_type: str | None = None, **settings: Any) -> None:
        """Set policy settings live (``task_type`` None: every type), e.g.
        ``await set_policy("mail.send", max_queue_depth=100)``; the next submission obeys."""
        await self.broker.set_policy(validated(settings, Policy), task_type)

    async def unset_policy(self, *names: str, task_type: str | None = None) -> None:
        """Unset live policy settings: the config's (or the default) applies again."""
        await self.broker.unset_policy(names, task_type)

    # -- schedules ---------------------------------------------------------------------------

    async def put_schedule(
        self, spec: ScheduleSpec | Mapping[str, Any], *, create_only: bool = False
    ) -> Schedule:
        """Create or replace a schedule (``spec`` a definition, or the data of one as the
        config file's ``[[schedules]]`` hold it); with ``create_only``, a taken name raises
        :class:`~taskqueue.ConflictingStateError`. A replaced one keeps its state."""
        checked = spec if isinstance(spec, ScheduleSpec) else schedule_spec(spec)
        await self.broker.put_schedule(checked, create_only=create_only)
        return await self.broker.schedule(checked.name)

    async def schedule(self, name: str) -> Schedule:
        """A schedule; :class:`~taskqueue.ScheduleNotFoundError` if there is none."""
        return await self.broker.schedule(name)

    async def schedules(
        self, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Schedule]:
        """One page of the schedules, by name."""
        return await self.broker.schedules(cursor=cursor, limit=limit)

    async def pause_schedule(self, name: str) -> Schedule:
        await self.broker.pause_schedule(name)
        return await self.broker.schedule(name)

    async def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next tick after now."""
        await self.broker.pause_schedule(name, paused=False)
        return await self.broker.schedule(name)

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule (the tasks it submitted stay)."""
        await self.broker.delete_schedule(name)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """The task as stored now; :class:`~taskqueue.TaskNotFoundError` if there is none."""
        return await self.broker.get(task_id)

    async def workflow(self, task_id: str) -> Workflow:
        """Every task linked to ``task_id`` through dependencies, read at one moment."""
        return await self.broker.workflow(task_id)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        """Several tasks in one round trip, None where a task does not exist."""
        return await self.broker.get_many(task_ids)

    async def wait(self, task_id: str, *, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """Wait until the task ends (succeeded, dead, cancelled or expired) and return it.

        Woken by the task's own state change on the events channel, not by polling. It
        subscribes first and reads the task second, so an end that falls in between is not
        missed. Raises :class:`TimeoutError` after ``timeout`` seconds and
        :class:`~taskqueue.TaskNotFoundError` for an unknown id.
        """
        with trio.move_on_after(math.inf if timeout is None else timeout):
            async with self.events() as events:
                task = await self.broker.get(task_id)
                if task.state.is_terminal:
                    return task
                async for event in events:
                    if event.task_id == task_id and event.is_end:
                        return await self.broker.get(task_id)
        raise TimeoutError(f"task {task_id} did not end within {timeout}s")

    @asynccontextmanager
    async def events(self) -> AsyncIterator[EventStream]:
        """Every task state change in the namespace from now on, until the block ends.

        The subscription is confirmed before the block starts, so nothing published after
        ``async with`` is missed. Pub/sub delivers at most once: a connection lost to Redis
        ends the iteration with :class:`~taskqueue.redis.RedisConnectionError`.
        """
        channels = (keys.events_channel for keys in self.broker.partitions)
        async with self.broker.redis.subscribe(*channels) as subscription:
            yield EventStream(subscription)

    async def list_tasks(
        self,
        state: TaskState | str,
        *,
        task_type: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[Task]:
        """One page of the tasks in ``state``; pass ``page.next_cursor`` back for the next."""
        return await self.broker.list_tasks(
            TaskState(state), task_type=task_type, limit=limit, cursor=cursor
        )

    async def stats(self) -> QueueStats:
        """Queue depths and lifetime totals (O(1) on Redis: kept as counters)."""
        return await self.broker.stats()

    async def queue_report(self) -> QueueReport:
        """The counts, the served task types and the policy, in one round trip."""
        return await self.broker.queue_report()

    async def workers(self) -> list[WorkerInfo]:
        """The registered workers, most recent heartbeat first."""
        return await self.broker.workers()

    # -- steering ----------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task: ``"cancelled"`` if it was waiting, ``"requested"`` if it runs (its
        worker stops it, and it ends cancelled). Raises
        :class:`~taskqueue.ConflictingStateError` for a task that has already ended."""
        return await self.broker.cancel(task_id)

    async def cancel_all(
        self,
        task_type: str,
        *,
        states: Iterable[TaskState | str] | None = None,
        include_active: bool = False,
    ) -> BulkCancellation:
        """Cancel every pending and scheduled task of ``task_type`` (or only those in
        ``states``); with ``include_active``, ask the workers of its running ones to stop them.
        Runs in steps of a thousand tasks, so Redis serves others in between."""
        chosen = BULK_CANCEL_STATES if states is None else [TaskState(s) for s in states]
        return await self.broker.cancel_all(task_type, states=chosen, include_active=include_active)

    async def purge(self, state: TaskState | str, task_type: str | None = None) -> int:
        """Delete every finished task in ``state`` (succeeded, cancelled, expired or dead; of
        ``task_type``, if given) for good; how many were."""
        return await self.broker.purge(TaskState(state), task_type)

    # -- the dead-letter queue ---------------------------------------------------------------

    async def dead_letters(
        self, *, task_type: str | None = None, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Task]:
        """One page of the dead-letter queue, newest death first."""
        return await self.broker.list_tasks(
            TaskState.DEAD, task_type=task_type, limit=limit, cursor=cursor
        )

    async def requeue(self, task_id: str) -> None:
        """Give a dead task a fresh set of attempts and queue it again.

        Raises :class:`~taskqueue.ConflictingStateError` if it is not dead.
        """
        await self.broker.requeue_dead(task_id)

    async def requeue_all(self, task_type: str | None = None) -> int:
        """Requeue every dead task (of ``task_type``, if given); how many were."""
        return await self.broker.requeue_all_dead(task_type)

    async def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead task (of ``task_type``, if given) for good; how many were."""
        return await self.broker.purge_dead(task_type)
