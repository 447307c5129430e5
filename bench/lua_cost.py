"""What the shared Lua costs a script call in Redis, whole and linked (lua_link.py).

    ./dev python bench/lua_cost.py [--calls 2000] [--rounds 8] [--redis-url URL]
    ./dev python bench/lua_cost.py --enqueue [--calls 800] [--rounds 3]

Redis runs a script's whole text on every call, so the key prelude and ``_lib.lua`` cost each
call whatever the script does. This measures, from Redis's own ``INFO commandstats`` (the time
inside the server, not the round trip): ``return 1`` bare and after the whole shared text; and
claim.lua on an empty queue with the whole shared text prepended against the linked script the
broker runs. Rounds take turns (ABBA); medians are printed.

``--enqueue`` says where a one-task submit's time in Redis goes: enqueue.lua as the broker
runs it, and cut short (``return 1``) after its shared definitions, after reading the
policies, and before its per-task loop, each run with the arguments of real submits (fresh
task ids) and taking turns round by round.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from importlib import resources

import trio
from bare_redis import trio_replay
from submit import enqueue_commands

from taskqueue.broker.keys import lua_prelude
from taskqueue.broker.lua_link import link, parse_definitions
from taskqueue.broker.scripts import load_scripts
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis

KEYS = ("{bench}:", "{bench}:fence")
Arg = str | bytes | int | float


async def usec_per_call(redis: Redis, sha: str, args: tuple[Arg, ...], calls: int) -> float:
    await redis.execute("CONFIG", "RESETSTAT")
    for _ in range(calls):
        await redis.execute("EVALSHA", sha, len(KEYS), *KEYS, *args)
    return await evalsha_usec(redis)


async def run(url: str, calls: int, rounds: int) -> None:
    folder = resources.files("taskqueue.broker") / "lua"
    shared = lua_prelude() + (folder / "_lib.lua").read_text()
    claim = (folder / "claim.lua").read_text()
    pairs: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[Arg, ...]]] = {
        "return 1": (("bare", "return 1"), ("whole shared text", shared + "return 1"), ()),
        "claim.lua, empty queue": (
            ("linked", link(parse_definitions(shared), claim)),
            ("whole shared text", shared + claim),
            (1_000_000, "w1", 1_030_000, 100, 1, "", "noop"),
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


#: Where ``--enqueue`` cuts enqueue.lua short: the first line of each stage it leaves out.
ENQUEUE_CUTS = {
    "shared definitions only": "local now = tonumber(ARGV[1])",
    "+ policies read": "local max_types = ",
    "+ admission checks": "local result = {}",
}


async def enqueue_stages(url: str, calls: int, rounds: int) -> None:
    whole = load_scripts().enqueue
    own = (resources.files("taskqueue.broker") / "lua" / "enqueue.lua").read_text()
    assert whole.source.endswith(own), "the linker puts the definitions first"
    shared = whole.source[: -len(own)]
    sources = {"return 1, bare": "return 1"}
    for name, marker in ENQUEUE_CUTS.items():
        assert own.count(marker) == 1, f"enqueue.lua no longer has one {marker!r}"
        sources[name] = shared + own[: own.index(marker)] + "return 1\n"
    sources["enqueue.lua, whole"] = whole.source
    commands = iter(await enqueue_commands(url, calls * rounds * len(sources)))
    redis = Redis.from_url(url)
    try:
        shas = {name: await redis.execute("SCRIPT", "LOAD", src) for name, src in sources.items()}
        seen: dict[str, list[float]] = {name: [] for name in shas}
        inner: list[float] = []
        for n in range(rounds):
            for name in list(shas) if n % 2 == 0 else reversed(list(shas)):
                batch = [
                    next(commands).replace(whole.sha.encode(), shas[name].encode())
                    for _ in range(calls)
                ]
                await redis.execute("CONFIG", "RESETSTAT")
                await trio_replay(url, batch)
                seen[name].append(await evalsha_usec(redis))
                if name == "enqueue.lua, whole":
                    inner.append(await script_commands_usec(redis) / calls)
        for name, figures in seen.items():
            print(
                f"{name:<26} {statistics.median(figures):5.1f} us  (Redis time per call, "
                f"median of {rounds} rounds of {calls} one-task submits)"
            )
        print(
            f"  of which its Redis commands {statistics.median(inner):.1f} us "
            "(INFO commandstats counts a script's own calls)"
        )
    finally:
        await redis.aclose()


async def evalsha_usec(redis: Redis) -> float:
    info: str = await redis.execute("INFO", "commandstats")
    line = next(line for line in info.splitlines() if line.startswith("cmdstat_evalsha:"))
    return float(line.split("usec_per_call=")[1].split(",")[0])


async def script_commands_usec(redis: Redis) -> float:
    """The Redis time of every command but the script calls themselves (and CONFIG)."""
    info: str = await redis.execute("INFO", "commandstats")
    total = 0.0
    for line in info.splitlines():
        name = line.partition(":")[0]
        if name.startswith("cmdstat_") and not name.startswith(("cmdstat_eval", "cmdstat_config")):
            total += float(line.split("usec=")[1].split(",")[0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--enqueue", action="store_true", help="enqueue.lua's time by stage")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        if args.enqueue:
            trio.run(enqueue_stages, url, args.calls or 800, args.rounds or 3)
        else:
            trio.run(run, url, args.calls or 2000, args.rounds or 8)


if __name__ == "__main__":
    main()
