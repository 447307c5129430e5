"""Helpers for the gRPC API tests: a real server on real sockets, and three kinds of client.

* :func:`grpc_server` serves :func:`taskqueue.api.grpc.create_grpc_app` with hypercorn's trio
  ``serve`` on 127.0.0.1 (cleartext h2c, and TLS with a self-signed certificate), over a real
  broker on the test Redis and a running :class:`EventHub`.
* :func:`grpc_call` runs an asyncio coroutine with the generated grpclib stub in a worker thread
  (grpclib is asyncio-only; the server stays in the test's trio loop).
* :func:`raw_call` speaks HTTP/2 directly (the ``h2`` package, under trio) for what a
  well-behaved client never sends: a broken body, no ``te: trailers``, a ``grpc-timeout``
  the client itself does not enforce, a stream reset.
* :func:`soak_client_main` is the load generator the soak test runs in a separate process.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import h2.config
import h2.connection
import h2.events
import trio
from daemon_helpers import wait_until
from grpclib.client import Channel
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from taskqueue.api.auth import Authenticator, hash_token
from taskqueue.api.context import ApiContext
from taskqueue.api.events import EventHub
from taskqueue.api.grpc import GrpcApp, TaskQueueStub, create_grpc_app
from taskqueue.api.patches import hypercorn_fixes
from taskqueue.broker import Broker, BrokerSettings
from taskqueue.config import load_config
from taskqueue.daemon.runtime import open_redis
from taskqueue.health import Health
from taskqueue.metrics import Metrics

T = TypeVar("T")

TASKQUEUE_SERVICE = "/taskqueue.v1.TaskQueue/"


# -- TLS --------------------------------------------------------------------------------------


def client_ssl_context(cafile: Path) -> ssl.SSLContext:
    """What a grpclib client needs to trust the test certificate and negotiate h2."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2"])
    return context


# -- the server -------------------------------------------------------------------------------


@attrs.frozen
class Target:
    """Where a client connects: a port, with TLS (trusting ``cafile``) or without."""

    host: str
    port: int
    cafile: Path | None = None

    @property
    def tls(self) -> bool:
        return self.cafile is not None

    def channel(self) -> Channel:
        """A grpclib channel; call it inside the asyncio loop that will use it."""
        context = client_ssl_context(self.cafile) if self.cafile is not None else None
        return Channel(self.host, self.port, ssl=context)


@attrs.define
class GrpcServer:
    context: ApiContext
    events: EventHub
    app: GrpcApp
    h2c: Target
    tls: Target | None

    @property
    def broker(self) -> Broker:
        return self.context.broker

    def target(self, transport: str) -> Target:
        if transport == "tls":
            assert self.tls is not None, "this server was started without TLS"
            return self.tls
        return self.h2c


def server_config(redis_url: str, **settings: object) -> Any:
    """The daemon configuration: ``server__tokens=("t",)`` sets ``server.tokens``."""
    overrides: dict[str, object] = {"redis.url": redis_url}
    overrides.update({key.replace("__", "."): value for key, value in settings.items()})
    return load_config(None, env={}, overrides=overrides)


@asynccontextmanager
async def grpc_server(
    redis_url: str,
    *,
    cert: tuple[Path, Path] | None = None,
    hypercorn_settings: Mapping[str, Any] | None = None,
    redis_ready: bool = True,
    **settings: object,
) -> AsyncIterator[GrpcServer]:
    """The gRPC app served by hypercorn for the ``async with`` block.

    ``settings`` are configuration overrides (``task__max_queue_depth=1``); ``cert`` adds a
    TLS port. The daemon is real except that nothing but the API runs (no consumer): tasks
    stay where the test puts them. Leaving the block stops it the way the daemon stops:
    ``context.shutdown`` first (streams end), then hypercorn.
    """
    hypercorn_fixes.install()  # as the API service does: hypercorn's fixes, process-wide
    config = server_config(redis_url, **settings)
    redis = open_redis(config)
    broker = Broker(redis, BrokerSettings.from_config(config))
    health = Health()
    context = ApiContext(
        broker=broker,
        health=health,
        shutdown=trio.Event(),
        server=config.server,
        metrics=Metrics(process_metrics=False),
    )
    events = EventHub(broker, health)
    app = create_grpc_app(context, Authenticator.from_config(config.server), events)
    hconfig = HypercornConfig()
    hconfig.bind = ["127.0.0.1:0"]
    if cert is not None:
        hconfig.certfile, hconfig.keyfile = str(cert[0]), str(cert[1])
        hconfig.insecure_bind = ["127.0.0.1:0"]
    hconfig.keep_alive_max_requests = 10**9
    hconfig.graceful_timeout = 2.0
    hconfig.accesslog = None
    for key, value in (hypercorn_settings or {}).items():
        setattr(hconfig, key, value)
    stop_serving, served = trio.Event(), trio.Event()

    async def run_hypercorn(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(app, hconfig, shutdown_trigger=stop_serving.wait, task_status=task_status)
        finally:
            served.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(events.run)
            if redis_ready:
                with trio.fail_after(5):
                    await redis.execute("PING")
                health.redis_up()
            binds: list[str] = await nursery.start(run_hypercorn)
            plain = next(b for b in binds if b.startswith("http://"))
            secure = next((b for b in binds if b.startswith("https://")), None)
            server = GrpcServer(
                context=context,
                events=events,
                app=app,
                h2c=_target(plain),
                tls=attrs.evolve(_target(secure), cafile=cert[0]) if secure and cert else None,
            )
            try:
                yield server
            finally:
                context.shutdown.set()
                stop_serving.set()
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await served.wait()
                nursery.cancel_scope.cancel()  # events.run never returns on its own
    finally:
        await redis.aclose()


@asynccontextmanager
async def guarded_grpc_server(redis_url: str, token_dir: Path) -> AsyncIterator[GrpcServer]:
    """:func:`grpc_server` with an admin token ``admin-token`` and a read-only token
    ``reader`` (from a token file written in ``token_dir``)."""
    token_file = token_dir / "tokens"
    token_file.write_text(f"{hash_token('reader')} read\n")
    async with grpc_server(
        redis_url, server__tokens=["admin-token"], server__token_file=str(token_file)
    ) as server:
        yield server


async def wait_for_watchers(server: GrpcServer, count: int) -> None:
    """Wait until the event hub has ``count`` watchers: a WatchTasks handler registers one
    when it starts and removes it when it finishes."""

    async def reached() -> bool:
        return len(server.events._watchers) == count

    await wait_until(reached, f"the event hub has {count} watcher(s)")


def _target(bind: str) -> Target:
    host, _, port = bind.partition("://")[2].rpartition(":")
    return Target(host, int(port))


# -- the grpclib client, in a thread ----------------------------------------------------------


async def in_asyncio(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` in a fresh asyncio loop in a worker thread; its result (or exception)."""

    def run() -> T:
        async def main() -> T:
            return await make()

        return asyncio.run(main())

    return await trio.to_thread.run_sync(run)


async def grpc_call(
    target: Target,
    use: Callable[[TaskQueueStub], Awaitable[T]],
    *,
    token: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> T:
    """``await use(stub)`` on a fresh channel to ``target`` (in asyncio, in a thread)."""

    async def make() -> T:
        channel = target.channel()
        try:
            headers = dict(metadata or {})
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            return await use(TaskQueueStub(channel, metadata=headers or None))
        finally:
            channel.close()

    return await in_asyncio(make)


@asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a grpclib streaming call's iterator on leaving the block, which resets the call at
    once (left to the garbage collector, it would stay open until asyncio finalises it)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)  # typed as an AsyncIterator, made a generator
        if aclose is not None:
            await aclose()


# -- a raw HTTP/2 client ----------------------------------------------------------------------


@attrs.define
class RawResponse:
    """Everything the server sent on one stream."""

    status: int | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    data: bytes = b""
    trailers: dict[str, str] = attrs.Factory(dict)
    reset: bool = False

    @property
    def grpc_status(self) -> int | None:
        """From the trailers, or from the headers of a response without trailers."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        from urllib.parse import unquote

        value = self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))
        return unquote(value)


@attrs.define
class RawStream:
    """One request on a raw HTTP/2 connection, driven by the test."""

    conn: h2.connection.H2Connection
    stream: trio.SocketStream
    stream_id: int
    response: RawResponse = attrs.Factory(RawResponse)
    ended: bool = False

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def read(self, until: Callable[[RawResponse], bool] | None = None) -> RawResponse:
        """Read frames until the stream ends (or ``until(response)`` holds)."""
        while not self.ended and not (until is not None and until(self.response)):
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the server closed the connection")
            for event in self.conn.receive_data(data):
                self._handle(event)
            await self.flush()
        return self.response

    def _handle(self, event: h2.events.Event) -> None:
        if getattr(event, "stream_id", self.stream_id) != self.stream_id:
            return
        if isinstance(event, h2.events.ResponseReceived):
            headers = {k.decode(): v.decode() for k, v in event.headers}
            self.response.status = int(headers.pop(":status"))
            self.response.headers = headers
        elif isinstance(event, h2.events.DataReceived):
            self.response.data += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.response.trailers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h2.events.StreamEnded):
            self.ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.response.reset = True
            self.ended = True

    async def cancel(self) -> None:
        """Reset the stream, as a client cancelling a call does."""
        self.conn.reset_stream(self.stream_id, error_code=8)  # CANCEL
        await self.flush()


@asynccontextmanager
async def raw_stream(
    target: Target,
    path: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/grpc",
    te: str | None = "trailers",
    method: str = "POST",
) -> AsyncIterator[RawStream]:
    """Open a cleartext HTTP/2 connection and send one request on it."""
    assert not target.tls, "the raw client speaks h2c only"
    stream = await trio.open_tcp_stream(target.host, target.port)
    try:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        request = [
            (":method", method),
            (":scheme", "http"),
            (":authority", f"{target.host}:{target.port}"),
            (":path", path),
            ("content-type", content_type),
        ]
        if te is not None:
            request.append(("te", te))
        request += list((headers or {}).items())
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, [(k.encode(), v.encode()) for k, v in request])
        conn.send_data(stream_id, body, end_stream=True)
        raw = RawStream(conn, stream, stream_id)
        await raw.flush()
        yield raw
    finally:
        await stream.aclose()


async def next_call(
    previous: RawStream, path: str, body: bytes, *, headers: Mapping[str, str] | None = None
) -> RawStream:
    """Send another gRPC request on ``previous``'s connection (a new stream; frames that still
    arrive for earlier streams are ignored)."""
    conn = previous.conn
    stream_id = conn.get_next_available_stream_id()
    request = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1"),
        (":path", path),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *(headers or {}).items(),
    ]
    conn.send_headers(stream_id, [(k.encode(), v.encode()) for k, v in request])
    conn.send_data(stream_id, body, end_stream=True)
    raw = RawStream(conn, previous.stream, stream_id)
    await raw.flush()
    return raw


async def raw_call(target: Target, path: str, body: bytes, **kwargs: Any) -> RawResponse:
    """One complete request on its own connection; the whole response (5 s at most)."""
    async with raw_stream(target, path, body, **kwargs) as stream:
        with trio.fail_after(5):
            return await stream.read()


# -- the soak client (a separate process) -----------------------------------------------------


def soak_client_command(
    target: Target, calls: int, channels: int, concurrency: int, *, stats_every: int = 10
) -> list[str]:
    """The command line that runs :func:`soak_client_main` in a new interpreter."""
    spec = json.dumps(
        {
            "host": target.host,
            "port": target.port,
            "calls": calls,
            "channels": channels,
            "concurrency": concurrency,
            "stats_every": stats_every,
        }
    )
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "import grpc_helpers; grpc_helpers.soak_client_main()"
    )
    return [sys.executable, "-c", code, spec]


def soak_client_main() -> None:
    """Make ``calls`` unary calls over ``channels`` long-lived channels, ``concurrency`` in
    flight on each; print a JSON summary (calls made, failures by kind, seconds taken).

    Every ``stats_every``-th call is a GetQueueStats (a read), the others SubmitTask (a write).
    """
    from taskqueue.api.grpc import pb

    spec = json.loads(sys.argv[1])
    target = Target(spec["host"], spec["port"])
    failures: dict[str, int] = {}
    done = 0
    marks: list[float] = []  # seconds at each 5,000 calls done: a slowdown shows here

    async def worker(stub: TaskQueueStub, numbers: range) -> None:
        nonlocal done
        for number in numbers:
            try:
                if number % spec["stats_every"] == 0:
                    await stub.get_queue_stats(pb.GetQueueStatsRequest(), timeout=30)
                else:
                    await stub.submit_task(pb.SubmitTaskRequest(type="soak"), timeout=30)
                done += 1
                if done % 5000 == 0:
                    marks.append(round(time.perf_counter() - started, 1))
            except Exception as exc:
                kind = f"{type(exc).__name__}: {exc}"[:200]
                failures[kind] = failures.get(kind, 0) + 1

    async def main() -> None:
        opened = [target.channel() for _ in range(spec["channels"])]
        workers = spec["channels"] * spec["concurrency"]
        try:
            await asyncio.gather(
                *(
                    worker(TaskQueueStub(opened[i % len(opened)]), range(i, spec["calls"], workers))
                    for i in range(workers)
                )
            )
        finally:
            for channel in opened:
                channel.close()

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    print(json.dumps({"done": done, "failures": failures, "seconds": elapsed, "marks": marks}))
