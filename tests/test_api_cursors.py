"""A cursor is only ever one the server issued: anything else (other scripts' digits, signs,
spaces, underscores, numbers past 64 bits, a queue that cannot exist) is a 422 naming
``cursor`` over REST and INVALID_ARGUMENT over gRPC, never a 500 (issue 15, item 3: ``¹``
passed ``str.isdigit()`` and then failed ``int()``)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
from api_helpers import ADMIN_TOKEN, ApiServer, api_server, problem
from broker_helpers import claim_one, make_dead, submit, succeeded
from grpc_helpers import GrpcServer, grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.numerals import natural

CRAFTED = [
    "¹",
    "\u0661",
    "\u0663\u0660",
    "1_0",
    " 5",
    "5 ",
    "+5",
    "-1",
    "0x10",
    "1e3",
    "9" * 19,
    "9" * 5000,
]
CRAFTED_PENDING = [
    *CRAFTED,
    "normal:echo:¹",
    "normal:echo:-1",
    "normal:echo:" + "9" * 30,
    "urgent:echo:0",
    "normal::0",
    ":",
    "normal:echo",
]


async def seeded(server: ApiServer) -> None:
    """Two tasks in each listed state, so that every listing has a second page."""
    broker = server.broker
    await make_dead(broker, 2)
    for _ in range(2):
        await submit(broker)
        await broker.report([succeeded(await claim_one(broker))])
    await submit(broker)
    await submit(broker)


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ApiServer]:
    async with api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server:
        await seeded(server)
        yield server


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/tasks", {"state": "succeeded"}),
        ("/api/v1/tasks", {"state": "dead"}),
        ("/api/v1/dead-letters", {}),
    ],
)
async def test_a_crafted_offset_cursor_is_refused_naming_it(
    server: ApiServer, path: str, params: dict[str, str]
) -> None:
    async with server.client(token=ADMIN_TOKEN) as client:
        for cursor in CRAFTED:
            response = await client.get(path, params={**params, "cursor": cursor})
            assert response.status_code == 422, (cursor, response.text)
            assert problem(response)["field"] == "cursor"
        # What the server issued still pages.
        first = (await client.get(path, params={**params, "limit": "1"})).json()
        assert first["next_cursor"] is not None
        second = await client.get(path, params={**params, "cursor": first["next_cursor"]})
        assert second.status_code == 200
        assert second.json()["tasks"][0]["id"] != first["tasks"][0]["id"]


async def test_a_crafted_pending_cursor_is_refused_naming_it(server: ApiServer) -> None:
    async with server.client(token=ADMIN_TOKEN) as client:
        for cursor in CRAFTED_PENDING:
            response = await client.get("/api/v1/tasks", params={"cursor": cursor})
            assert response.status_code == 422, (cursor, response.text)
            assert problem(response)["field"] == "cursor"


async def test_a_pending_cursor_survives_its_queue_emptying(server: ApiServer) -> None:
    """The cursor names a queue; when that queue has emptied by the next page, the listing goes
    on from the queue after it rather than refusing a cursor the server itself gave."""
    async with server.client(token=ADMIN_TOKEN) as client:
        first = (await client.get("/api/v1/tasks", params={"limit": "1"})).json()
        assert first["next_cursor"] is not None
        for _ in range(2):
            await claim_one(server.broker)
        rest = await client.get("/api/v1/tasks", params={"cursor": first["next_cursor"]})
        assert rest.status_code == 200, rest.text
        assert rest.json() == {"tasks": [], "next_cursor": None}


async def test_grpc_refuses_a_crafted_cursor_as_an_invalid_argument(redis_url: str) -> None:
    server: GrpcServer
    async with grpc_server(redis_url) as server:
        await make_dead(server.broker, 2)
        for state in (pb.TaskState.DEAD, pb.TaskState.SUCCEEDED, pb.TaskState.PENDING):
            for cursor in ("¹", "1_0", "9" * 5000, "normal:echo:¹"):
                request = pb.ListTasksRequest(state=state, cursor=cursor)
                with pytest.raises(GRPCError) as info:
                    await grpc_call(server.h2c, functools.partial(list_tasks, request=request))
                assert info.value.status is Status.INVALID_ARGUMENT, cursor
                assert (info.value.message or "").startswith("cursor: "), info.value.message


async def list_tasks(stub: TaskQueueStub, *, request: pb.ListTasksRequest) -> object:
    return await stub.list_tasks(request)


def test_natural_takes_ascii_digits_alone() -> None:
    assert natural("0") == 0
    assert natural("123") == 123
    assert natural(b"42") == 42
    assert natural("9" * 18) == 10**18 - 1
    for text in [*CRAFTED, "", "12a", "\uff11"]:
        assert natural(text) is None, text
