"""The real ``taskqueue`` command against a live worker: submit, status, cancel and tasks —
what each prints (plain when piped, and ``--json``) and what each exits with.

One ``taskqueue worker`` serves the whole module; task types no worker runs
(:data:`NOBODY`) stay pending, so a test can look at them without racing the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, start_daemon, wait_until

from taskqueue.broker.codec import task_from_hash
from taskqueue.embedded import EmbeddedRedis
from taskqueue.wire import task_json

#: A task type no worker runs: its tasks wait in the queue for as long as a test looks.
NOBODY = "nobody.runs"


@pytest.fixture(scope="module")
def daemon(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    with start_daemon(redis_server.url, "cli-tasks", tmp_path_factory.mktemp("cli")) as daemon:
        yield daemon


def stored(daemon: Daemon, task_id: str) -> dict[str, object]:
    """The task as the REST API would show it, read straight from Redis."""
    fields = daemon.redis.hgetall(daemon.keys.task(task_id))
    return task_json(task_from_hash({str(k): str(v) for k, v in fields.items()}))


# -- submit -----------------------------------------------------------------------------------


def test_submit_piped_prints_only_the_new_id(daemon: Daemon) -> None:
    done = daemon.run("submit", NOBODY, "--payload", '{"n": 1}')
    assert done.code == 0, done
    task_id = done.out.strip()
    assert done.out == task_id + "\n"
    assert stored(daemon, task_id)["payload"] == {"n": 1}


def test_submit_sets_every_option_on_the_task(daemon: Daemon) -> None:
    done = daemon.run(
        "submit",
        NOBODY,
        "--priority",
        "high",
        "--max-retries",
        "7",
        "--timeout",
        "30s",
        "--delay",
        "1h",
        "--idempotency-key",
        "cli-options",
        "--json",
    )
    submitted = done.json()
    assert (submitted["state"], submitted["created"]) == ("scheduled", True)
    task = stored(daemon, submitted["id"])
    assert (task["priority"], task["max_retries"], task["timeout_ms"]) == ("high", 7, 30_000)
    assert task["idempotency_key"] == "cli-options"
    assert 3_599_000 <= int(task["ready_ms"]) - int(task["created_ms"]) <= 3_600_000  # type: ignore[call-overload]

    again = daemon.run("submit", NOBODY, "--idempotency-key", "cli-options", "--json").json()
    assert (again["id"], again["created"]) == (submitted["id"], False)


def test_submit_reads_the_payload_from_a_file_or_stdin(daemon: Daemon, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text('{"from": "file"}')
    from_file = daemon.run("submit", NOBODY, "--payload-file", str(job)).out.strip()
    from_stdin = daemon.run("submit", NOBODY, "--payload-file", "-", stdin='["stdin"]').out.strip()
    assert stored(daemon, from_file)["payload"] == {"from": "file"}
    assert stored(daemon, from_stdin)["payload"] == ["stdin"]


def test_submit_wait_prints_the_finished_task(daemon: Daemon) -> None:
    done = daemon.run("submit", "echo", "--payload", '{"n": 1}', "--wait")
    assert done.code == 0, done
    task_id, *details = done.out.splitlines()
    assert f"id:       {task_id}" in details
    assert "state:    succeeded" in details
    assert 'result:   {"n": 1}' in details


def test_submit_wait_json_is_the_api_document_of_the_ended_task(daemon: Daemon) -> None:
    task = daemon.run("submit", "echo", "--payload", "[1, 2]", "--wait", "--json").json()
    assert task["state"] == "succeeded"
    assert task["result"] == [1, 2]
    assert task == stored(daemon, task["id"])


def test_submit_wait_exits_1_with_the_error_when_the_task_dies(daemon: Daemon) -> None:
    done = daemon.run(
        "submit", "fail", "--payload", '{"message": "disk full"}', "--max-retries", "0", "--wait"
    )
    assert done.code == 1, done
    task_id = done.out.splitlines()[0]
    assert done.error == f"task {task_id} ended dead: RuntimeError: disk full"
    assert "state:     dead" in done.out
    assert f"lines: taskqueue status {task_id} --traceback" in done.out
    full = daemon.run("status", task_id, "--traceback").out
    assert "traceback: Traceback (most recent call last):" in full
    assert full.rstrip().endswith("RuntimeError: disk full")


def test_submit_wait_gives_up_after_the_wait_timeout(daemon: Daemon) -> None:
    done = daemon.run("submit", NOBODY, "--wait", "--wait-timeout", "200ms")
    assert done.code == 1, done
    warning, error = done.err.splitlines()
    assert warning.startswith("warning: no live worker serves task type")
    assert error == f"taskqueue: task {done.out.strip()} did not end within 0.2s"


def test_submit_count_prints_one_id_per_task(daemon: Daemon) -> None:
    done = daemon.run("submit", NOBODY, "--count", "5", "--batch", "2")
    assert done.code == 0, done
    ids = done.out.split()
    assert len(set(ids)) == 5
    assert all(stored(daemon, i)["state"] == "pending" for i in ids)
    as_json = daemon.run("submit", NOBODY, "--count", "3", "--json").json()
    assert [(s["state"], s["created"]) for s in as_json] == [("pending", True)] * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{oops"], "--payload is not JSON: Expecting property name"),
        (["--max-retries", "5000"], "max_retries: Expected int <= 1000, not 5000"),
        (["--priority", "urgent"], "Invalid value for '--priority'"),
        (["--delay", "soon"], "Invalid value for '--delay'"),
        (["--count", "2", "--wait"], "--wait follows one task"),
        (["--bogus"], "No such option '--bogus'"),
        (["--header", "novalue"], "must be NAME=VALUE"),
        (["--debounce", "k"], "--debounce and --debounce-window go together"),
        (
            ["--debounce", "k", "--debounce-window", "2s", "--debounce-max-wait", "1s"],
            "debounce.max_wait (1s) must be at least its window (2s)",
        ),
        (["--debounce", "k", "--debounce-window", "1s", "--delay", "1s"], "debounce cannot"),
        (["--header", "bad name=v"], "invalid header name 'bad name'"),
    ],
)
def test_submit_refuses_bad_input_with_exit_2(
    daemon: Daemon, args: list[str], message: str
) -> None:
    done = daemon.run("submit", NOBODY, *args)
    assert done.code == 2, done
    assert message in done.error
    assert done.out == ""


def test_submit_headers_are_stored_and_status_shows_them(daemon: Daemon) -> None:
    done = daemon.run(
        "submit", NOBODY, "--header", "x-tenant=acme", "--header", "trace=a=b", "--json"
    )
    task_id = done.json()["id"]
    assert stored(daemon, task_id)["headers"] == {"x-tenant": "acme", "trace": "a=b"}
    lines = daemon.run("status", task_id).out.splitlines()
    assert [line for line in lines if line.startswith("header")] == [
        "header trace:    a=b",
        "header x-tenant: acme",
    ]


def test_submit_debounce_joins_the_waiting_task_and_replaces_its_payload(daemon: Daemon) -> None:
    args = ("submit", NOBODY, "--debounce", "user-7", "--debounce-window", "1h", "--json")
    first = daemon.run(*args, "--payload", "1").json()
    second = daemon.run(*args, "--payload", "2").json()
    assert (first["debounced"], first["state"]) == ("created", "scheduled")
    assert (second["id"], second["debounced"], second["created"]) == (
        first["id"],
        "replaced",
        False,
    )
    assert stored(daemon, first["id"])["payload"] == 2
    kept = daemon.run(*args, "--payload", "3", "--debounce-keep", "first").json()
    assert (kept["id"], kept["debounced"]) == (first["id"], "joined")
    assert stored(daemon, first["id"])["payload"] == 2


# -- status, cancel ---------------------------------------------------------------------------


def test_status_shows_one_task_plain_and_as_json(daemon: Daemon) -> None:
    task_id = daemon.run("submit", NOBODY, "--payload", '"hello"', "--priority", "low").out.strip()
    plain = daemon.run("status", task_id)
    assert plain.code == 0, plain
    lines = plain.out.splitlines()
    assert lines[:7] == [
        f"id:       {task_id}",
        f"type:     {NOBODY}",
        "state:    pending",
        "priority: low",
        "attempt:  0 of 4",
        "timeout:  5m00s",
        'payload:  "hello"',
    ]
    assert lines[7].startswith("created:  ")
    assert daemon.run("status", task_id, "--json").json() == stored(daemon, task_id)


def test_unknown_ids_exit_3(daemon: Daemon) -> None:
    for command in (["status", "no-such-task"], ["cancel", "no-such-task"]):
        done = daemon.run(*command)
        assert done.code == 3, done
        assert done.error == "no task with id 'no-such-task'"


def test_cancel_a_waiting_task_then_again(daemon: Daemon) -> None:
    task_id = daemon.run("submit", NOBODY).out.strip()
    done = daemon.run("cancel", task_id)
    assert (done.code, done.out) == (0, f"cancelled {task_id}\n")
    assert stored(daemon, task_id)["state"] == "cancelled"

    again = daemon.run("cancel", task_id)
    assert again.code == 1, again
    assert again.error == f"task {task_id} has already ended (cancelled); nothing to cancel"


def test_cancel_a_running_task_asks_its_worker(daemon: Daemon) -> None:
    task_id = daemon.run("submit", "sleep", "--payload", '{"seconds": 60}').out.strip()
    wait_until(lambda: stored(daemon, task_id)["state"] == "active", "the task runs")
    done = daemon.run("cancel", task_id, "--json")
    assert done.json() == {"id": task_id, "outcome": "requested"}
    wait_until(lambda: stored(daemon, task_id)["state"] == "cancelled", "the worker stops it")


# -- tasks ------------------------------------------------------------------------------------


def test_tasks_lists_one_state_of_one_type_a_page_at_a_time(daemon: Daemon) -> None:
    kind = "listing.only"
    first = daemon.run("submit", kind, "--payload", '"a"', "--priority", "high").out.strip()
    second = daemon.run("submit", kind, "--payload", '"b"').out.strip()

    table = daemon.run("tasks", "--type", kind)
    assert table.code == 0, table
    header, *rows = table.out.splitlines()
    assert header.split() == ["ID", "TYPE", "STATE", "PRIORITY", "ATTEMPT", "CREATED", "DETAIL"]
    assert [row.split()[:5] for row in rows] == [
        [first, kind, "pending", "high", "0/4"],
        [second, kind, "pending", "medium", "0/4"],
    ]
    assert rows[0].endswith('"a"')

    page = daemon.run("tasks", "--state", "pending", "--type", kind, "--limit", "1", "--json")
    assert [t["id"] for t in page.json()] == [first]
    more = page.err.strip()
    assert more.startswith(f"more: taskqueue tasks --state pending --type {kind} --cursor ")
    rest = daemon.run(*more.removeprefix("more: taskqueue ").split(), "--json")
    assert [t["id"] for t in rest.json()] == [second]
    assert rest.err == ""


def test_tasks_of_a_state_with_none_prints_the_header_alone(daemon: Daemon) -> None:
    done = daemon.run("tasks", "--state", "active", "--type", "never.submitted")
    assert done.code == 0, done
    assert done.out.splitlines() == ["ID  TYPE  STATE  PRIORITY  ATTEMPT  CREATED  DETAIL"]
    assert json.loads(daemon.run("tasks", "--type", "never.submitted", "--json").out) == []


def test_submit_group_is_stored_and_status_shows_it(daemon: Daemon) -> None:
    done = daemon.run("submit", NOBODY, "--group", "customer-17", "--json")
    task_id = done.json()["id"]
    assert stored(daemon, task_id)["group"] == "customer-17"
    lines = daemon.run("status", task_id).out.splitlines()
    assert [line.split() for line in lines if line.startswith("group")] == [
        ["group:", "customer-17"]
    ]
    refused = daemon.run("submit", NOBODY, "--group", "no spaces")
    assert refused.code == 2 and "group" in refused.error, refused


def test_queues_show_the_top_groups_by_backlog(daemon: Daemon) -> None:
    task_type = "grouped.nobody"  # served by no worker: the tasks stay pending
    for group, count in (("light", "1"), ("heavy", "4")):
        daemon.run("submit", task_type, "--group", group, "--count", count)

    (groups,) = [
        g for g in daemon.run("queues", "--json").json()["groups"] if g["type"] == task_type
    ]
    assert groups == {
        "type": task_type,
        "groups_pending": 2,
        "groups_active": 0,
        "top": [
            {"group": "heavy", "pending": 4, "active": 0},
            {"group": "light", "pending": 1, "active": 0},
        ],
    }
    table = daemon.run("queues").out.split("\n\n")
    (block,) = [b for b in table if b.startswith("# top groups by backlog")]
    rows = [line.split() for line in block.splitlines()[2:]]
    assert [task_type, "-", "2", "0"] in rows
    assert rows[rows.index([task_type, "-", "2", "0"]) + 1 :][:2] == [
        ["heavy", "4", "0"],
        ["light", "1", "0"],
    ]
