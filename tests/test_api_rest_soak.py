"""The REST soak: 50,000 requests over HTTP/2 on a few long-lived connections, several in flight
on each, with the server's HTTP/2 fixes (:mod:`taskqueue.api.patches.hypercorn_h2`) in place.
Zero requests may fail, the server must serve afterwards, and what it holds must return to
where it was: no hypercorn stream left alive, and the process' memory back near its level
after a warm-up.

The mix is what a busy client does: submit a task (``POST /api/v1/tasks``), read one back
(``GET /api/v1/tasks/{id}``), look at the queues (``GET /api/v1/queues``). Unlike gRPC, every
REST response ends with a body rather than trailers, so this covers the reaper's other path.

The client runs in its own process (this file, run as a script: see :func:`client_main`);
sharing the server's interpreter would halve the throughput. The server runs in the test's trio
loop, where its streams and memory can be looked at.
"""

from __future__ import annotations

import gc
import itertools
import json
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import ApiServer, api_server
from hypercorn.protocol.http_stream import HTTPStream

from taskqueue.api.patches import hypercorn_fixes

REQUESTS = 50_000
CONNECTIONS = 4
CONCURRENCY = 16  # requests in flight per connection
WARM_UP = 2_000
#: The run must end within this. It took 62 to 148 s on a 2-core machine shared with other work:
#: each request costs about 1 ms of CPU in the server and as much in the (httpx) client.
TIME_LIMIT = 400.0
#: How much the server process' resident memory may grow over the run, after a warm-up.
MEMORY_SLACK = 32 * 2**20
#: Of every 10 requests: 6 submit, 3 read a task back, 1 reads the queue counts.
READS_PER_10 = 3
STATS_PER_10 = 1


def kind_of(number: int) -> str:
    """Which request the ``number``-th is: "stats", "get" or "submit"."""
    slot = number % 10
    if slot < STATS_PER_10:
        return "stats"
    if slot < STATS_PER_10 + READS_PER_10:
        return "get"
    return "submit"


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def live_streams() -> int:
    """hypercorn HTTP streams still referenced (each finished request should have released its)."""
    return sum(isinstance(o, HTTPStream) for o in gc.get_objects())


async def run_client(server: ApiServer, requests: int) -> dict[str, Any]:
    spec = {
        "url": server.url,
        "requests": requests,
        "connections": CONNECTIONS,
        "concurrency": CONCURRENCY,
    }
    command = [sys.executable, str(Path(__file__)), json.dumps(spec)]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    summary: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return summary


async def settled() -> tuple[int, int]:
    """(live streams, resident bytes) once the last connection's streams have been released."""
    await trio.sleep(0.5)
    gc.collect()
    return live_streams(), resident_bytes()


@pytest.mark.soak
async def test_50000_http2_requests_on_long_lived_connections(redis_url: str) -> None:
    hypercorn_fixes.install()
    assert hypercorn_fixes.installed()
    async with api_server(redis_url) as server:
        warm = await run_client(server, WARM_UP)
        assert warm["failures"] == {}
        streams_before, memory_before = await settled()

        with trio.fail_after(TIME_LIMIT):
            summary = await run_client(server, REQUESTS)

        print(
            f"\n{REQUESTS} REST requests over HTTP/2 on {CONNECTIONS} connections x "
            f"{CONCURRENCY} in flight: {summary['seconds']:.1f} s, "
            f"{REQUESTS / summary['seconds']:.0f} requests/s, by kind {summary['by_kind']}, "
            f"failures {summary['failures']}"
        )
        assert summary["failures"] == {}
        assert summary["done"] == REQUESTS
        assert summary["http_versions"] == ["HTTP/2"]

        async with server.client(http2=True) as client:
            stats = await client.get("/api/v1/queues")
        assert stats.status_code == 200
        submitted = warm["by_kind"]["submit"] + summary["by_kind"]["submit"]
        assert stats.json()["by_state"]["pending"] == submitted

        streams_after, memory_after = await settled()
        print(
            f"hypercorn streams alive: {streams_before} -> {streams_after}; resident memory: "
            f"{memory_before / 2**20:.1f} -> {memory_after / 2**20:.1f} MiB"
        )
        assert streams_after == 0
        assert memory_after - memory_before < MEMORY_SLACK


# -- the load generator, run in its own process ----------------------------------------------


def client_main() -> None:
    """Make ``requests`` requests over ``connections`` HTTP/2 connections, ``concurrency`` in
    flight on each; print a JSON summary (requests made, failures by kind, seconds taken).
    With ``seconds`` in the spec, go on until that much time has passed instead (``requests``
    then only spreads the numbering); with ``progress``, print ``{"progress": done}`` each
    time that many more requests are done; with ``token``, send it as a bearer token.

    Each in-flight lane submits tasks and reads back the last task it submitted; a failure is
    any exception or any answer other than the one expected (201 with the task, 200 with the
    same task, 200 with the counts)."""
    spec = json.loads(sys.argv[1])
    failures: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    versions: set[str] = set()
    done = 0

    def fail(kind: str) -> None:
        failures[kind[:200]] = failures.get(kind[:200], 0) + 1

    deadline = time.monotonic() + spec["seconds"] if "seconds" in spec else None
    progress = spec.get("progress")

    async def lane(client: httpx.AsyncClient, numbers: Iterable[int]) -> None:
        nonlocal done
        last_id: str | None = None
        for number in numbers:
            if deadline is not None and time.monotonic() >= deadline:
                return
            kind = kind_of(number)
            if kind == "get" and last_id is None:
                kind = "submit"
            try:
                if kind == "submit":
                    response = await client.post("/api/v1/tasks", json={"type": "soak"})
                    body = response.json()
                    ok = response.status_code == 201 and body["type"] == "soak"
                    last_id = body["id"] if ok else last_id
                elif kind == "get":
                    response = await client.get(f"/api/v1/tasks/{last_id}")
                    ok = response.status_code == 200 and response.json()["id"] == last_id
                else:
                    response = await client.get("/api/v1/queues")
                    ok = response.status_code == 200 and "by_state" in response.json()
            except Exception as exc:
                fail(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            versions.add(response.http_version)
            if not ok:
                fail(f"{kind}: {response.status_code} {response.text}")
                continue
            done += 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if progress and done % progress == 0:
                print(json.dumps({"progress": done}), flush=True)

    async def main() -> None:
        # One connection per client: HTTP/2 multiplexes every lane's requests over it.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"authorization": f"Bearer {spec['token']}"} if "token" in spec else {}
        clients = [
            httpx.AsyncClient(
                base_url=spec["url"],
                http1=False,
                http2=True,
                limits=limits,
                timeout=30.0,
                headers=headers,
            )
            for _ in range(spec["connections"])
        ]
        lanes = spec["connections"] * spec["concurrency"]
        try:
            async with trio.open_nursery() as nursery:
                for i in range(lanes):
                    numbers: Iterable[int] = (
                        itertools.count(i, lanes)
                        if deadline is not None
                        else range(i, spec["requests"], lanes)
                    )
                    nursery.start_soon(lane, clients[i % len(clients)], numbers)
        finally:
            for client in clients:
                await client.aclose()

    started = time.perf_counter()
    trio.run(main)
    elapsed = time.perf_counter() - started
    summary = {
        "done": done,
        "failures": failures,
        "seconds": elapsed,
        "by_kind": by_kind,
        "http_versions": sorted(versions),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    client_main()
