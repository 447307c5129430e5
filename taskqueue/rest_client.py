"""The REST client: the same operations as :class:`taskqueue.Client`, over the API with a bearer
token, for operators and programs that may reach the API but not Redis::

    async with RestClient("https://queue.example.com:9090", token=token) as client:
        report = await client.queue_report()
        await client.requeue_all("mail.send")

It satisfies :class:`taskqueue.operating.Operator`, so the ``taskqueue`` command's tools run
over it unchanged (``taskqueue --api URL``). Replies are the documents of
:mod:`taskqueue.wire`, read back into the models the Redis client returns; the API's problem
details become taskqueue's own exceptions (a 404 is :class:`~taskqueue.TaskNotFoundError`, a
409 :class:`~taskqueue.ConflictingStateError`...). Producers inside the network should still
use :class:`taskqueue.Client`: one Redis round trip per submission, no HTTP in between.

It runs under trio (httpx picks trio's backend by itself); the CLI drives it with ``trio.run``.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import msgspec
import trio

from taskqueue.api.rest.routing import API_PREFIX
from taskqueue.broker import (
    BulkCancellation,
    CancelOutcome,
    Page,
    PolicyView,
    QueueReport,
    Submission,
    Submitted,
)
from taskqueue.broker.policy import REDIS_NAMES, merged
from taskqueue.errors import (
    ConfigError,
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    QueueFullError,
    ScheduleNotFoundError,
    TaskNotFoundError,
    TaskQueueError,
    TooManySchedulesError,
    TooManyTypesError,
    UnservedTypeError,
)
from taskqueue.models import (
    DEFAULT_PAGE,
    MAX_BATCH,
    Policy,
    QueueStats,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
    Workflow,
    validated,
)
from taskqueue.schedules import Schedule, ScheduleSpec, schedule_spec
from taskqueue.wire import (
    PolicyDocument,
    TasksCancelled,
    TasksPurged,
    cancellation_from_document,
    policy_view,
    report_from_document,
)
from taskqueue.wire import QueueStats as QueuesDocument

__all__ = ["ApiTokenError", "ApiUnreachableError", "RestClient", "RestError"]

T = TypeVar("T")

#: What a token check can have said: no token was sent, the server does not know it, or it
#: may only read and the request writes.
TokenProblem = Literal["missing", "unknown", "read-only"]


class RestError(TaskQueueError):
    """The API answered something taskqueue has no exception of its own for."""


class ApiUnreachableError(RestError):
    """The API cannot be reached (refused, timed out, TLS refused), or it is not ready (503:
    its Redis is down, it is starting or draining). ``untrusted``: the server's certificate
    is signed by no CA this client trusts."""

    def __init__(self, message: str, *, untrusted: bool = False) -> None:
        super().__init__(message)
        self.untrusted = untrusted


class ApiTokenError(RestError):
    """The API refused the bearer token: ``problem`` says how (401 or 403)."""

    def __init__(self, message: str, problem: TokenProblem) -> None:
        super().__init__(message)
        self.problem = problem


class _Page(msgspec.Struct):
    tasks: list[Task]
    next_cursor: str | None = None


class _Workers(msgspec.Struct):
    workers: list[WorkerInfo]


class _Batch(msgspec.Struct):
    tasks: list[Submitted]


class _Requeued(msgspec.Struct):
    requeued: int


class _Purged(msgspec.Struct):
    purged: int


class _Schedules(msgspec.Struct):
    schedules: list[Schedule]
    next_cursor: str | None


class _Problem(msgspec.Struct):
    title: str = ""
    detail: str = ""
    field: str | None = None


_encode = msgspec.json.Encoder().encode


def _segment(value: str) -> str:
    """``value`` as one path segment (a task id or type cannot reach another route)."""
    return quote(value, safe="")


class RestClient:
    """Operations on the namespace a taskqueue API serves, over HTTP(S) with a bearer token.

    ``url`` is the API's base (``https://host:9090``); ``cafile`` the CA bundle that signs
    its certificate (default: the system's store); ``timeout`` bounds the connection and each
    reply. Close it with :meth:`aclose`, or use ``async with``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        cafile: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"API URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        if cafile is not None and parts.scheme != "https":
            raise ConfigError(f"a CA file is for https:// URLs; {url!r} is not one")
        self.url = url.rstrip("/")
        self.token = token
        verify: ssl.SSLContext | bool = True
        if parts.scheme == "https":
            try:
                verify = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {cafile!r}: {exc}") from None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url + API_PREFIX,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the wire ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        reply: type[T],
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        task_id: str | None = None,
        schedule: str | None = None,
    ) -> tuple[int, T]:
        """Send one request; its status and its body as ``reply``, or the error it means."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = None if body is None else _encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self._http.request(
                method, path, params=query, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not response.is_success:
            raise self._error(response, task_id, schedule)
        if response.status_code == 204:
            return 204, msgspec.json.decode(b"null", type=reply)
        try:
            return response.status_code, msgspec.json.decode(response.content, type=reply)
        except msgspec.DecodeError as exc:
            raise RestError(
                f"{method} {self.url}{API_PREFIX}{path} answered {response.status_code} with "
                f"a body taskqueue cannot read ({exc}): is this a taskqueue API?"
            ) from None

    def _unreachable(self, exc: httpx.TransportError) -> ApiUnreachableError:
        """The error of a request that got no reply, saying why in the words of its cause
        (httpx's own message can be empty: the TLS or socket error sits beneath it)."""
        cause: BaseException | None = exc
        while cause is not None and not str(cause):
            cause = cause.__cause__ or cause.__context__
        why = str(cause) if cause is not None else type(exc).__name__
        untrusted = isinstance(cause, ssl.SSLCertVerificationError)
        if untrusted:
            why += " (the server's certificate is not signed by a trusted CA)"
        message = f"the API at {self.url} cannot be reached: {why}"
        return ApiUnreachableError(message, untrusted=untrusted)

    def _error(
        self, response: httpx.Response, task_id: str | None, schedule: str | None = None
    ) -> Exception:
        """The exception a non-2xx reply means (the problem details' wording kept)."""
        status = response.status_code
        try:
            problem = msgspec.json.decode(response.content, type=_Problem)
        except msgspec.DecodeError:
            problem = _Problem(response.reason_phrase, response.text.strip()[:200])
        detail = problem.detail or problem.title or response.reason_phrase
        if status == 401:
            if not self.token:
                return ApiTokenError(f"the API at {self.url} wants a bearer token", "missing")
            return ApiTokenError(f"the API at {self.url} refused the token: {detail}", "unknown")
        if status == 403:
            return ApiTokenError(f"the API at {self.url} refused: {detail}", "read-only")
        if status == 404 and task_id is not None:
            return TaskNotFoundError(task_id)
        if status == 404 and schedule is not None:
            return ScheduleNotFoundError(schedule)
        if status == 409:
            return ConflictingStateError(detail)
        if status == 413:
            return PayloadTooLargeError(detail, field=problem.field)
        if status == 422 and problem.title == "Unserved task type":
            return UnservedTypeError(detail, field=problem.field)
        if status == 422:
            return InvalidTaskError(detail, field=problem.field)
        if status == 429 and problem.title == "Too many task types":
            return TooManyTypesError(detail)
        if status == 429 and problem.title == "Too many schedules":
            return TooManySchedulesError(detail)
        if status == 429:
            return QueueFullError(detail)
        if status == 503:
            return ApiUnreachableError(f"the API at {self.url} is not ready: {detail}")
        return RestError(f"the API at {self.url} answered {status} {problem.title}: {detail}")

    # -- submitting --------------------------------------------------------------------------

    async def submit_many(
        self, submissions: Iterable[Submission], *, strict: bool = False
    ) -> list[Submitted]:
        """Submit a batch: atomically up to the API's batch limit, in order beyond it.

        ``strict`` asks the API which types live workers serve first (the API itself applies
        only the policy's ``refuse_unserved``), so it refuses what :class:`~taskqueue.Client`
        would, give or take a worker starting or stopping in between.
        """
        batch = list(submissions)
        if strict:
            served = await self.served_types()
            for index, submission in enumerate(batch):
                if submission.type not in served:
                    raise UnservedTypeError(
                        f"no live worker serves task type {submission.type!r}, and submissions "
                        "of unserved types are refused (strict)",
                        field="type" if len(batch) == 1 else f"{index}.type",
                        task_type=submission.type,
                    )
        done: list[Submitted] = []
        for start in range(0, len(batch), MAX_BATCH):
            part = batch[start : start + MAX_BATCH]
            _, reply = await self._call("POST", "/tasks/batch", _Batch, body={"tasks": part})
            done += reply.tasks
        return done

    async def submit(self, type: str, payload: Any = None, **options: Any) -> Submitted:
        """Submit one task (``options``: the other fields of a :class:`~taskqueue.Submission`)."""
        strict = bool(options.pop("strict", False))
        (submitted,) = await self.submit_many(
            [Submission(type=type, payload=payload, **options)], strict=strict
        )
        return submitted

    async def served_types(self) -> frozenset[str]:
        """The task types some live worker serves."""
        return (await self.queue_report()).served

    # -- reading -----------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """The task as stored now; :class:`~taskqueue.TaskNotFoundError` if there is none."""
        _, task = await self._call("GET", f"/tasks/{_segment(task_id)}", Task, task_id=task_id)
        return task

    async def workflow(self, task_id: str) -> Workflow:
        """Every task linked to ``task_id`` through dependencies, read at one moment."""
        path = f"/tasks/{_segment(task_id)}/workflow"
        _, flow = await self._call("GET", path, Workflow, task_id=task_id)
        return flow

    async def wait(self, task_id: str, *, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """Wait until the task ends and return it, woken by its events on the API's event
        stream (watched before the task is read, so an end in between is not missed). A
        stream the server ends (a restart) is opened again. :class:`TimeoutError` after
        ``timeout`` seconds."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while True:
                task = await self._watch_until_end(task_id)
                if task is not None:
                    return task
                await trio.sleep(0.5)  # the stream ended: the server restarts; watch again
        raise TimeoutError(f"task {task_id} did not end within {timeout}s")

    async def _watch_until_end(self, task_id: str) -> Task | None:
        """The task once it has ended, or None if the event stream ends first."""
        # No read timeout: an idle stream carries a keep-alive comment every 15 s, no more.
        timeout = httpx.Timeout(self._timeout, read=None)
        params = {"task_id": task_id}
        try:
            async with self._http.stream(
                "GET", "/events", params=params, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._error(response, task_id)
                lines = response.aiter_lines()
                async for line in lines:
                    if line.startswith(": watching"):
                        break
                task = await self.get(task_id)
                if task.state.is_terminal:
                    return task
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    event = msgspec.json.decode(line[5:].strip(), type=TaskEvent)
                    if event.task_id == task_id and event.is_end:
                        return await self.get(task_id)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        return None

    async def list_tasks(
        self,
        state: TaskState | str,
        *,
        task_type: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[Task]:
        """One page of the tasks in ``state``; pass ``page.next_cursor`` back for the next."""
        params = {"state": TaskState(state).value, "type": task_type, "limit": limit}
        _, page = await self._call("GET", "/tasks", _Page, params={**params, "cursor": cursor})
        return Page(page.tasks, page.next_cursor)

    async def stats(self) -> QueueStats:
        """Queue depths and lifetime totals."""
        return (await self.queue_report()).stats

    async def queue_report(self) -> QueueReport:
        """The counts, the served task types and the policy, in one request."""
        _, document = await self._call("GET", "/queues", QueuesDocument)
        return report_from_document(document)

    async def workers(self) -> list[WorkerInfo]:
        """The live workers, most recent heartbeat first."""
        _, reply = await self._call("GET", "/workers", _Workers)
        return reply.workers

    # -- steering ----------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task: ``"cancelled"`` if it was waiting, ``"requested"`` if it runs."""
        path = f"/tasks/{_segment(task_id)}/cancel"
        status, _ = await self._call("POST", path, Task, task_id=task_id)
        return "cancelled" if status == 200 else "requested"

    async def cancel_all(
        self,
        task_type: str,
        *,
        states: Iterable[TaskState | str] | None = None,
        include_active: bool = False,
    ) -> BulkCancellation:
        """Cancel every pending and scheduled task of ``task_type`` (or only those in
        ``states``); with ``include_active``, ask the workers of its running ones to stop them."""
        body: dict[str, Any] = {"type": task_type, "include_active": include_active}
        if states is not None:
            body["states"] = [TaskState(s).value for s in states]
        _, reply = await self._call("POST", "/tasks/cancel", TasksCancelled, body=body)
        return cancellation_from_document(reply)

    async def purge(self, state: TaskState | str, task_type: str | None = None) -> int:
        """Delete every finished task in ``state`` (of ``task_type``, if given); how many."""
        params = {"state": TaskState(state).value, "type": task_type}
        _, reply = await self._call("DELETE", "/tasks", TasksPurged, params=params)
        return reply.purged

    # -- the dead-letter queue ---------------------------------------------------------------

    async def dead_letters(
        self, *, task_type: str | None = None, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Task]:
        """One page of the dead-letter queue, newest death first."""
        params = {"type": task_type, "limit": limit, "cursor": cursor}
        _, page = await self._call("GET", "/dead-letters", _Page, params=params)
        return Page(page.tasks, page.next_cursor)

    async def requeue(self, task_id: str) -> None:
        """Give a dead task a fresh set of attempts and queue it again."""
        path = f"/dead-letters/{_segment(task_id)}/requeue"
        await self._call("POST", path, Task, task_id=task_id)

    async def requeue_all(self, task_type: str | None = None) -> int:
        """Requeue every dead task (of ``task_type``, if given); how many were."""
        params = {"type": task_type}
        _, reply = await self._call("POST", "/dead-letters/requeue", _Requeued, params=params)
        return reply.requeued

    async def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead task (of ``task_type``, if given) for good; how many were."""
        params = {"type": task_type}
        _, reply = await self._call("DELETE", "/dead-letters", _Purged, params=params)
        return reply.purged

    # -- schedules ---------------------------------------------------------------------------

    async def put_schedule(
        self, spec: ScheduleSpec | Mapping[str, Any], *, create_only: bool = False
    ) -> Schedule:
        """Create or replace a schedule (see :meth:`taskqueue.Client.put_schedule`)."""
        checked = spec if isinstance(spec, ScheduleSpec) else schedule_spec(spec)
        if create_only:
            _, schedule = await self._call("POST", "/schedules", Schedule, body=checked)
        else:
            path = f"/schedules/{_segment(checked.name)}"
            _, schedule = await self._call("PUT", path, Schedule, body=checked)
        return schedule

    async def schedule(self, name: str) -> Schedule:
        """A schedule; :class:`~taskqueue.ScheduleNotFoundError` if there is none."""
        path = f"/schedules/{_segment(name)}"
        return (await self._call("GET", path, Schedule, schedule=name))[1]

    async def schedules(
        self, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Schedule]:
        """One page of the schedules, by name."""
        params = {"limit": limit, "cursor": cursor}
        _, page = await self._call("GET", "/schedules", _Schedules, params=params)
        return Page(page.schedules, page.next_cursor)

    async def pause_schedule(self, name: str) -> Schedule:
        path = f"/schedules/{_segment(name)}/pause"
        return (await self._call("POST", path, Schedule, schedule=name))[1]

    async def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next tick after now."""
        path = f"/schedules/{_segment(name)}/resume"
        return (await self._call("POST", path, Schedule, schedule=name))[1]

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule (the tasks it submitted stay)."""
        path = f"/schedules/{_segment(name)}"
        await self._call("DELETE", path, msgspec.Raw, schedule=name)

    # -- policy ------------------------------------------------------------------------------

    async def policy(self) -> PolicyView:
        """The queue policy: both layers (live, config) and what each type gets."""
        _, document = await self._call("GET", "/policy", PolicyDocument)
        return policy_view(document)

    async def set_policy(self, task_type: str | None = None, **settings: Any) -> None:
        """Set policy settings live, the others of the scope's live layer kept (the API
        replaces a scope's layer as a whole: it is read, changed and written back)."""
        new = validated(settings, Policy)
        live = (await self.policy()).layer("live", task_type)
        await self._put_live(task_type, merged(new, live))

    async def unset_policy(self, *names: str, task_type: str | None = None) -> None:
        """Unset live policy settings: the config's (or the default) applies again."""
        for name in names:
            if name not in REDIS_NAMES:
                raise InvalidTaskError(
                    f"unknown policy setting {name!r}; expected one of {', '.join(REDIS_NAMES)}",
                    field=name,
                )
        live = (await self.policy()).layer("live", task_type)
        kept = {f: v for f in REDIS_NAMES if f not in names and (v := getattr(live, f)) is not None}
        await self._put_live(task_type, Policy(**kept))

    async def _put_live(self, task_type: str | None, live: Policy) -> None:
        path = "/policy" if task_type is None else f"/policy/{_segment(task_type)}"
        await self._call("PUT", path, msgspec.Raw, body=live)
