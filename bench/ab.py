"""Before/after: run one benchmark from an earlier revision and from this tree, taking turns.

    ./dev python bench/ab.py --base REV [--runs 8] -- bench/broker.py --tasks 100000 --lanes 1

A single run of a benchmark on a shared 2-core machine moves by ±20%, more than most changes
worth measuring; taking turns on one Redis (order ABBA, so a drift of the machine hits both
sides alike) and comparing medians of many runs leaves a difference of a few percent visible.

The earlier revision's ``taskqueue/`` and ``bench/`` are exported with ``git archive`` into a
temporary directory that goes first on ``PYTHONPATH``, so its benchmark runs its own code.  Both
sides get ``--redis-url`` of one private redis-server, emptied (FLUSHALL) before every run.
Every line a benchmark prints as ``LABEL   N tasks/s`` (or ``N submits/s``; or ``N µs/task``
or ``N µs server CPU a request``, a cost; or ``p50 X ms, p99 Y ms``, a latency's two
percentiles) is a figure; the report gives each figure's median per side and the ratio
after/before.

``--bench-from-here`` runs this tree's benchmark script on both sides, with only the package
from the earlier revision: for a benchmark newer than that revision. The benchmark's own child
processes (a ``taskqueue server`` it starts) inherit ``PYTHONPATH`` and the working directory
(that side's export), so they run that side's package too.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from io import BytesIO
from pathlib import Path

import trio

from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(
    r"^(?P<label>\S.*?)\s{2,}(?P<rate>[\d,]+)"
    r" (?P<unit>tasks/s|submits/s|µs/task|µs server CPU a request)"
)
LATENCY = re.compile(r"^(?P<label>\S.*?)\s{2,}p50 (?P<p50>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms")

Figures = dict[str, list[float]]


def export(revision: str, into: Path) -> None:
    """Write ``revision``'s ``taskqueue/`` and ``bench/`` under ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "taskqueue", "bench"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def flushall(url: str) -> None:
    async def flush() -> None:
        redis = Redis.from_url(url)
        try:
            await redis.execute("FLUSHALL")
        finally:
            await redis.aclose()

    trio.run(flush)


def run_once(code: Path, argv: list[str], url: str, bench: Path) -> dict[str, float]:
    """One run of the benchmark under ``bench`` with the package from ``code``; its figures by
    label (a cost's label ends in its unit)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = bench / argv[0]
    done = subprocess.run(
        [sys.executable, str(script), *argv[1:], "--redis-url", url],
        cwd=code,  # where `python -m taskqueue` in a child process finds its package first
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if match := FIGURE.match(line):
            label = match["label"] if match["unit"].endswith("/s") else f"{match['label']} µs/task"
            figures[label] = float(match["rate"].replace(",", ""))
        elif match := LATENCY.match(line):
            figures[f"{match['label']} p50 ms"] = float(match["p50"])
            figures[f"{match['label']} p99 ms"] = float(match["p99"])
    if not figures:
        raise SystemExit(f"{argv[0]} printed no 'N tasks/s' figure:\n{done.stdout}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the earlier revision (any git rev)")
    parser.add_argument("--runs", type=int, default=8, help="runs of each side")
    parser.add_argument(
        "--bench-from-here",
        action="store_true",
        help="run this tree's benchmark on both sides (one newer than the base revision)",
    )
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    args = parser.parse_args()
    argv = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if not argv:
        parser.error("name the benchmark after --, e.g. -- bench/broker.py --tasks 100000")
    sides: dict[str, Figures] = {"before": defaultdict(list), "after": defaultdict(list)}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(persistent=False) as redis:
        base = Path(tmp)
        export(args.base, base)
        code = {"before": base, "after": ROOT}
        for run in range(args.runs):
            order = ("before", "after") if run % 2 == 0 else ("after", "before")
            for side in order:
                flushall(redis.url)
                bench = ROOT if args.bench_from_here else code[side]
                for label, rate in run_once(code[side], argv, redis.url, bench).items():
                    sides[side][label].append(rate)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"{' '.join(argv)}: median of {args.runs} runs each, taking turns")
    print(f"{'':<24}{'before (' + args.base + ')':>22}{'after':>12}{'ratio':>8}")
    for label, before in sides["before"].items():
        after = sides["after"].get(label, [])
        if not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        if label.endswith(" ms"):
            print(f"{label[:-3]:<24}{b:>18.2f} ms{a:>10.2f} ms{a / b:>8.3f}")
            continue
        unit = "µs" if label.endswith("µs/task") else "/s"
        print(f"{label:<24}{b:>18,.0f} {unit}{a:>10,.0f} {unit}{a / b:>8.3f}")


if __name__ == "__main__":
    main()
