"""End to end through a real worker process: throughput, latency, Redis- and HTTP-calling tasks.

    ./dev python bench/e2e.py [--tasks 20000] [--latency-tasks 500] [--redis-url URL]
                              [--only noop,latency,redis,http] [--profile FILE]
                              [--http-profile FILE] [--worker-code DIR]

``--only`` runs just the sections named (latency then starts an idle worker of its own).

1. Throughput: ``--tasks`` no-op tasks are queued, then one ``taskqueue worker`` process (default
   concurrency) runs them; tasks/s is measured from the first task's start to the last one's
   completion (from the task records), and also from the process's start; beside them the
   worker's own CPU time per task, which the machine's load hardly changes (a worker with a
   core to itself runs about 1 / that many tasks a second).
2. Latency: with that worker idle, ``--latency-tasks`` ``clock`` tasks are submitted one at a
   time at about 100/s; submit-to-start latency is the worker's clock at the start of the task
   minus the producer's clock just before the submit (same machine, same clock). Beside it
   the ceilings of bench/pickup_ceiling.py: bare processes handing messages over through
   Redis the same way, with no queue around them.
3. Redis-calling tasks: ``--tasks`` tasks of type ``bench.redis_script`` are queued and a fresh
   worker process (this file is its ``--processors`` module) runs them; each awaits one small
   Lua script (``EVALSHA``, an ``INCR``) through ``ctx.redis``. Beside it, two ceilings:
   redis-benchmark running the same ``EVALSHA`` pipelined 50 deep on one connection (Redis's
   own limit), and 50 trio tasks in this process calling the script through the same client
   with no queue around it (the client's limit). ``--profile FILE`` runs that worker under
   cProfile and saves its profile to ``FILE`` (docs/performance.md reads one).
4. HTTP-calling tasks: ``--tasks`` ``http.request`` tasks (the bundled plugin, plugins/http),
   each a ``GET`` to bench/http_target.py, a bare asyncio server started as a process of its
   own on 127.0.0.1 (a config file with ``[plugins.http] allowed_networks`` lets the worker
   reach loopback), run by a fresh worker process; tasks/s, worker CPU per task and the
   server's CPU per request. Beside it the ceiling, with the worker stopped: 50 trio tasks in
   this process sending the same GETs through httpx with no queue, each with a client of its
   own kept alive; then through one shared client (httpcore's pool scans its connections for
   every queued request, so it is slower) and with a new client per request, as
   ``http.request`` makes one per task. ``--http-profile FILE`` profiles that worker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping

import attrs
import httpx
import pickup_ceiling
import trio

from taskqueue.broker import Broker, Submission
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.redis import Redis, RedisAddress, Script

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REDIS_TASK = "bench.redis_script"
HTTP_TASK = "http.request"  # the bundled plugin plugins/http
COUNTER_KEY = "bench:redis_script:calls"  # the processor's own key, outside taskqueue's {ns}
COUNT_SCRIPT = Script("bench_count", "return redis.call('INCR', KEYS[1])")
#: The consumer's default concurrency, and so the commands in flight at once.
CONCURRENCY = 50


async def redis_script(ctx: TaskContext) -> None:
    """Runs one small Lua script through the worker's Redis client and returns."""
    await ctx.redis.run_script(COUNT_SCRIPT, [COUNTER_KEY], [])


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add(REDIS_TASK, redis_script)


#: What ``--only`` can choose from, in the order they run.
SECTIONS = ("noop", "latency", "redis", "http")

#: ``--worker-code``: the worker runs the taskqueue package found there instead.
WORKER_CODE: str | None = None


def start_worker(
    url: str, *args: str, profile: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A ``taskqueue worker`` on ``url``; ``env`` adds variables (settings) of its own."""
    variables = {
        **os.environ,
        "TASKQUEUE_REDIS__URL": url,
        "TASKQUEUE_LOGGING__LEVEL": "warning",
        **(env or {}),
    }
    if WORKER_CODE is not None:
        # Another revision's package: the installed plugins may not fit its plugin API.
        variables.update(PYTHONPATH=WORKER_CODE, TASKQUEUE_WORKER__SKIP_BROKEN_PLUGINS="true")
        variables["TASKQUEUE_LOGGING__LEVEL"] = "critical"
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    return subprocess.Popen(
        [*python, "-m", "taskqueue", "worker", *args], env=variables, cwd=BENCH_DIR
    )


async def wait_for(broker: Broker, state: TaskState, count: int, poll: float = 0.05) -> None:
    while (await broker.stats()).by_state[state] < count:  # noqa: ASYNC110 - another process works
        await trio.sleep(poll)


@attrs.frozen
class Run:
    """What one worker did with the tasks queued for it."""

    worker: subprocess.Popen[bytes]
    #: Tasks/s from the first task's start to the last one's completion (task records).
    rate: float
    #: Tasks/s from the worker's spawn.
    with_start: float
    #: The worker's own CPU time (user + system) per task, from the first completion seen to
    #: the last: what it would reach with a core to itself is about 1 / this.
    cpu_per_task: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(
    broker: Broker,
    url: str,
    tasks: int,
    task_type: str = "noop",
    *worker_args: str,
    payload: object = None,
    profile: str | None = None,
    poll: float = 0.05,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Queue ``tasks`` of ``task_type`` (each with ``payload``), start a worker, wait for them
    all to succeed."""
    ids: list[str] = []
    for i in range(0, tasks, 1000):
        chunk = [Submission(type=task_type, payload=payload) for _ in range(min(1000, tasks - i))]
        ids += [s.id for s in await broker.enqueue_many(chunk)]
    already = (await broker.stats()).by_state[TaskState.SUCCEEDED]
    dead = (await broker.stats()).by_state[TaskState.DEAD]
    began = time.time()
    worker = start_worker(url, *worker_args, profile=profile, env=env)
    first: tuple[int, float] | None = None  # (tasks done, worker CPU) when they began
    try:
        while True:
            by_state = (await broker.stats()).by_state
            if (done := by_state[TaskState.SUCCEEDED] - already) >= tasks:
                break
            if by_state[TaskState.SCHEDULED] or by_state[TaskState.DEAD] > dead:
                failed = [t for t in await broker.get_many(ids[:1000]) if t and t.error]
                raise RuntimeError(f"{task_type} tasks failed: {failed[0].error if failed else ''}")
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.returncode}")
            if first is None and done > 0:
                first = (done, cpu_seconds(worker.pid))
            await trio.sleep(poll)
    except BaseException:
        worker.terminate()
        worker.wait(30)
        raise
    cpu = cpu_seconds(worker.pid)
    ended = time.time()
    first = first or (0, cpu)
    records = []
    for i in range(0, len(ids), 1000):
        records += await broker.get_many(ids[i : i + 1000])
    first_start = min(t.started_ms or 0 for t in records if t) / 1000
    last_finish = max(t.finished_ms or 0 for t in records if t) / 1000
    return Run(
        worker=worker,
        rate=tasks / (last_finish - first_start),
        with_start=tasks / (ended - began),
        cpu_per_task=(cpu - first[1]) / max(1, tasks - first[0]),
    )


async def noop_throughput(broker: Broker, url: str, tasks: int) -> subprocess.Popen[bytes]:
    run = await throughput(broker, url, tasks)
    print(
        f"throughput  {run.rate:>9,.0f} tasks/s  "
        f"({tasks} noop tasks, one worker process, first start to last completion; "
        f"{run.with_start:,.0f}/s counting the process start-up; "
        f"worker CPU {run.cpu_per_task * 1e6:.0f} us/task)"
    )
    return run.worker


async def redis_task_throughput(
    broker: Broker, url: str, tasks: int, profile: str | None = None
) -> None:
    await broker.redis.execute("DEL", COUNTER_KEY)
    run = await throughput(broker, url, tasks, REDIS_TASK, "--processors", "e2e", profile=profile)
    try:
        calls = int(await broker.redis.execute("GET", COUNTER_KEY))
        assert calls == tasks, f"{calls} script calls for {tasks} tasks"
        cpu_before = time.process_time()
        loop = await bare_loop(broker.redis, tasks)
        loop_cpu = (time.process_time() - cpu_before) / tasks
        benchmark = redis_benchmark(broker.redis.address)
        print(
            f"redis task  {run.rate:>9,.0f} tasks/s  ({tasks} tasks each awaiting one EVALSHA "
            f"through ctx.redis, one worker process, concurrency {CONCURRENCY}; "
            f"{run.with_start:,.0f}/s counting the process start-up; "
            f"worker CPU {run.cpu_per_task * 1e6:.0f} us/task)"
        )
        print(
            f"  ceilings  {loop:>9,.0f} calls/s  (the same script from {CONCURRENCY} trio tasks "
            f"through taskqueue.redis, no queue; CPU {loop_cpu * 1e6:.0f} us/call);  {benchmark}"
        )
    finally:
        run.worker.terminate()
        run.worker.wait(30)


async def bare_loop(redis: Redis, calls: int) -> float:
    """Script calls per second from ``CONCURRENCY`` trio tasks sharing one client."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await redis.run_script(COUNT_SCRIPT, [COUNTER_KEY], [])

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(caller)
    return calls / (time.perf_counter() - start)


def redis_benchmark(address: RedisAddress, requests: int = 500_000) -> str:
    """What redis-benchmark makes of the same ``EVALSHA``, ``CONCURRENCY`` deep on one
    connection (the script is loaded: the bare loop ran it)."""
    where = ["-s", address.path] if address.path else ["-h", address.host, "-p", str(address.port)]
    command = ["redis-benchmark", *where, "-c", "1", "-P", str(CONCURRENCY), "-n", str(requests)]
    command += ["-q", "EVALSHA", COUNT_SCRIPT.sha, "1", COUNTER_KEY]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    except FileNotFoundError:
        return "redis-benchmark: not installed"
    rate = float(output.rsplit(":", 1)[-1].split()[0])
    return f"{rate:,.0f} calls/s (redis-benchmark, the same EVALSHA, -c 1 -P {CONCURRENCY})"


@contextlib.contextmanager
def http_target() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """bench/http_target.py in a process of its own, and the URL it answers on."""
    command = [sys.executable, os.path.join(BENCH_DIR, "http_target.py"), "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield server, f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(30)


def http_config(directory: str) -> str:
    """A config file letting http.request reach 127.0.0.1 (it refuses loopback by default)."""
    path = os.path.join(directory, "taskqueue.toml")
    with open(path, "w") as file:
        file.write('[plugins.http]\nallowed_networks = ["127.0.0.1/32"]\n')
    return path


async def http_task_throughput(
    broker: Broker, url: str, tasks: int, profile: str | None = None
) -> None:
    with tempfile.TemporaryDirectory() as scratch, http_target() as (server, target):
        config = http_config(scratch)
        payload = {"url": target, "method": "GET"}
        server_cpu = cpu_seconds(server.pid)
        run = await throughput(
            broker, url, tasks, HTTP_TASK, "--config", config, payload=payload, profile=profile
        )
        run.worker.terminate()  # before the loop, so that it has the cores to itself
        run.worker.wait(30)
        server_cpu = (cpu_seconds(server.pid) - server_cpu) / tasks
        loops = {scope: await httpx_loop(target, tasks, scope) for scope in CLIENT_SCOPES}
    print(
        f"http task   {run.rate:>9,.0f} tasks/s  ({tasks} http.request tasks, each a GET to a "
        f"local server, one worker process, concurrency {CONCURRENCY}; "
        f"{run.with_start:,.0f}/s counting the process start-up; "
        f"worker CPU {run.cpu_per_task * 1e6:.0f} us/task; "
        f"server CPU {server_cpu * 1e6:.0f} us/request)"
    )
    best, cpu = loops["per trio task"]
    others = ";  ".join(
        f"{rate:,.0f}/s with a client {scope} (CPU {cpu * 1e6:.0f} us/request)"
        for scope, (rate, cpu) in loops.items()
        if scope != "per trio task"
    )
    print(
        f"  httpx loop{best:>9,.0f} requests/s  (the same GETs from {CONCURRENCY} trio tasks, "
        f"an httpx.AsyncClient each, kept alive, no queue; CPU {cpu * 1e6:.0f} us/request);  "
        f"{others}"
    )


#: How the bare loop's trio tasks use httpx: one client for all of them, one client each, or a
#: new client for every request (what http.request does: a pool per task).
CLIENT_SCOPES = ("shared", "per trio task", "per request")


async def httpx_loop(url: str, requests: int, scope: str) -> tuple[float, float]:
    """GETs per second from ``CONCURRENCY`` trio tasks through httpx clients of ``scope``
    (:data:`CLIENT_SCOPES`), and this process's CPU seconds per request."""
    left = requests
    tls = httpx.create_ssl_context()  # shared, as http.request shares its own
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def getter(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if scope == "per request":
                async with httpx.AsyncClient(verify=tls, trust_env=False) as own:
                    (await own.get(url)).raise_for_status()
            else:
                (await client.get(url)).raise_for_status()

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(verify=tls, limits=limits, trust_env=False)
            )
            for _ in range(CONCURRENCY if scope == "per trio task" else 1)
        ]
        cpu = time.process_time()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(CONCURRENCY):
                nursery.start_soon(getter, clients[i % len(clients)])
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return requests / elapsed, cpu / requests


async def latency(broker: Broker, count: int, already_done: int, worker_pid: int) -> None:
    await trio.sleep(0.5)  # let the worker go idle: waiting on its wake-up, not claiming
    submitted: dict[str, float] = {}
    cpu = cpu_seconds(worker_pid)
    for _ in range(count):
        at = time.time()
        submitted[(await broker.enqueue(Submission(type="clock"))).id] = at
        await trio.sleep(0.01)
    await wait_for(broker, TaskState.SUCCEEDED, already_done + len(submitted))
    cpu = cpu_seconds(worker_pid) - cpu
    records = await broker.get_many(list(submitted))
    waits = sorted((t.result["started"] - submitted[t.id]) * 1000 for t in records if t is not None)
    p50 = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, round(len(waits) * 0.99))]
    print(
        f"latency     p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {waits[-1]:.2f} ms  "
        f"(submit to start, {count} tasks one at a time at ~100/s to an idle worker)"
    )
    print(
        f"pickup cost    {cpu / count * 1e6:,.0f} µs/task  (the worker's CPU per task of the "
        "latency run: its wake-up, claim, run and report, and its upkeep meanwhile)"
    )


async def run(
    url: str,
    tasks: int,
    latency_tasks: int,
    only: frozenset[str],
    profile: str | None,
    http_profile: str | None,
) -> None:
    redis = Redis.from_url(url)
    await redis.execute("FLUSHDB")
    broker = Broker(redis)
    try:
        if "noop" in only:
            worker = await noop_throughput(broker, url, tasks)
            done = tasks
        elif "latency" in only:  # a worker of its own, started and idle
            worker = start_worker(url)
            await broker.enqueue(Submission(type="clock"))
            await wait_for(broker, TaskState.SUCCEEDED, done := 1)
        if "latency" in only:
            try:
                await latency(broker, latency_tasks, already_done=done, worker_pid=worker.pid)
            finally:
                worker.terminate()
                worker.wait(30)
            print(await pickup_ceiling.ceilings(url, latency_tasks))
        elif "noop" in only:
            worker.terminate()
            worker.wait(30)
        if WORKER_CODE is None:  # an older worker may have no ctx.redis, nor fit the plugin
            if "redis" in only:
                await redis_task_throughput(broker, url, tasks, profile)
            if "http" in only:
                await http_task_throughput(broker, url, tasks, http_profile)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--latency-tasks", type=int, default=500)
    parser.add_argument("--redis-url")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"the sections to run, comma-separated, of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--profile", help="save a cProfile of the Redis-task worker here")
    parser.add_argument("--http-profile", help="save a cProfile of the HTTP-task worker here")
    parser.add_argument(
        "--worker-code",
        help="run the worker from the taskqueue package in this directory (another revision,"
        " e.g. from `git archive REV taskqueue | tar -x -C DIR`), for before/after runs on the"
        " same machine state; only the no-op throughput and latency then",
    )
    args = parser.parse_args()
    only = frozenset(args.only.split(","))
    if not only <= set(SECTIONS):
        parser.error(f"--only: unknown section {sorted(only - set(SECTIONS))[0]!r}")
    global WORKER_CODE
    WORKER_CODE = args.worker_code
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(run, url, args.tasks, args.latency_tasks, only, args.profile, args.http_profile)


if __name__ == "__main__":
    main()
