"""HTTP/2 connections cannot make the daemon hold unbounded memory, and connections past
``server.max_connections`` are refused as documented (HTTP/2 GOAWAY, HTTP/1.1 503).

A ``taskqueue run`` process is attacked by many connections that announce the largest frames
and windows HTTP/2 allows and open several streams each, sending nearly
``server.max_request_bytes`` on every one without ending any: each body would be held
until the body timeout. Its resident memory (VmRSS) is sampled throughout.
"""

from __future__ import annotations

from pathlib import Path

import h2.errors
import trio
from abuse_helpers import GRPC_HEADERS, JSON_HEADERS, H2Client, api_daemon, rss_bytes

from taskqueue.api.connections import SMALL_REQUESTS_BYTES, BodyBudget, ConnectionLimit, refusal

CONNECTIONS = 30
STREAMS = 6  # per connection
BODY = 2 * 2**20 - 2**16  # just under server.max_request_bytes (2 MiB)
#: A generous bound on the daemon's growth; unbounded, the attack holds ~340 MiB of bodies.
GROWTH = 150 * 2**20
MAX_CONNECTIONS = CONNECTIONS + 2


async def test_many_h2_connections_with_huge_frames_and_bodies_stay_bounded(
    redis_url: str, tmp_path: Path
) -> None:
    async with api_daemon(
        tmp_path, redis_url, TASKQUEUE_SERVER__MAX_CONNECTIONS=str(MAX_CONNECTIONS)
    ) as (daemon, port):
        before = rss_bytes(daemon.pid)
        peak = before
        held = 0
        refused = 0
        all_sent = trio.Event()

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_bytes(daemon.pid))
                await trio.sleep(0.02)

        async def attacker(index: int, connected: trio.Semaphore) -> None:
            nonlocal held, refused
            path, headers = (
                ("/taskqueue.v1.TaskQueue/SubmitTasks", GRPC_HEADERS)
                if index % 2
                else ("/api/v1/tasks/batch", JSON_HEADERS)
            )
            async with H2Client.connect(port) as client:
                for _ in range(STREAMS):
                    stream_id = await client.open_stream(path, headers)
                    await client.send_body(stream_id, b"x" * BODY, end=False)
                    if stream_id in client.ended:
                        refused += 1
                    else:
                        held += 1
                connected.release()
                await all_sent.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            connected = trio.Semaphore(0)
            async with trio.open_nursery() as attackers:
                for index in range(CONNECTIONS):
                    attackers.start_soon(attacker, index, connected)
                for _ in range(CONNECTIONS):
                    await connected.acquire()
                await trio.sleep(0.5)  # let the daemon take in what it was sent
                growth = peak - before
                print(
                    f"VmRSS {before / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} MiB "
                    f"(+{growth / 2**20:.0f} MiB); streams held {held}, refused {refused}"
                )
                assert growth < GROWTH
                assert refused > 0  # a connection holds one large body, not six

                # The attackers' connections are still open: two more fit, then none.
                async with H2Client.connect(port) as one, H2Client.connect(port) as two:
                    for client in (one, two):
                        stream_id = await client.request("/healthz", b"", {}, method="GET")
                        assert (await client.response(stream_id)).status == 200
                    await assert_h2_refused(port)
                    await assert_http1_refused(port)
                all_sent.set()
            nursery.cancel_scope.cancel()
        assert daemon.process is not None and daemon.process.returncode is None


async def assert_h2_refused(port: int) -> None:
    async with H2Client.connect(port) as client:
        with trio.fail_after(5):
            stream_id = await client.request("/healthz", b"", {}, method="GET")
            response = await client.response(stream_id)
        assert client.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        assert response.status is None  # nothing was processed


async def assert_http1_refused(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(2**16):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert b"connection: close" in head.lower()
    assert b"server.max_connections" in body


def test_a_connection_s_budget_never_refuses_the_stream_holding_most() -> None:
    # One largest request (and a gRPC message's prefix) fits, with room for small ones.
    assert BodyBudget.for_requests_of(1000).limit == 1005 + SMALL_REQUESTS_BYTES
    budget = BodyBudget(limit=1000)
    assert budget.admit(1, 900)
    assert budget.admit(3, 100)
    assert not budget.admit(5, 1)  # past the budget, and stream 1 holds more
    assert budget.admit(1, 10)  # the largest holder goes on, past the budget
    budget.release(1)
    assert budget.admit(5, 900)
    assert budget.total == 1000


def test_the_connection_limit_counts_and_frees() -> None:
    limit = ConnectionLimit(2)
    assert limit.acquire() and limit.acquire() and not limit.acquire()
    limit.release()
    assert limit.acquire()
    assert all(ConnectionLimit(0).acquire() for _ in range(5))  # 0: no limit


def test_a_refusal_speaks_the_client_s_protocol() -> None:
    assert refusal(b"GET / HTTP/1.1\r\n", 3).startswith(b"HTTP/1.1 503 ")
    assert refusal(b"", 3).startswith(b"HTTP/1.1 503 ")
    h2_answer = refusal(b"PRI * HTTP/2.0", 3)
    assert h2_answer[3] == 0x04  # a SETTINGS frame first
    assert b"server.max_connections" in h2_answer  # the GOAWAY's debug data
