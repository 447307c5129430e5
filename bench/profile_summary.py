"""Where a worker's time went, from a cProfile file: own time grouped by part, per task.

    ./dev python bench/profile_summary.py FILE [--tasks 20000] [--top 12]

``FILE`` is what ``bench/e2e.py --profile FILE`` saved (the Redis-task worker). The groups
are by where the code lives; ``--top`` also lists the functions with the most own time and
the socket calls counted.
"""

from __future__ import annotations

import argparse
import collections
import pstats
from collections.abc import Callable

#: (group, test on (file, function name)), first match wins.
GROUPS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("waiting in epoll (idle, or for Redis)", lambda f, n: "method 'poll'" in n),
    ("socket send/recv calls", lambda f, n: "method 'send'" in n or "method 'recv'" in n),
    ("hiredis pack/parse", lambda f, n: "hiredis" in n),
    ("taskqueue.redis", lambda f, n: "/taskqueue/redis/" in f),
    ("consumer (slots, runner, reports)", lambda f, n: "/taskqueue/daemon/consumer/" in f),
    ("broker (operations, codec)", lambda f, n: "/taskqueue/broker/" in f),
    ("trio (scheduler, cancel scopes, channels)", lambda f, n: "/trio/" in f),
    ("other taskqueue (metrics, logs, the processor)", lambda f, n: "taskqueue" in f),
    ("the rest (start-up imports, stdlib, attrs)", lambda f, n: True),
]

SOCKET_CALLS = {
    "<method 'send' of '_socket.socket' objects>": "socket.send",
    "<method 'recv' of '_socket.socket' objects>": "socket.recv",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    stats = pstats.Stats(args.file)
    entries = stats.stats  # type: ignore[attr-defined]
    own: collections.Counter[str] = collections.Counter()
    for (file, _line, name), (_cc, _calls, tottime, _cum, _callers) in entries.items():
        own[next(group for group, test in GROUPS if test(file, name))] += tottime
    total = sum(own.values())
    print(f"{total:.2f} s profiled, {total / args.tasks * 1e6:.0f} us per task")
    for group, _ in GROUPS:
        seconds = own[group]
        share = seconds / total * 100
        per_task = seconds / args.tasks * 1e6
        print(f"  {seconds:6.2f} s  {share:4.1f}%  {per_task:6.1f} us/task  {group}")
    for (_file, _line, name), (_cc, calls, *_rest) in entries.items():
        if name in (
            "<method 'send' of '_socket.socket' objects>",
            "<method 'recv' of '_socket.socket' objects>",
        ):
            print(f"  {calls:>8,} calls of socket.{name.split(chr(39))[1]}")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
