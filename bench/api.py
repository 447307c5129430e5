"""Submit rate through the APIs: REST over HTTP/1.1 and HTTP/2, and gRPC, one task a request
and 100 a request, against a real ``taskqueue server`` process (API only, no worker).

    ./dev python bench/api.py [--requests 5000] [--batches 500] [--concurrency 16]
                              [--redis-url URL] [--only MODE ...] [--profile FILE]

The client sends each mode's one request body, encoded once, and checks the answer's status
(REST) or counts the results in the reply's bytes (gRPC batch), so its own work stays small;
``--betterproto-client`` has the gRPC batch mode encode each request and parse each reply with
betterproto instead, as a plain client of the generated stub does (pure Python: the client
then spends more CPU than the server).

``--only`` runs only the modes whose names start with one of its words (``--only "grpc
batch"``, ``--only rest``); ``--profile`` runs the server under cProfile and writes its stats
to FILE when it stops (``python -m pstats FILE``).

Each mode keeps ``--concurrency`` requests in flight from this one client process: over
HTTP/1.1 on as many connections (one request at a time on each), over HTTP/2 and gRPC on one
connection that carries them all. "single" is ``POST /api/v1/tasks`` or ``SubmitTask``,
``--requests`` of them; "batch" is ``POST /api/v1/tasks/batch`` or ``SubmitTasks`` with 100
tasks, ``--batches`` of them. Redis is emptied before each mode, and a short warm-up opens the
connections before the clock starts; the rate is tasks from the first timed request to the last
answer. The client is asyncio (grpclib needs it; httpx runs on it as well), with httpx for REST
and grpclib for gRPC; it is pure Python, like the server, and competes with it for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import redis
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.encoding.proto import ProtoCodec

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.embedded import EmbeddedRedis

BATCH = 100
WARM_UP = 50  # requests before the clock starts, to open the connections
HOST = "127.0.0.1"
#: One request: it submits, checks the answer, and says how many tasks it submitted.
Submit = Callable[[], Awaitable[int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def api_server(redis_url: str, profile: str | None = None) -> Iterator[tuple[str, int]]:
    """A ``taskqueue server`` process for the block: its base URL and pid, once it is ready;
    under cProfile, writing to ``profile``, if given."""
    port = free_port()
    env = {**os.environ, "TASKQUEUE_REDIS__URL": redis_url, "TASKQUEUE_LOGGING__LEVEL": "error"}
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    command = [sys.executable, *profiler, "-m", "taskqueue", "server"]
    command += ["--host", HOST, "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"taskqueue server did not become ready on {url}")
            time.sleep(0.1)  # another process starts: nothing to wait on but the port
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


async def drive(submit: Submit, requests: int, concurrency: int) -> tuple[int, float]:
    """Run ``requests`` requests with ``concurrency`` in flight; (tasks submitted, seconds)."""
    remaining = requests
    tasks = 0

    async def lane() -> None:
        nonlocal remaining, tasks
        while remaining > 0:
            remaining -= 1
            submitted = await submit()  # not `tasks += await ...`: that reads tasks first
            tasks += submitted

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return tasks, time.perf_counter() - started


def rest_submit(client: httpx.AsyncClient, batch: bool) -> Submit:
    if batch:
        path = "/api/v1/tasks/batch"
        body = json.dumps({"tasks": [{"type": "bench"}] * BATCH}).encode()
    else:
        path, body = "/api/v1/tasks", json.dumps({"type": "bench"}).encode()
    headers = {"content-type": "application/json"}

    async def submit() -> int:
        response = await client.post(path, content=body, headers=headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return BATCH if batch else 1

    return submit


class BytesCodec(ProtoCodec):
    """grpclib's codec, passing ``bytes`` through as they are: a request encoded once, a
    reply left unparsed."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        return message if message_type is bytes else super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data if message_type is bytes else super().decode(data, message_type)


def count_results(reply: bytes) -> int:
    """How many ``results`` (field 1, length-delimited) a SubmitTasksResponse's bytes hold."""
    count = at = 0
    while at < len(reply):
        if reply[at] != 0x0A:
            raise RuntimeError(f"SubmitTasks answered an unexpected field key {reply[at]}")
        at, length, shift = at + 1, 0, 0
        while True:
            byte = reply[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        at += length
        count += 1
    return count


def grpc_submit(stub: TaskQueueStub, batch: bool, betterproto_client: bool) -> Submit:
    one = pb.SubmitTaskRequest(type="bench")
    many = pb.SubmitTasksRequest(tasks=[one] * BATCH)
    body = bytes(many)

    async def submit_bytes() -> int:
        stream = stub.channel.request(
            "/taskqueue.v1.TaskQueue/SubmitTasks", Cardinality.UNARY_UNARY, bytes, bytes, timeout=30
        )
        async with stream:
            await stream.send_message(body, end=True)
            reply = await stream.recv_message()
        results = count_results(reply or b"")
        if results != BATCH:
            raise RuntimeError(f"SubmitTasks answered {results} results")
        return BATCH

    async def submit() -> int:
        if batch:
            reply = await stub.submit_tasks(many, timeout=30)
            if len(reply.results) != BATCH:
                raise RuntimeError(f"SubmitTasks answered {len(reply.results)} results")
            return BATCH
        await stub.submit_task(one, timeout=30)
        return 1

    return submit_bytes if batch and not betterproto_client else submit


@contextlib.asynccontextmanager
async def rest_client(url: str, http2: bool, concurrency: int) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP/1.1 with a connection per request in flight, or one HTTP/2 connection (h2c)."""
    connections = 1 if http2 else concurrency
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=url, http1=not http2, http2=http2, limits=limits, timeout=30
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def grpc_stub(url: str) -> AsyncIterator[TaskQueueStub]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    channel = Channel(host, int(port), codec=BytesCodec())
    try:
        yield TaskQueueStub(channel)
    finally:
        channel.close()


async def measure(name: str, submit: Submit, requests: int, concurrency: int) -> None:
    await drive(submit, WARM_UP, concurrency)
    tasks, seconds = await drive(submit, requests, concurrency)
    per = "1 task" if tasks == requests else f"{tasks // requests} tasks"
    print(
        f"{name:<22}{tasks / seconds:>9,.0f} tasks/s  ({requests / seconds:,.0f} requests/s: "
        f"{requests} requests of {per}, {concurrency} in flight, {seconds:.1f} s)",
        flush=True,
    )


async def run(url: str, flush: Callable[[], object], args: argparse.Namespace) -> None:
    def wanted(name: str) -> bool:
        return not args.only or name.startswith(tuple(args.only))

    for http2, version in ((False, "http/1.1"), (True, "http/2")):
        for batch, requests in ((False, args.requests), (True, args.batches)):
            name = f"rest {version} {'batch' if batch else 'single'}"
            if not wanted(name):
                continue
            flush()
            async with rest_client(url, http2, args.concurrency) as client:
                await measure(name, rest_submit(client, batch), requests, args.concurrency)
    for batch, requests in ((False, args.requests), (True, args.batches)):
        name = f"grpc {'batch' if batch else 'unary'}"
        if not wanted(name):
            continue
        flush()
        async with grpc_stub(url) as stub:
            await measure(
                name, grpc_submit(stub, batch, args.betterproto_client), requests, args.concurrency
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5_000, help="single-task requests")
    parser.add_argument("--batches", type=int, default=500, help="requests of 100 tasks")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--redis-url")
    parser.add_argument("--only", nargs="+", metavar="MODE", help="modes to run, by prefix")
    parser.add_argument(
        "--betterproto-client", action="store_true", help="gRPC batch: betterproto client side"
    )
    parser.add_argument("--profile", metavar="FILE", help="cProfile the server into FILE")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        url, _ = stack.enter_context(api_server(redis_url, args.profile))
        control = redis.Redis.from_url(redis_url)
        stack.callback(control.close)
        asyncio.run(run(url, control.flushdb, args))


if __name__ == "__main__":
    main()
