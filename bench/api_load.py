"""What one API process serves when the client costs next to nothing: REST submits driven by
wrk (HTTP/1.1) and h2load (HTTP/2), C load generators, with the server's CPU per request.

    ./dev python bench/api_load.py [--seconds 5] [--concurrency 16] [--rounds 3]

``bench/api.py`` drives the server from Python (httpx, grpclib) in a process beside it; on a
2-core machine that client takes as much CPU as the server, so its rates are the pair's. Here
the clients are wrk and h2load (``apt-get install wrk nghttp2-client``; h2load's HTTP/1.1
parser refuses hypercorn's empty reason phrase, so HTTP/1.1 is wrk's), whose cost per request
is a few microseconds, so the rate is the server's: one ``taskqueue server`` process (API only, no
consumer) on its own core, with Redis on the other. Modes: HTTP/1.1 with one connection per
request in flight, and HTTP/2 (cleartext) with all of them on one connection; each request
submits one task (``POST /api/v1/tasks``) and must be answered 201. Each figure is the median
of ``--rounds`` runs of ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis
from api import api_server
from api_cpu import cpu_seconds

from taskqueue.embedded import EmbeddedRedis

BODY = '{"type": "bench"}'
HEADERS = {"content-type": "application/json"}
WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
_WRK_DONE = re.compile(r"(\d+) requests in ([\d.]+)s")
_H2LOAD_DONE = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded")
_H2LOAD_TIME = re.compile(r"finished in ([\d.]+)(m?s)")


def wrk(url: str, script: Path, seconds: float, concurrency: int) -> tuple[int, float]:
    """(requests answered, seconds) of one wrk run over HTTP/1.1; raises on any non-2xx."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(script)]
    output = _run([*command, f"{url}/api/v1/tasks"])
    done = _WRK_DONE.search(output)
    if done is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk did not succeed:\n{output}")
    return int(done[1]), float(done[2])


def h2load(url: str, body: Path, requests: int, concurrency: int) -> tuple[int, float]:
    """(requests answered, seconds) of one h2load run over HTTP/2 (cleartext, one connection)."""
    command = ["h2load", "-n", str(requests), "-c", "1", "-m", str(concurrency), "-d", str(body)]
    output = _run([*command, "-H", "content-type: application/json", f"{url}/api/v1/tasks"])
    done, took = _H2LOAD_DONE.search(output), _H2LOAD_TIME.search(output)
    if done is None or took is None or f"{requests} 2xx" not in output:
        raise RuntimeError(f"h2load did not succeed:\n{output}")
    return int(done[1]), float(took[1]) / (1000 if took[2] == "ms" else 1)


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install wrk nghttp2-client)")
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        url, pid = stack.enter_context(api_server(redis_url))
        control = redis.Redis.from_url(redis_url)
        stack.callback(control.close)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (folder / "body.json").write_text(BODY)
        (folder / "post.lua").write_text(WRK_SCRIPT)
        # HTTP/2 runs as many requests as HTTP/1.1 answered in its first run (h2load counts).
        count = 0

        def http1() -> tuple[int, float]:
            return wrk(url, folder / "post.lua", args.seconds, args.concurrency)

        def http2() -> tuple[int, float]:
            return h2load(url, folder / "body.json", count, args.concurrency)

        wrk(url, folder / "post.lua", 1, args.concurrency)  # warm up: open the connections
        for name, run in (("rest http/1.1 single", http1), ("rest http/2 single", http2)):
            rates, costs = [], []
            for _ in range(args.rounds):
                control.flushdb()
                before = cpu_seconds(pid)
                requests, seconds = run()
                costs.append((cpu_seconds(pid) - before) / requests)
                rates.append(requests / seconds)
                count = count or requests
            rate, cost = statistics.median(rates), statistics.median(costs) * 1e6
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            print(
                f"{name:<24}{rate:>8,.0f} tasks/s  (requests/s, one task each: median of "
                f"{args.rounds} runs, {args.concurrency} in flight; runs: {runs})\n"
                f"{name + ' cpu':<24}{cost:>8,.0f} µs/task  (the server's CPU a request)",
                flush=True,
            )


if __name__ == "__main__":
    main()
