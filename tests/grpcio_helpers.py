"""The official gRPC client (``grpcio``) against the test servers, with stubs made at test time.

:func:`generate_stubs` runs ``grpc_tools.protoc`` on ``proto/`` into a directory of the test's
and imports what it made. The protos are mapped under a package of their own
(``tq_grpcio.taskqueue``, ``tq_grpcio.health``) because their own paths would make modules
named ``taskqueue.v1`` and ``grpc.health.v1``, shadowing this project and grpcio itself.
Nothing generated is committed: the ``.proto`` files are the contract, and this is what any
user of grpcio would generate from them.

grpcio runs its own threads; its sync calls run in a worker thread (:func:`in_thread`), its
``grpc.aio`` calls in an asyncio loop in a worker thread (``grpc_helpers.in_asyncio``), so
the server stays in the test's trio loop.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import grpc
import trio
from grpc_helpers import Target, in_asyncio

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tq_grpcio"
#: proto file -> where it is mapped for protoc (and so the module it becomes).
PROTOS = {
    "taskqueue/v1/taskqueue.proto": f"{PACKAGE}/taskqueue/taskqueue.proto",
    "grpc/health/v1/health.proto": f"{PACKAGE}/health/health.proto",
}
#: grpcio must not go through a proxy the test runner's environment may name.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


@attrs.frozen
class Stubs:
    """The generated modules: messages (``pb``, ``health_pb``) and stubs (``*_grpc``)."""

    pb: Any
    pb_grpc: Any
    health_pb: Any
    health_grpc: Any


def generate_stubs(out: Path) -> Stubs:
    """Generate the grpcio modules of ``proto/`` into ``out`` and import them."""
    includes = [
        f"-I{virtual.rpartition('/')[0]}={ROOT / 'proto' / real.rpartition('/')[0]}"
        for real, virtual in PROTOS.items()
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            *includes,
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *PROTOS.values(),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        modules = [
            importlib.import_module(f"{PACKAGE}.{name}")
            for name in (
                "taskqueue.taskqueue_pb2",
                "taskqueue.taskqueue_pb2_grpc",
                "health.health_pb2",
                "health.health_pb2_grpc",
            )
        ]
    finally:
        sys.path.remove(str(out))
    return Stubs(*modules)


def metadata(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token is not None else []


def sync_channel(target: Target) -> grpc.Channel:
    return grpc.insecure_channel(f"{target.host}:{target.port}", options=CHANNEL_OPTIONS)


def aio_channel(target: Target) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel; make it inside the asyncio loop that will use it."""
    return grpc.aio.insecure_channel(f"{target.host}:{target.port}", options=CHANNEL_OPTIONS)


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking grpcio call in a worker thread; its result (or exception)."""
    return await trio.to_thread.run_sync(call)


#: (method name, request) -> the reply; the method is the TaskQueue's, or Health's ``Check``.
Call = Callable[[str, Any], Awaitable[Any]]
FLAVOURS = ("sync", "aio")


async def with_grpcio(
    stubs: Stubs,
    flavour: str,
    target: Target,
    use: Callable[[Call], Awaitable[T]],
    *,
    token: str | None = None,
    deadline: float = 10.0,
) -> T:
    """``await use(call)`` with one grpcio channel to ``target``: ``"sync"`` blocking stubs or
    ``"aio"`` ones, in an asyncio loop in a worker thread (blocking calls block only it).
    Every call sends ``token`` and has ``deadline`` seconds (grpcio's own ``timeout``)."""
    md = metadata(token)

    def rpc(queue: Any, health: Any, method: str) -> Any:
        return getattr(health, method) if method == "Check" else getattr(queue, method)

    async def main() -> T:
        if flavour == "aio":
            async with aio_channel(target) as aio:
                queue, health = stubs.pb_grpc.TaskQueueStub(aio), stubs.health_grpc.HealthStub(aio)

                async def call_aio(method: str, request: Any) -> Any:
                    return await rpc(queue, health, method)(request, timeout=deadline, metadata=md)

                return await use(call_aio)
        with sync_channel(target) as channel:
            queue, health = (
                stubs.pb_grpc.TaskQueueStub(channel),
                stubs.health_grpc.HealthStub(channel),
            )

            async def call_sync(method: str, request: Any) -> Any:
                return rpc(queue, health, method)(request, timeout=deadline, metadata=md)

            return await use(call_sync)

    return await in_asyncio(main)


async def grpcio_failure(
    stubs: Stubs, flavour: str, target: Target, method: str, request: Any, **kwargs: Any
) -> grpc.RpcError:
    """The RpcError one call fails with (it must fail)."""

    async def use(call: Call) -> Any:
        return await call(method, request)

    try:
        await with_grpcio(stubs, flavour, target, use, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{method} succeeded")


def trailers(error: grpc.RpcError) -> dict[str, str]:
    """An error's trailing metadata (sync and aio errors alike)."""
    found: Any = error.trailing_metadata()
    return {str(key): str(value) for key, value in found or ()}
