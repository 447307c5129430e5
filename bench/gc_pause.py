"""What one full garbage collection costs a daemon process, before and after its start-up
heap is frozen (``gc.freeze``, as ``taskqueue worker``/``server``/``run`` do before serving).

    ./dev python bench/gc_pause.py [--rounds 5]

Imports what a server process holds once started (the CLI, the installed plugins, the API
service with hypercorn and the gRPC stubs), then times ``gc.collect()``: every running task
of the process waits that long whenever the collector runs a full collection.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from taskqueue.cli import daemon
from taskqueue.processors import load_plugins


def collect_ms(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_plugins()
    daemon._api_service()
    objects = len(gc.get_objects())
    before = collect_ms(args.rounds)
    gc.freeze()
    after = collect_ms(args.rounds)
    print(
        f"full collection   {before:.2f} ms before the freeze, {after * 1000:.1f} us after  "
        f"({objects:,} objects tracked at start-up; median of {args.rounds})"
    )


if __name__ == "__main__":
    main()
