"""The synchronous client: submit, inspect, wait for and steer tasks from code that is not async
(a Django view, a script, a thread), on redis-py.

It runs the very operations the trio broker runs (:mod:`taskqueue.broker.operations`: the same
validation, key names and Lua scripts), only with a blocking redis-py connection underneath, so
a task it submits is stored exactly as one submitted through the API::

    with taskqueue.SyncClient("redis://localhost:6379/0") as client:
        submitted = client.submit("http.request", {"url": "https://example.com/hook"})
        task = client.wait(submitted.id, timeout=30)

One client may be shared by threads: redis-py lends each command a connection from its pool.
Errors are taskqueue's own (:class:`~taskqueue.redis.RedisConnectionError` for an unreachable
Redis, as from the trio client), not redis-py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from taskqueue import tracing
from taskqueue.broker import (
    BrokerSettings,
    BulkCancellation,
    CancelOutcome,
    Page,
    PolicyView,
    Submission,
    Submitted,
    routing,
)
from taskqueue.broker import operations as ops
from taskqueue.broker import schedule_operations as schedule_ops
from taskqueue.broker.codec import events_from_message
from taskqueue.broker.keys import Keys
from taskqueue.broker.model import BULK_CANCEL_STATES, wall_clock_ms
from taskqueue.broker.operations import Call, Operation, Parallel, Pipeline, RunScript, Step
from taskqueue.broker.partitions import Placer, partition_keys
from taskqueue.discovery import find_redis, redis_address
from taskqueue.models import (
    DEFAULT_PAGE,
    Policy,
    QueueStats,
    SubmitOptions,
    Task,
    TaskState,
    WorkerInfo,
    Workflow,
    validated,
)
from taskqueue.redis import (
    AuthenticationError,
    NoScriptError,
    RedisAddress,
    RedisConnectionError,
    RedisError,
    ResponseError,
)
from taskqueue.schedules import Schedule, ScheduleSpec, schedule_spec

if TYPE_CHECKING:
    from taskqueue.config import Config

T = TypeVar("T")


def redis_py_client(
    address: RedisAddress, *, connect_timeout: float = 5.0
) -> redis.Redis | redis.RedisCluster:
    """A redis-py client of ``address`` that returns replies as Redis sent them (strings,
    integers, flat lists), as the trio client does, so one operation reads both the same."""
    options: dict[str, Any] = {
        "db": address.db,
        "username": address.username,
        "password": address.password,
        "decode_responses": True,
        "socket_connect_timeout": connect_timeout,
        "protocol": 2,  # RESP2, as the trio client speaks: RESP3 would make maps of hashes
        # Three attempts with jittered backoff, as the trio client makes: redis-py's default
        # (ten, up to a second apart) leaves a caller waiting seconds on an unreachable Redis.
        "retry": Retry(EqualJitterBackoff(cap=0.5, base=0.05), retries=2),
    }
    if address.cluster:
        return _raw_cluster_client(address, options)
    if address.sentinels:
        # redis-py's Sentinel client asks the sentinels again after a failover.
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(address.sentinels), socket_connect_timeout=connect_timeout
        )
        primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            address.service or "", **options
        )
        client = primary
    elif address.path:
        client = redis.Redis(unix_socket_path=address.path, **options)
    else:
        client = redis.Redis(
            host=address.host,
            port=address.port,
            ssl=address.tls,
            ssl_ca_certs=address.ssl_ca_certs,
            ssl_cert_reqs=address.ssl_cert_reqs,
            ssl_certfile=address.ssl_certfile,
            ssl_keyfile=address.ssl_keyfile,
            **options,
        )
    # redis-py reshapes some replies (HGETALL into a dict, ZSCORE into a float); the
    # operations expect them raw. This client is private to one SyncClient.
    client.response_callbacks.clear()
    return client


def _raw_cluster_client(address: RedisAddress, options: dict[str, Any]) -> redis.RedisCluster:
    """redis-py's cluster client of ``address``'s seed nodes, with raw replies as above.

    Its node clients are made as it learns the slot map (after a resharding or a failover too),
    each with redis-py's reply reshaping: every one is made raw as it is made.
    """
    del options["db"]  # a cluster has database 0 only
    try:
        # It learns the slot map at once, so an unreachable cluster fails here, not later.
        client = redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in address.cluster],  # type: ignore[no-untyped-call]
            ssl=address.tls,
            ssl_ca_certs=address.ssl_ca_certs,
            ssl_cert_reqs=address.ssl_cert_reqs,
            ssl_certfile=address.ssl_certfile,
            ssl_keyfile=address.ssl_keyfile,
            **options,
        )
    except redis.exceptions.RedisClusterException as exc:
        raise RedisConnectionError(f"cannot reach the {address}: {exc}") from exc
    manager = client.nodes_manager
    make_node = manager.create_redis_node

    def make_raw_node(*args: Any, **kwargs: Any) -> redis.Redis:
        node: redis.Redis = make_node(*args, **kwargs)  # type: ignore[no-untyped-call]
        node.response_callbacks.clear()
        return node

    manager.create_redis_node = make_raw_node  # type: ignore[method-assign]
    for node in client.get_nodes():  # type: ignore[no-untyped-call]
        if node.redis_connection is not None:
            node.redis_connection.response_callbacks.clear()
    return client


class SyncClient:
    """Operations on one taskqueue namespace of one Redis, from blocking code.

    Close it (or use ``with``) to release its connections. Unset submission options and limits
    come from the queue policy in Redis, as for every submitter; ``settings`` only stand in
    where no daemon has written one.
    """

    def __init__(
        self,
        url: str | RedisAddress | None = None,
        *,
        settings: BrokerSettings | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        """``url`` None: the Redis :func:`~taskqueue.discovery.find_redis` names (the
        environment's, a ``taskqueue run``'s in ``./data``, else 127.0.0.1:6379)."""
        if url is None:
            found = find_redis()
            assert found is not None  # the default is allowed
            url = found.url
        self.address = RedisAddress.from_url(url) if isinstance(url, str) else url
        self.settings = settings or BrokerSettings()
        #: The keys of each partition of the namespace; partition 0's are its own.
        self.partitions = partition_keys(self.settings.namespace, self.settings.partitions)
        self.keys = self.partitions[0]
        self._placer = Placer(len(self.partitions))
        self.redis = redis_py_client(self.address, connect_timeout=connect_timeout)

    @classmethod
    def from_config(cls, config: Config, *, url: str | None = None) -> SyncClient:
        """A client with the daemon's Redis (found as the daemon finds it: ``url``, the
        environment, redis.url, an advertised embedded Redis, the default), credentials,
        timeout, namespace and task defaults, so what it submits is what the daemon's API would
        have written."""
        return cls(
            redis_address(config, url),
            settings=BrokerSettings.from_config(config),
            connect_timeout=config.redis.connect_timeout,
        )

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.redis.close()

    # -- submitting --------------------------------------------------------------------------

    def submit(
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

        The queue policy in Redis applies, as to every submitter: unset fields take its
        defaults. Raises :class:`~taskqueue.InvalidTaskError` (naming the field) before anything
        is written, :class:`~taskqueue.QueueFullError` over the type's ``max_queue_depth``, and
        :class:`~taskqueue.UnservedTypeError` for a type no live worker serves when ``strict``
        or the policy's ``refuse_unserved`` (else the result's ``warnings`` say so).
        """
        submission = Submission(type=type, payload=payload, **options)
        (submitted,) = self.submit_many([submission], strict=strict)
        return submitted

    def submit_many(
        self, submissions: Iterable[Submission], *, strict: bool = False
    ) -> list[Submitted]:
        """Submit a batch atomically, in one round trip: all are written, or none."""
        with tracing.sending(list(submissions), None) as batch:
            return self._run(
                routing.enqueue_many(
                    self.settings,
                    self.partitions,
                    self._placer,
                    batch,
                    wall_clock_ms(),
                    strict=strict,
                )
            )

    def served_types(self) -> frozenset[str]:
        """The task types some live worker serves."""
        return self._run(ops.served_types(self.keys, wall_clock_ms()))

    # -- policy ------------------------------------------------------------------------------

    def policy(self) -> PolicyView:
        """The queue policy: both layers (live, config) and what each type gets."""
        return self._run(ops.policy(self.settings, self.keys))

    def set_policy(self, task_type: str | None = None, **settings: Any) -> None:
        """Set policy settings live (``task_type`` None: every type), e.g.
        ``set_policy("mail.send", max_queue_depth=100)``; the next submission obeys them."""
        policy = validated(settings, Policy)
        self._run(
            routing.each(
                self.partitions,
                lambda keys: ops.set_policy(keys, "live", task_type, policy, replace=False),
            )
        )

    def unset_policy(self, *names: str, task_type: str | None = None) -> None:
        """Unset live policy settings: the config's (or the default) applies again."""
        self._run(
            routing.each(
                self.partitions, lambda keys: ops.unset_policy(keys, "live", task_type, names)
            )
        )

    # -- reading -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        """The task as stored now; :class:`~taskqueue.TaskNotFoundError` if there is none."""
        return self._run(ops.get(self._keys_of(task_id), task_id))

    def workflow(self, task_id: str) -> Workflow:
        """Every task linked to ``task_id`` through dependencies, read at one moment."""
        return self._run(ops.workflow(self._keys_of(task_id), task_id))

    def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        """Several tasks in one round trip, None where a task does not exist."""
        return self._run(
            routing.by_task(self.partitions, task_ids, lambda task_id: task_id, ops.get_many)
        )

    def wait(self, task_id: str, *, timeout: float | None = None) -> Task:
        """Block until the task ends (succeeded, dead, cancelled or expired) and return it.

        Woken by the task's own state change on the events channel, not by polling: it
        subscribes (and waits for Redis to confirm) first and reads the task second, so an end
        that falls in between is not missed. Raises :class:`TimeoutError` after ``timeout``
        seconds and :class:`~taskqueue.TaskNotFoundError` for an unknown id.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task_id} did not end within {timeout}s")
            return left

        with self._subscription(remaining) as next_message:
            task = self.get(task_id)
            if task.state.is_terminal:
                return task
            while True:
                data = next_message(remaining())
                if data is not None and any(
                    event.task_id == task_id and event.is_end for event in events_from_message(data)
                ):
                    return self.get(task_id)

    @contextmanager
    def _subscription(
        self, remaining: Callable[[], float | None]
    ) -> Iterator[Callable[[float | None], str | None]]:
        """Subscribed to the events channel (confirmed by Redis) for the block; yields a
        function that blocks up to a timeout for the next message's data (None: none came)."""
        pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call]
        try:
            with _redis_errors():
                pubsub.subscribe(*(keys.events_channel for keys in self.partitions))
                while (message := pubsub.get_message(timeout=remaining())) is None or (
                    message["type"] != "subscribe"
                ):
                    pass

            def next_message(timeout: float | None) -> str | None:
                with _redis_errors():
                    message = pubsub.get_message(timeout=timeout)
                if message is None or message["type"] != "message":
                    return None
                return str(message["data"])

            yield next_message
        finally:
            pubsub.close()

    def list_tasks(
        self,
        state: TaskState | str,
        *,
        task_type: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[Task]:
        """One page of the tasks in ``state``; pass ``page.next_cursor`` back for the next."""
        return self._run(
            routing.paged(
                self.partitions,
                lambda keys, inner, wanted: ops.list_tasks(
                    keys, TaskState(state), task_type=task_type, limit=wanted, cursor=inner
                ),
                limit,
                cursor,
            )
        )

    def stats(self) -> QueueStats:
        """Queue depths and lifetime totals (O(1) on Redis: kept as counters)."""
        return self._run(routing.stats(self.partitions, wall_clock_ms()))

    def workers(self) -> list[WorkerInfo]:
        """The registered workers, most recent heartbeat first."""
        return self._run(ops.workers(self.keys))

    # -- steering ----------------------------------------------------------------------------

    def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task: ``"cancelled"`` if it was waiting, ``"requested"`` if it runs (its
        worker stops it, and it ends cancelled). Raises
        :class:`~taskqueue.ConflictingStateError` for a task that has already ended."""
        return self._run(ops.cancel(self._keys_of(task_id), task_id, wall_clock_ms())).outcome

    def cancel_all(
        self,
        task_type: str,
        *,
        states: Iterable[TaskState | str] | None = None,
        include_active: bool = False,
    ) -> BulkCancellation:
        """Cancel every pending and scheduled task of ``task_type`` (see
        :meth:`taskqueue.Client.cancel_all`)."""
        chosen = BULK_CANCEL_STATES if states is None else [TaskState(s) for s in states]
        return self._run(
            routing.cancel_all(
                self.partitions,
                task_type,
                wall_clock_ms,
                states=tuple(chosen),
                include_active=include_active,
            )
        )

    def purge(self, state: TaskState | str, task_type: str | None = None) -> int:
        """Delete every finished task in ``state`` (succeeded, cancelled, expired or dead; of
        ``task_type``, if given) for good; how many were."""
        chosen = TaskState(state)
        return self._run(
            routing.total(self.partitions, lambda keys: ops.purge(keys, chosen, task_type))
        )

    # -- the dead-letter queue ---------------------------------------------------------------

    def dead_letters(
        self, *, task_type: str | None = None, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Task]:
        """One page of the dead-letter queue, newest death first."""
        return self.list_tasks(TaskState.DEAD, task_type=task_type, limit=limit, cursor=cursor)

    def requeue(self, task_id: str) -> None:
        """Give a dead task a fresh set of attempts and queue it again.

        Raises :class:`~taskqueue.ConflictingStateError` if it is not dead.
        """
        self._run(ops.requeue_dead(self._keys_of(task_id), task_id, wall_clock_ms()))

    def requeue_all(self, task_type: str | None = None) -> int:
        """Requeue every dead task (of ``task_type``, if given); how many were."""
        return self._run(
            routing.total(
                self.partitions, lambda keys: ops.requeue_all_dead(keys, task_type, wall_clock_ms)
            )
        )

    def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead task (of ``task_type``, if given) for good; how many were."""
        return self._run(
            routing.total(self.partitions, lambda keys: ops.purge_dead(keys, task_type))
        )

    # -- schedules ---------------------------------------------------------------------------

    def put_schedule(
        self, spec: ScheduleSpec | Mapping[str, Any], *, create_only: bool = False
    ) -> Schedule:
        """Create or replace a schedule (see :meth:`taskqueue.Client.put_schedule`)."""
        checked = spec if isinstance(spec, ScheduleSpec) else schedule_spec(spec)
        self._run(
            schedule_ops.put_schedule(
                self.settings, self.keys, checked, wall_clock_ms(), create_only=create_only
            )
        )
        return self.schedule(checked.name)

    def schedule(self, name: str) -> Schedule:
        """A schedule; :class:`~taskqueue.ScheduleNotFoundError` if there is none."""
        return self._run(schedule_ops.schedule(self.keys, name))

    def schedules(self, *, limit: int = DEFAULT_PAGE, cursor: str | None = None) -> Page[Schedule]:
        """One page of the schedules, by name."""
        return self._run(schedule_ops.schedules(self.keys, cursor, limit))

    def pause_schedule(self, name: str) -> Schedule:
        self._run(schedule_ops.pause_schedule(self.keys, name, True, wall_clock_ms()))
        return self.schedule(name)

    def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next tick after now."""
        self._run(schedule_ops.pause_schedule(self.keys, name, False, wall_clock_ms()))
        return self.schedule(name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (the tasks it submitted stay)."""
        self._run(schedule_ops.delete_schedule(self.keys, name))

    # -- running operations ------------------------------------------------------------------

    def _keys_of(self, task_id: str) -> Keys:
        return routing.keys_of(self.partitions, task_id)

    def _run(self, operation: Operation[T]) -> T:
        """Drive an I/O-free operation on redis-py: the twin of ``Broker._run``."""
        reply: Any = None
        error: ResponseError | None = None
        try:
            while True:
                step = operation.send(reply) if error is None else operation.throw(error)
                reply, error = None, None
                try:
                    with _redis_errors():
                        reply = self._execute(step)
                except ResponseError as exc:
                    error = exc
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            operation.close()

    def _execute(self, step: Step) -> Any:
        command = self.redis.execute_command  # (redis-py leaves it untyped)
        if isinstance(step, Call):
            return command(*step.args)  # type: ignore[no-untyped-call]
        if isinstance(step, Pipeline):
            with self.redis.pipeline(transaction=False) as pipe:
                for args in step.commands:
                    pipe.execute_command(*args)  # type: ignore[no-untyped-call,unused-ignore]
                replies = pipe.execute(raise_on_error=False)
            return [
                _error_reply(r) if isinstance(r, redis.exceptions.ResponseError) else r
                for r in replies
            ]
        if isinstance(step, Parallel):  # one after another (redis-py blocks), all of them
            answers: list[Any] = []
            first: Exception | None = None
            for operation in step.operations:
                try:
                    answers.append(self._run(operation))
                except Exception as exc:
                    first = first or exc
                    answers.append(None)
            if first is not None:
                raise first
            return answers
        assert isinstance(step, RunScript)
        script, keys = step.script, step.keys
        try:
            return command("EVALSHA", script.sha, len(keys), *keys, *step.args)  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError:
            return command("EVAL", script.source, len(keys), *keys, *step.args)  # type: ignore[no-untyped-call]


def _error_reply(error: redis.exceptions.ResponseError) -> ResponseError:
    """A pipeline's error reply as the trio client gives it (redis-py drops a NOSCRIPT's code)."""
    if isinstance(error, redis.exceptions.NoScriptError):
        return NoScriptError(f"NOSCRIPT {error}")
    return ResponseError(str(error))


@contextmanager
def _redis_errors() -> Iterator[None]:
    """redis-py's errors as taskqueue's, so callers catch the same ones from either client."""
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:
        raise AuthenticationError(str(exc)) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise RedisConnectionError(str(exc)) from exc
    except redis.exceptions.ResponseError as exc:
        raise ResponseError(str(exc)) from exc
    except redis.exceptions.RedisError as exc:
        raise RedisError(str(exc)) from exc
