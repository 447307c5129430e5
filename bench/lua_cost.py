"""What the shared Lua costs a script call in Redis, whole and linked (lua_link.py).

    ./dev python bench/lua_cost.py [--calls 2000] [--rounds 8] [--redis-url URL]

Redis runs a script's whole text on every call, so the key prelude and ``_lib.lua`` cost each
call whatever the script does. This measures, from Redis's own ``INFO commandstats`` (the time
inside the server, not the round trip): ``return 1`` bare and after the whole shared text; and
claim.lua on an empty queue with the whole shared text prepended against the linked script the
broker runs. Rounds take turns (ABBA); medians are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from importlib import resources

import trio

from taskqueue.broker.keys import lua_prelude
from taskqueue.broker.lua_link import link, parse_definitions
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis

KEYS = ("{bench}:", "{bench}:fence")
Arg = str | bytes | int | float


async def usec_per_call(redis: Redis, sha: str, args: tuple[Arg, ...], calls: int) -> float:
    await redis.execute("CONFIG", "RESETSTAT")
    for _ in range(calls):
        await redis.execute("EVALSHA", sha, len(KEYS), *KEYS, *args)
    info: str = await redis.execute("INFO", "commandstats")
    line = next(line for line in info.splitlines() if line.startswith("cmdstat_evalsha:"))
    return float(line.split("usec_per_call=")[1].split(",")[0])


async def run(url: str, calls: int, rounds: int) -> None:
    folder = resources.files("taskqueue.broker") / "lua"
    shared = lua_prelude() + (folder / "_lib.lua").read_text()
    claim = (folder / "claim.lua").read_text()
    pairs: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[Arg, ...]]] = {
        "return 1": (("bare", "return 1"), ("whole shared text", shared + "return 1"), ()),
        "claim.lua, empty queue": (
            ("linked", link(parse_definitions(shared), claim)),
            ("whole shared text", shared + claim),
            (1_000_000, "w1", 1_030_000, 100, 1, "noop"),
        ),
    }
    redis = Redis.from_url(url)
    try:
        await redis.execute("FLUSHALL")
        for title, (first, second, args) in pairs.items():
            shas = {
                name: await redis.execute("SCRIPT", "LOAD", src) for name, src in (first, second)
            }
            seen: dict[str, list[float]] = {name: [] for name in shas}
            for n in range(rounds):
                order = list(shas) if n % 2 == 0 else list(reversed(shas))
                for name in order:
                    seen[name].append(await usec_per_call(redis, shas[name], args, calls))
            figures = ", ".join(f"{name} {statistics.median(v):.1f} us" for name, v in seen.items())
            print(f"{title:<24} {figures}  (Redis time per call, median of {rounds} rounds)")
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(run, url, args.calls, args.rounds)


if __name__ == "__main__":
    main()
