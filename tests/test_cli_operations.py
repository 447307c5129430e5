"""The real ``taskqueue`` command against a live worker: workers, queues/stats (also
``--watch``), the dead-letter queue, bench, and how output looks on a terminal.

One ``taskqueue worker`` serves the whole module. Dead tasks come from the built-in ``fail``
type and from ``shell.run``, which refuses every command until an operator allows one.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest
from cli_helpers import TASKQUEUE, Daemon, Result, start_daemon, wait_until

from taskqueue.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def daemon(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    # The common settings as flags: they win over the environment (worker.concurrency is 50).
    flags = ("--worker-id", "cli-ops-worker", "--concurrency", "7", "--log-level", "warning")
    with start_daemon(
        redis_server.url, "cli-ops", tmp_path_factory.mktemp("cli"), *flags
    ) as daemon:
        yield daemon


def make_dead(daemon: Daemon, task_type: str, payload: object) -> str:
    """A task of ``task_type`` that the worker ran once and dead-lettered; its id."""
    done = daemon.run(
        "submit", task_type, "--payload", json.dumps(payload), "--max-retries", "0", "--wait"
    )
    assert done.code == 1, done
    return done.out.splitlines()[0]


def dead_ids(daemon: Daemon) -> set[str]:
    return {t["id"] for t in daemon.run("dlq", "list", "--json").json()}


# -- workers, queues --------------------------------------------------------------------------


def test_workers_lists_the_live_worker(daemon: Daemon) -> None:
    assert daemon.worker_ids() == ["cli-ops-worker"]
    table = daemon.run("workers")
    assert table.code == 0, table
    header, row = table.out.splitlines()
    assert header.split() == [
        "ID", "HOST", "PID", "BUSY", "PROCESSED", "FAILED", "UP", "LAST", "BEAT", "TYPES"
    ]  # fmt: skip
    assert row.split()[0] == "cli-ops-worker"
    assert row.split()[3] == "0/7"
    assert "echo" in row.split()[-1].split(",")

    (worker,) = daemon.run("workers", "--json").json()
    assert (worker["id"], worker["concurrency"]) == ("cli-ops-worker", 7)
    assert worker["pid"] == daemon.process.pid
    assert "shell.run" in worker["task_types"]


def test_queues_and_stats_count_tasks_by_state_and_type(daemon: Daemon) -> None:
    before = daemon.run("stats", "--json").json()
    daemon.run("submit", "queued.only", "--count", "3")
    daemon.run("submit", "echo", "--wait")

    after = daemon.run("queues", "--json").json()
    assert after["by_type"]["queued.only"] == {"pending": 3}
    assert after["by_state"]["pending"] == before["by_state"]["pending"] + 3
    assert after["by_state"]["succeeded"] == before["by_state"]["succeeded"] + 1
    assert after["totals"]["submitted"] == before["totals"].get("submitted", 0) + 4

    plain = daemon.run("stats").out
    blocks = plain.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "# tasks by state",
        "# live tasks by type",
        "# lifetime totals",
        "# task types no live worker serves",
        "# queue policy (* = every type; live wins over config until unset)",
    ]
    assert "queued.only        3          0       0     0" in blocks[1]


def watch(daemon: Daemon, *args: str, snapshots: int) -> tuple[list[str], Result]:
    """Run a ``--watch`` command until it has printed ``snapshots`` lines starting a snapshot,
    then press Ctrl-C; its lines and how it ended."""
    process = subprocess.Popen(
        [TASKQUEUE, *args, "--watch", "--interval", "50ms"],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while sum(line.startswith(("{", "[", "# ")) for line in lines) < snapshots:
            line = process.stdout.readline()
            assert line, f"the watch ended early: {lines}"
            lines.append(line.rstrip("\n"))
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return lines, Result(args, process.returncode, out, err)


def test_queues_watch_prints_json_lines_until_ctrl_c(daemon: Daemon) -> None:
    lines, ended = watch(daemon, "queues", "--json", snapshots=3)
    assert ended.code == 0, ended
    snapshots = [json.loads(line) for line in lines]
    assert all(
        set(s)
        == {
            "by_state",
            "pending_by_priority",
            "by_type",
            "totals",
            "held_by_limit",
            "served_types",
            "unserved_types",
            "policy",
            "groups",
        }
        for s in snapshots
    )


def test_workers_watch_prints_plain_snapshots(daemon: Daemon) -> None:
    lines, ended = watch(daemon, "workers", snapshots=2)
    assert ended.code == 0, ended
    assert lines[0].startswith("# workers at ")
    assert lines[1].split()[0] == "ID"
    assert lines[2].split()[0] == daemon.worker_ids()[0]


# -- the dead-letter queue --------------------------------------------------------------------


def test_dlq_list_and_show_a_dead_task(daemon: Daemon) -> None:
    failed = make_dead(daemon, "fail", {"message": "printer on fire"})
    refused = make_dead(daemon, "shell.run", {"argv": ["true"]})

    table = daemon.run("dlq", "list", "--type", "fail")
    header, *rows = table.out.splitlines()
    assert header.split()[:3] == ["ID", "TYPE", "STATE"]
    mine = [row for row in rows if row.startswith(failed)]
    assert len(mine) == 1
    assert mine[0].split()[1:3] == ["fail", "dead"]
    assert mine[0].endswith("RuntimeError: printer on fire")
    assert {failed, refused} <= dead_ids(daemon)

    shown = daemon.run("dlq", "show", refused)
    assert shown.code == 0, shown
    assert "state:     dead" in shown.out
    assert "allowed_executables" in shown.out  # the last error says why
    assert "traceback: Traceback (most recent call last):" in shown.out
    as_json = daemon.run("dlq", "show", failed, "--json").json()
    assert (as_json["state"], as_json["error"]) == ("dead", "RuntimeError: printer on fire")


def test_dlq_show_refuses_a_task_that_is_not_dead(daemon: Daemon) -> None:
    alive = daemon.run("submit", "queued.only").out.strip()
    done = daemon.run("dlq", "show", alive)
    assert done.code == 1, done
    assert done.error == f"task {alive} is pending, not in the dead-letter queue"
    assert daemon.run("dlq", "show", "no-such-task").code == 3


def test_dlq_requeue_one_of_a_type_or_all(daemon: Daemon) -> None:
    one = make_dead(daemon, "fail", {"message": "once"})
    done = daemon.run("dlq", "requeue", one)
    assert (done.code, done.out) == (0, f"requeued {one}\n")
    # The worker runs it again, and `fail` fails again: back in the dead-letter queue.
    wait_until(lambda: one in dead_ids(daemon), "the requeued task dies again")

    again = daemon.run("dlq", "requeue", daemon.run("submit", "queued.only").out.strip())
    assert again.code == 1, again
    assert "not in the dead-letter queue" in again.error

    make_dead(daemon, "shell.run", {"argv": ["true"]})
    by_type = daemon.run("dlq", "requeue", "--type", "shell.run", "--json").json()
    assert by_type["requeued"] >= 1
    everything = daemon.run("dlq", "requeue", "--all")
    assert everything.code == 0, everything
    assert everything.out.startswith("requeued ")

    neither = daemon.run("dlq", "requeue")
    assert neither.code == 2, neither
    assert neither.error == "name what to requeue: an ID, --type TYPE or --all (one of them)"


def settled(daemon: Daemon, *task_types: str) -> bool:
    """No task of ``task_types`` is waiting or running (requeued ones have died again)."""
    by_type = daemon.run("stats", "--json").json()["by_type"]
    return all(set(by_type.get(t, {})) <= {"dead"} for t in task_types)


def test_dlq_purge_needs_yes_without_a_terminal(daemon: Daemon) -> None:
    make_dead(daemon, "fail", {"message": "purge me"})
    wait_until(lambda: settled(daemon, "fail", "shell.run"), "every requeued task died again")
    n = len(dead_ids(daemon))
    refused = daemon.run("dlq", "purge")
    assert refused.code == 2, refused
    assert refused.error.startswith(f"purge would delete {n} dead task")
    assert refused.error.endswith("pass --yes to confirm")

    done = daemon.run("dlq", "purge", "--yes", "--json")
    assert done.json() == {"purged": n}
    assert dead_ids(daemon) == set()
    assert daemon.run("dlq", "purge").out == "purged 0 dead tasks\n"


# -- bench ------------------------------------------------------------------------------------


def test_bench_reports_throughput_and_latency(daemon: Daemon) -> None:
    done = daemon.run("bench", "--count", "200", "--batch", "50")
    assert done.code == 0, done
    fields = dict(line.split(":", 1) for line in done.out.splitlines())
    assert fields["tasks"].strip() == "200 of type noop"
    assert fields["finished"].strip() == "200 (200 succeeded)"
    assert fields["throughput"].strip().endswith("tasks/s")
    assert fields["latency"].split()[::2] == ["p50", "p90", "p99", "max"]

    report = daemon.run("bench", "-n", "20", "--rate", "1000", "--type", "echo", "--json").json()
    assert report["ok"] is True
    assert report["by_state"] == {"succeeded": 20}
    assert report["latency"]["p50"] <= report["latency"]["max"]


def test_bench_exits_1_when_tasks_do_not_end(daemon: Daemon) -> None:
    done = daemon.run("bench", "-n", "3", "--type", "queued.only", "--timeout", "200ms")
    assert done.code == 1, done
    assert "no live worker runs queued.only tasks yet" in done.err
    assert done.err.splitlines()[-1] == "taskqueue: 3 of 3 tasks had not ended after 200ms"


# -- on a terminal ----------------------------------------------------------------------------


def test_on_a_terminal_tables_are_drawn_and_states_coloured(daemon: Daemon) -> None:
    daemon.run("submit", "echo", "--wait")
    done = daemon.run("tasks", "--state", "succeeded", FORCE_COLOR="1", COLUMNS="160")
    assert done.code == 0, done
    assert "─" * 10 in done.out  # the rule under the header
    assert "\x1b[32msucceeded" in done.out  # green


def test_on_a_terminal_submit_count_draws_a_progress_bar(daemon: Daemon) -> None:
    done = daemon.run("submit", "queued.only", "--count", "30", FORCE_COLOR="1", COLUMNS="120")
    assert done.code == 0, done
    assert "submitting" in done.err
    assert "30/30" in done.err
    assert done.out.startswith("submitted 30 tasks of type queued.only in ")
