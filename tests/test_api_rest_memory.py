"""The API server's memory under three minutes of HTTP/2 load, with tokens on: after a warm-up,
resident memory may grow by less than 2 MiB per 100,000 requests.

A leak of a few hundred bytes a request (a stream, a buffer, a task record kept by mistake)
shows within that time; the allocator's high-water mark, which settles during the warm-up,
does not count. The server is a real ``taskqueue server`` process, as deployed (in the test's
own process, pytest's log capture would keep every access-log record); the load is the REST
soak's client (4 HTTP/2 connections x 16 in flight; its own process), which reports its
progress, and the server's resident memory is read from /proc at each report.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from api_helpers import api_server
from daemon_helpers import WorkerProcess, free_port, wait_until, worker_env
from test_api_rest_soak import CONCURRENCY, CONNECTIONS

from taskqueue.api.patches import hypercorn_fixes
from taskqueue.api.patches import hypercorn_h2 as h2

SECONDS = 180.0
#: The first minute: buffers, caches and the allocator's arenas reach their working size.
WARM_UP = 60.0
SAMPLE_EVERY = 5_000  # requests
MIB = 2**20
GROWTH_PER_100K = 2 * MIB
TOKEN = "memory-soak-token"


@attrs.frozen
class Sample:
    at: float
    requests: int
    rss: int


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        (line,) = (line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def serving(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_a_connection_remembers_a_bounded_number_of_closed_streams(redis_url: str) -> None:
    """h2's own default would keep 65,536 closed streams per connection (~9 MiB)."""
    hypercorn_fixes.install()
    requests = h2.CLOSED_STREAMS_KEPT + 300
    gc.collect()
    earlier = {id(o) for o in gc.get_objects() if isinstance(o, h2.ReapingH2Protocol)}
    async with api_server(redis_url) as server, server.client(http2=True) as client:
        async with trio.open_nursery() as nursery:
            for lane in range(10):

                async def get(lane: int = lane) -> None:
                    for _ in range(lane, requests, 10):
                        assert (await client.get("/healthz")).status_code == 200

                nursery.start_soon(get)
        (protocol,) = (
            o
            for o in gc.get_objects()
            if isinstance(o, h2.ReapingH2Protocol) and id(o) not in earlier
        )
        remembered = len(protocol.connection._closed_streams)
    assert h2.CLOSED_STREAMS_KEPT - 100 <= remembered <= h2.CLOSED_STREAMS_KEPT


@pytest.mark.soak
async def test_resident_memory_stays_flat_under_three_minutes_of_http2_load(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(
        redis_url,
        TASKQUEUE_SERVER__PORT=str(port),
        TASKQUEUE_SERVER__TOKENS=TOKEN,
        TASKQUEUE_LOGGING__LEVEL="warning",
    )
    url = f"http://127.0.0.1:{port}"
    async with WorkerProcess(tmp_path, env, name="server", command="server") as server:
        await wait_until(lambda: serving(url), "the server is ready", within=30)
        spec = {
            "url": url,
            "requests": 10**9,  # numbering only: the run ends by time
            "seconds": SECONDS,
            "progress": SAMPLE_EVERY,
            "connections": CONNECTIONS,
            "concurrency": CONCURRENCY,
            "token": TOKEN,
        }
        command = [sys.executable, str(Path(__file__).with_name("test_api_rest_soak.py"))]
        samples: list[Sample] = []
        summary: dict[str, object] = {}
        process = await trio.lowlevel.open_process(
            [*command, json.dumps(spec)], stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        start = trio.current_time()
        buffer = b""
        with trio.fail_after(SECONDS * 3):
            async for chunk in process.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    report = json.loads(line)
                    if "progress" in report:
                        at = trio.current_time() - start
                        samples.append(Sample(at, report["progress"], resident_bytes(server.pid)))
                    else:
                        summary = report
            assert await process.wait() == 0
        assert summary.get("failures") == {}, summary

        settled = [s for s in samples if s.at >= WARM_UP]
        assert len(settled) >= 2, f"too few samples after the warm-up: {samples}"
        first, last = settled[0], settled[-1]
        per_100k = (last.rss - first.rss) / (last.requests - first.requests) * 100_000
        print(
            f"\n{summary['done']} requests in {summary['seconds']:.0f} s over HTTP/2 with tokens; "
            f"resident memory {samples[0].rss / MIB:.1f} MiB after {samples[0].requests}, "
            f"{first.rss / MIB:.1f} MiB after the warm-up ({first.requests}), "
            f"{last.rss / MIB:.1f} MiB at {last.requests}: {per_100k / MIB:+.2f} MiB per 100,000"
        )
        print("  " + ", ".join(f"{s.requests // 1000}k {s.rss / MIB:.1f}" for s in samples))
        assert per_100k < GROWTH_PER_100K
