"""The REST client (:class:`taskqueue.rest_client.RestClient`) against a real daemon: it returns
what :class:`taskqueue.Client` returns for the same data, and turns the API's problems into
taskqueue's own exceptions. Both satisfy :class:`taskqueue.operating.Operator` (mypy checks the
assignments below), which is what lets the CLI's commands be written once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
from api_helpers import ADMIN_TOKEN, READ_TOKEN, ApiServer, api_server
from fault_proxy import FaultProxy

from taskqueue import Client
from taskqueue.api.auth import hash_token
from taskqueue.daemon.runtime import Mode
from taskqueue.errors import ConflictingStateError, InvalidTaskError, TaskNotFoundError
from taskqueue.models import Submission, TaskState
from taskqueue.operating import Operator
from taskqueue.rest_client import ApiTokenError, ApiUnreachableError, RestClient
from taskqueue.wire import policy_json, report_json, task_json, worker_json

UNKNOWN_ID = "01890a5d-ac96-774b-bcce-b302099a8057"


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[ApiServer]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{hash_token(READ_TOKEN)} read\n")
    async with api_server(
        redis_url,
        mode=Mode.RUN,
        server__tokens=(ADMIN_TOKEN,),
        server__token_file=str(tokens),
        redis__namespace=f"rest-client-{tmp_path.name}",
    ) as server:
        yield server


def both(server: ApiServer, token: str = ADMIN_TOKEN) -> tuple[Operator, Operator]:
    """A REST client and a Redis client of the same namespace, typed as the interface."""
    rest: Operator = RestClient(server.url, token=token)
    redis: Operator = Client(server.broker.redis, settings=server.broker.settings)
    return rest, redis


async def test_the_rest_client_reads_what_the_redis_client_reads(server: ApiServer) -> None:
    rest, redis = both(server)
    async with rest:
        done = await rest.wait(
            (await rest.submit_many([Submission(type="echo", payload=[1])]))[0].id
        )
        assert done.state is TaskState.SUCCEEDED
        assert done.result == [1]
        assert task_json(await rest.get(done.id)) == task_json(await redis.get(done.id))
        assert report_json(await rest.queue_report()) == report_json(await redis.queue_report())
        # What a heartbeat does not change (one may land between the two reads).
        fixed = ("id", "host", "pid", "task_types", "concurrency", "started_ms", "instance")
        assert [{k: worker_json(w)[k] for k in fixed} for w in await rest.workers()] == [
            {k: worker_json(w)[k] for k in fixed} for w in await redis.workers()
        ]
        assert "echo" in await rest.served_types()
        assert (await rest.stats()).by_state[TaskState.SUCCEEDED] == 1
        page = await rest.list_tasks("succeeded", task_type="echo", limit=1)
        assert [t.id for t in page.items] == [done.id]
        rest_of_it = await rest.list_tasks("succeeded", task_type="echo", cursor=page.next_cursor)
        assert rest_of_it.items == []


async def test_policy_through_the_rest_client(server: ApiServer) -> None:
    rest, redis = both(server)
    async with rest:
        await rest.set_policy("echo", max_queue_depth=5)
        await rest.set_policy("echo", max_retries=1)  # the first setting is kept
        view = await rest.policy()
        assert view.layer("live", "echo").max_queue_depth == 5
        assert view.layer("live", "echo").max_retries == 1
        assert policy_json(view) == policy_json(await redis.policy())
        assert view.effective("echo") == (await redis.policy()).effective("echo")
        await rest.unset_policy("max_queue_depth", task_type="echo")
        assert (await redis.policy()).layer("live", "echo").max_queue_depth is None
        with pytest.raises(InvalidTaskError, match="unknown policy setting 'depth'"):
            await rest.unset_policy("depth")


async def test_the_apis_problems_are_taskqueues_exceptions(server: ApiServer) -> None:
    rest, _ = both(server)
    async with rest:
        with pytest.raises(TaskNotFoundError, match=UNKNOWN_ID):
            await rest.get(UNKNOWN_ID)
        with pytest.raises(TaskNotFoundError):
            await rest.cancel(UNKNOWN_ID)
        done = await rest.wait((await rest.submit_many([Submission(type="noop")]))[0].id)
        with pytest.raises(ConflictingStateError, match="already ended"):
            await rest.cancel(done.id)
        with pytest.raises(ConflictingStateError):
            await rest.requeue(done.id)
        with pytest.raises(InvalidTaskError) as invalid:
            await rest.submit_many([Submission(type="echo", max_retries=-1)])
        assert invalid.value.field == "tasks.0.max_retries"
        with pytest.raises(TimeoutError):
            sleeper = await rest.submit_many([Submission(type="sleep", payload={"seconds": 5})])
            await rest.wait(sleeper[0].id, timeout=0.2)
        assert await rest.cancel(sleeper[0].id) in ("cancelled", "requested")


@pytest.mark.parametrize(
    ("token", "problem"), [(READ_TOKEN, "read-only"), ("wrong", "unknown"), ("", "missing")]
)
async def test_token_problems(server: ApiServer, token: str, problem: str) -> None:
    async with RestClient(server.url, token=token or None) as rest:
        with pytest.raises(ApiTokenError) as refused:
            await rest.purge_dead()
        assert refused.value.problem == problem


async def test_an_unreachable_api(server: ApiServer) -> None:
    async with RestClient("http://127.0.0.1:1", token=ADMIN_TOKEN, timeout=2) as rest:
        with pytest.raises(ApiUnreachableError, match="cannot be reached"):
            await rest.workers()


async def test_an_api_whose_redis_is_gone_is_not_ready(redis_url: str) -> None:
    """The daemon's Redis behind a proxy that goes away: the API answers 503, which the client
    reports as unreachable (the CLI's exit 4), saying why."""
    port = urlsplit(redis_url).port
    assert port is not None
    refused = False
    stop_proxy = trio.CancelScope()

    async def proxying(task_status: trio.TaskStatus[FaultProxy]) -> None:
        with stop_proxy:
            await FaultProxy(port).serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        proxy: FaultProxy = await nursery.start(proxying)
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with (
            api_server(url, server__tokens=(ADMIN_TOKEN,)) as server,
            RestClient(server.url, token=ADMIN_TOKEN) as rest,
        ):
            await rest.workers()
            stop_proxy.cancel()  # no more connections to Redis...
            proxy.reset()  # ...and those open are gone
            with pytest.raises(ApiUnreachableError, match="is not ready: Redis is unreachable"):
                await rest.workers()
            refused = True
    assert refused
