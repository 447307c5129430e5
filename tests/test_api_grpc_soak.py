"""The gRPC soak: 50,000 unary calls on a few long-lived HTTP/2 connections, with the server's
HTTP/2 fixes (:mod:`taskqueue.api.patches.hypercorn_h2`) in place. Zero calls may fail, the
server must serve afterwards, and what it holds must return to where it was: no hypercorn
stream left alive, and the process' memory back near its level after a warm-up.

The client runs in its own process (grpclib is asyncio-only, and it is CPU-heavy: sharing the
server's interpreter would halve the throughput); the server runs in the test's trio loop.
"""

from __future__ import annotations

import gc
import json
import resource
from typing import Any

import pytest
import trio
from grpc_helpers import GrpcServer, grpc_call, grpc_server, soak_client_command
from hypercorn.protocol.http_stream import HTTPStream

from taskqueue.api.grpc import pb
from taskqueue.api.patches import hypercorn_fixes

CALLS = 50_000
CHANNELS = 4
CONCURRENCY = 16  # calls in flight per channel
#: The run must end within this; it took about 100 s on a 2-core machine.
TIME_LIMIT = 400.0
#: How much the server process' resident memory may grow over the run, after a warm-up.
MEMORY_SLACK = 32 * 2**20


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def live_streams() -> int:
    """hypercorn HTTP streams still referenced (each finished call should have released its)."""
    return sum(isinstance(o, HTTPStream) for o in gc.get_objects())


async def run_client(server: GrpcServer, calls: int) -> dict[str, Any]:
    command = soak_client_command(server.h2c, calls, CHANNELS, CONCURRENCY)
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    summary: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return summary


async def settled(server: GrpcServer) -> tuple[int, int]:
    """(live streams, resident bytes) once the last connection's streams have been released."""
    await trio.sleep(0.5)
    gc.collect()
    return live_streams(), resident_bytes()


@pytest.mark.soak
async def test_50000_grpc_calls_on_long_lived_connections(redis_url: str) -> None:
    hypercorn_fixes.install()
    assert hypercorn_fixes.installed()
    async with grpc_server(redis_url) as server:
        warm = await run_client(server, 2_000)
        assert warm["failures"] == {}
        streams_before, memory_before = await settled(server)

        with trio.fail_after(TIME_LIMIT):
            summary = await run_client(server, CALLS)

        print(
            f"\n{CALLS} gRPC calls on {CHANNELS} channels x {CONCURRENCY} in flight: "
            f"{summary['seconds']:.1f} s, {CALLS / summary['seconds']:.0f} calls/s, "
            f"failures {summary['failures']}"
        )
        assert summary["failures"] == {}
        assert summary["done"] == CALLS

        stats = await grpc_call(server.h2c, lambda s: s.get_queue_stats(pb.GetQueueStatsRequest()))
        assert stats.by_state["pending"] == (2_000 + CALLS) * 9 // 10

        streams_after, memory_after = await settled(server)
        print(
            f"hypercorn streams alive: {streams_before} -> {streams_after}; resident memory: "
            f"{memory_before / 2**20:.1f} -> {memory_after / 2**20:.1f} MiB"
        )
        assert streams_after == 0
        assert memory_after - memory_before < MEMORY_SLACK
