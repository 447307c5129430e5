"""The ``taskqueue`` command through the REST API (``--api``), from a shell with no Redis route.

One ``taskqueue run`` serves the module over TLS (a self-signed certificate, trusted through
``--api-cafile``) with tokens on: an admin token and a read-only one. Every command runs in an
environment that names no reachable Redis: ``TASKQUEUE_REDIS__URL`` points at a closed port,
so a command that touched Redis by accident would fail (exit 4). What the daemon's Redis holds
is checked through the same command without ``--api`` (``Daemon.run``), which is also how the
``--json`` documents are compared: they must be the same whichever way the command went.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import ADMIN_TOKEN, READ_TOKEN, make_self_signed_cert
from cli_helpers import (
    TASKQUEUE,
    Daemon,
    Result,
    closed_port,
    env_without_redis,
    run,
    run_in_process,
    start_daemon,
    wait_until,
)
from daemon_helpers import STARTUP

from taskqueue.api.auth import hash_token
from taskqueue.cli import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_TOKEN, EXIT_UNREACHABLE, EXIT_USAGE
from taskqueue.embedded import EmbeddedRedis


class Api:
    """The daemon, its API's URL and CA, and token files, for commands run through the API."""

    def __init__(self, daemon: Daemon, url: str, cafile: Path, tokens: Path) -> None:
        self.daemon = daemon
        self.url = url
        self.cafile = cafile
        self.admin = tokens / "admin.token"
        self.admin.write_text(ADMIN_TOKEN + "\n")
        self.read = tokens / "read.token"
        self.read.write_text(READ_TOKEN + "\n")
        #: No Redis route: the URL names a port nothing listens on, and no other variable
        #: (nor a data directory: commands run in the test's cwd) names one.
        self.env = env_without_redis(
            TASKQUEUE_REDIS__URL=f"redis://127.0.0.1:{closed_port()}/0",
            TASKQUEUE_API_URL=url,
            TASKQUEUE_API_CAFILE=str(cafile),
        )

    def run(self, *args: str, token: Path | None = None, **variables: str) -> Result:
        """``taskqueue --token-file TOKEN *args`` (admin by default) through the API."""
        token_args = ("--token-file", str(token or self.admin))
        return run_in_process({**self.env, **variables}, *token_args, *args)

    def as_reader(self, *args: str) -> Result:
        return self.run(*args, token=self.read)


@pytest.fixture(scope="module")
def api(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("cli-api")
    cert, key = make_self_signed_cert(home)
    (home / "read-tokens").write_text(f"{hash_token(READ_TOKEN)} read\n")
    port = closed_port()
    variables = {
        "TASKQUEUE_SERVER__TOKENS": ADMIN_TOKEN,
        "TASKQUEUE_SERVER__TOKEN_FILE": str(home / "read-tokens"),
        "TASKQUEUE_SERVER__CERTFILE": str(cert),
        "TASKQUEUE_SERVER__KEYFILE": str(key),
    }
    flags = ("--port", str(port), "--worker-id", "api-cli-worker", "--log-level", "warning")
    with start_daemon(
        redis_server.url, "cli-api", home, *flags, cwd=home, command="run", variables=variables
    ) as daemon:
        url = f"https://127.0.0.1:{port}"
        _wait_ready(url, cert)
        yield Api(daemon, url, cert, home)


def _wait_ready(url: str, cafile: Path) -> None:
    deadline = time.monotonic() + STARTUP
    trust = ssl.create_default_context(cafile=str(cafile))
    with httpx.Client(base_url=url, verify=trust, timeout=2.0) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the API at {url} did not become ready"
            time.sleep(0.05)


def dead_task(api: Api) -> str:
    """A task the worker ran once and dead-lettered (submitted through the API); its id."""
    done = api.run("submit", "fail", "--payload", '{"message": "boom"}', "--max-retries", "0",
                   "--wait", "--json")  # fmt: skip
    assert done.code == EXIT_FAILED, done
    task = json.loads(done.out)
    assert task["state"] == "dead", task
    return str(task["id"])


# -- reading ----------------------------------------------------------------------------------


def test_queues_through_the_api_is_the_redis_document(api: Api) -> None:
    through_api = api.as_reader("queues", "--json")
    assert through_api.code == 0, through_api
    assert through_api.json() == api.daemon.run("queues", "--json").json()
    table = api.as_reader("queues")
    assert table.code == 0, table
    assert "# tasks by state" in table.out
    assert "queue policy" in table.out
    assert api.as_reader("stats", "--json").json() == through_api.json()


def test_submit_wait_and_status_through_the_api(api: Api) -> None:
    done = api.run("submit", "echo", "--payload", '{"n": 7}', "--wait", "--json")
    assert done.code == 0, done
    task = done.json()
    assert task["state"] == "succeeded"
    assert task["result"] == {"n": 7}
    status = api.as_reader("status", task["id"], "--json")
    assert status.json() == task
    assert status.json() == api.daemon.run("status", task["id"], "--json").json()
    shown = api.as_reader("status", task["id"])
    assert shown.code == 0, shown
    assert "state:    succeeded" in shown.out


def test_submit_wait_reports_a_failed_task_with_exit_1(api: Api) -> None:
    waited = api.run("submit", "fail", "--max-retries", "0", "--wait")
    assert waited.code == EXIT_FAILED, waited
    assert "ended dead: RuntimeError: task failed on purpose" in waited.error


def test_status_of_an_unknown_task_exits_3(api: Api) -> None:
    unknown = "01890a5d-ac96-774b-bcce-b302099a8057"
    result = api.as_reader("status", unknown)
    assert result.code == EXIT_NOT_FOUND, result
    assert result.error == f"no task with id {unknown!r}"


def test_tasks_filters_and_pages_through_the_api(api: Api) -> None:
    ids = set()
    for _ in range(3):
        submitted = api.run("submit", "sleep", "--delay", "1h", "--priority", "low")
        assert submitted.code == 0, submitted
        ids.add(submitted.out.strip())
    first = api.as_reader("tasks", "--state", "scheduled", "--type", "sleep", "--limit", "2")
    assert first.code == 0, first
    assert len(first.out.splitlines()) == 3  # the header and two rows
    more = first.err.strip()
    assert more.startswith("more: taskqueue tasks --state scheduled --type sleep --cursor ")
    cursor = more.rsplit(" ", 1)[1]
    listed = {t["id"] for t in api.as_reader("tasks", "--state", "scheduled", "--type", "sleep",
                                                 "--limit", "2", "--json").json()}  # fmt: skip
    rest = api.as_reader(
        "tasks", "--state", "scheduled", "--type", "sleep", "--cursor", cursor, "--json"
    )
    assert rest.code == 0, rest
    listed |= {t["id"] for t in rest.json()}
    assert ids <= listed
    assert (
        api.as_reader("tasks", "--state", "scheduled", "--type", "nothing", "--json").json() == []
    )
    page = ["tasks", "--state", "scheduled", "--type", "sleep", "--json"]
    assert api.as_reader(*page).json() == api.daemon.run(*page).json()
    for task_id in ids:
        assert api.run("cancel", task_id).code == 0


def test_queues_watch_through_the_api_until_ctrl_c(api: Api) -> None:
    args = ["--token-file", str(api.read), "queues", "--json", "--watch", "--interval", "50ms"]
    process = subprocess.Popen(
        [TASKQUEUE, *args],
        env=api.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        snapshots = [json.loads(process.stdout.readline()) for _ in range(3)]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert all("by_state" in s and "policy" in s for s in snapshots)


def test_workers_through_the_api(api: Api) -> None:
    workers = api.as_reader("workers", "--json")
    assert workers.code == 0, workers
    assert [w["id"] for w in workers.json()] == ["api-cli-worker"]
    assert "echo" in workers.json()[0]["task_types"]
    table = api.as_reader("workers")
    assert table.out.splitlines()[1].split()[0] == "api-cli-worker"


# -- steering ---------------------------------------------------------------------------------


def test_cancel_through_the_api(api: Api) -> None:
    task_id = api.run("submit", "echo", "--delay", "1h").out.strip()
    cancelled = api.run("cancel", task_id, "--json")
    assert cancelled.json() == {"id": task_id, "outcome": "cancelled"}
    again = api.run("cancel", task_id)
    assert again.code == EXIT_FAILED, again
    assert "has already ended" in again.error
    assert api.daemon.run("status", task_id, "--json").json()["state"] == "cancelled"


def test_dlq_list_show_requeue_and_purge_through_the_api(api: Api) -> None:
    task_id = dead_task(api)
    listed = api.as_reader("dlq", "list", "--type", "fail", "--json")
    assert task_id in {t["id"] for t in listed.json()}
    assert listed.json() == api.daemon.run("dlq", "list", "--type", "fail", "--json").json()
    shown = api.as_reader("dlq", "show", task_id, "--json")
    assert shown.json()["error"] == "RuntimeError: boom"

    started = shown.json()["started_ms"]
    requeued = api.run("dlq", "requeue", task_id)
    assert requeued.code == 0, requeued
    assert requeued.out == f"requeued {task_id}\n"

    def ran_again() -> bool:
        task = api.daemon.run("status", task_id, "--json").json()
        return bool(task["started_ms"] != started and task["state"] == "dead")

    # Until it has failed again, so that no later test sees it in flight.
    wait_until(ran_again, "the requeued task has run (and died) again")

    again = dead_task(api)
    purge = api.run("dlq", "purge", "--type", "fail")
    assert purge.code == 2, purge
    assert "pass --yes to confirm" in purge.error
    purged = api.run("dlq", "purge", "--type", "fail", "--yes", "--json")
    assert purged.code == 0, purged
    assert purged.json()["purged"] >= 1
    gone = api.as_reader("status", again)
    assert gone.code == EXIT_NOT_FOUND, gone


def test_bulk_cancel_and_purge_through_the_api(api: Api) -> None:
    submitted = api.run("submit", "bulk.unserved", "--count", "12", "--delay", "10m")
    assert submitted.code == 0, submitted
    refused = api.run("cancel", "--type", "bulk.unserved")
    assert refused.code == 2, refused
    assert refused.error == (
        "cancel would end 0 pending and 12 scheduled tasks of type bulk.unserved: "
        "pass --yes to confirm"
    )
    as_reader = api.as_reader("cancel", "--type", "bulk.unserved", "--yes")
    assert as_reader.code == EXIT_TOKEN, as_reader

    done = api.run("cancel", "--type", "bulk.unserved", "--yes", "--json")
    assert done.json()["by_state"] == {"pending": 0, "scheduled": 12}
    assert done.json() == {**done.json(), "type": "bulk.unserved", "cancelled": 12}

    purge = api.run("purge", "cancelled", "--type", "bulk.unserved")
    assert purge.code == 2, purge
    assert "pass --yes to confirm" in purge.error
    purged = api.run("purge", "cancelled", "--type", "bulk.unserved", "--yes", "--json")
    assert purged.json() == {"state": "cancelled", "type": "bulk.unserved", "purged": 12}
    bad = api.run("purge", "pending", "--yes")
    assert bad.code == EXIT_USAGE, bad


def test_policy_set_and_unset_through_the_api(api: Api) -> None:
    set_ = api.run("policy", "set", "max_queue_depth=50", "timeout=20s", "--type", "noop", "--json")
    assert set_.code == 0, set_
    assert set_.json()["live"] == {"max_queue_depth": 50, "timeout": 20.0}
    unset = api.run("policy", "unset", "timeout", "--type", "noop", "--json")
    assert unset.json()["live"] == {"max_queue_depth": 50}
    shown = api.as_reader("policy", "show", "--json")
    assert shown.json() == api.daemon.run("policy", "show", "--json").json()
    assert shown.json()["types"]["noop"]["live"] == {"max_queue_depth": 50}
    bad = api.run("policy", "unset", "colour", "--type", "noop")
    assert bad.code == EXIT_USAGE, bad
    assert bad.error.startswith("unknown policy setting 'colour'")
    assert api.run("policy", "unset", "max_queue_depth", "--type", "noop").code == 0


def test_schedules_through_the_api(api: Api) -> None:
    made = api.run(
        "schedules", "add", "api-nightly", "report.build", "--cron", "0 3 * * *",
        "--timezone", "Europe/Berlin", "--payload", '{"format": "pdf"}', "--json",
    )  # fmt: skip
    assert made.code == 0, made
    assert made.json()["spec"]["timezone"] == "Europe/Berlin"
    listed = api.as_reader("schedules", "--json")
    assert listed.json() == api.daemon.run("schedules", "--json").json()
    assert [s["spec"]["name"] for s in listed.json()] == ["api-nightly"]
    taken = api.run("schedules", "add", "api-nightly", "echo", "--every", "1m")
    assert taken.code == EXIT_FAILED, taken
    assert taken.error == "a schedule named 'api-nightly' exists: replace it or delete it first"
    assert api.run("schedules", "pause", "api-nightly", "--json").json()["paused"] is True
    assert api.run("schedules", "resume", "api-nightly", "--json").json()["paused"] is False
    shown = api.as_reader("schedules", "show", "api-nightly")
    assert "cron 0 3 * * * Europe/Berlin" in shown.out, shown
    missing = api.as_reader("schedules", "show", "nope")
    assert (missing.code, missing.error) == (EXIT_NOT_FOUND, "no schedule named 'nope'")
    assert api.run("schedules", "delete", "api-nightly", "--yes").code == 0
    assert api.as_reader("schedules", "--json").json() == []


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("submit", "echo"),
        ("cancel", "01890a5d-ac96-774b-bcce-b302099a8057"),
        ("dlq", "requeue", "01890a5d-ac96-774b-bcce-b302099a8057"),
        ("dlq", "requeue", "--all"),
        ("dlq", "purge", "--yes"),
        ("policy", "set", "max_retries=1"),
        ("policy", "unset", "max_retries"),
        ("schedules", "add", "s", "echo", "--every", "1m"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_read_token_is_refused_for_admin_commands(api: Api, command: tuple[str, ...]) -> None:
    if command[:2] == ("dlq", "purge"):
        dead_task(api)  # a purge with nothing to delete sends no write
    before = api.daemon.run("queues", "--json").json()
    refused = api.as_reader(*command)
    assert refused.code == EXIT_TOKEN, refused
    assert refused.error == (
        f"the API at {api.url} refused: this token may only read; the operation writes; "
        "use an admin token for this command"
    )
    assert api.daemon.run("queues", "--json").json()["totals"] == before["totals"]


def test_a_wrong_token_is_refused(api: Api, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-a-token\n")
    refused = api.run("queues", token=wrong)
    assert refused.code == EXIT_TOKEN, refused
    assert refused.error == (
        f"the API at {api.url} refused the token: unknown bearer token (check --token-file, "
        "--token, $TASKQUEUE_API_TOKEN_FILE or $TASKQUEUE_API_TOKEN)"
    )


def test_no_token_is_refused(api: Api) -> None:
    refused = run_in_process(api.env, "tasks")
    assert refused.code == EXIT_TOKEN, refused
    assert refused.error == (
        f"the API at {api.url} wants a bearer token; give one with --token-file PATH, --token "
        "or $TASKQUEUE_API_TOKEN_FILE"
    )


def test_the_token_from_the_environment(api: Api) -> None:
    by_file = run_in_process({**api.env, "TASKQUEUE_API_TOKEN_FILE": str(api.read)}, "workers")
    assert by_file.code == 0, by_file
    by_value = run_in_process({**api.env, "TASKQUEUE_API_TOKEN": READ_TOKEN}, "workers")
    assert by_value.code == 0, by_value
    both = run_in_process(
        {**api.env, "TASKQUEUE_API_TOKEN": READ_TOKEN, "TASKQUEUE_API_TOKEN_FILE": str(api.read)},
        "workers",
    )
    assert both.code == EXIT_USAGE, both
    assert both.error.startswith("give one token")


def test_an_unreachable_api_exits_4(api: Api) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    result = api.run("--api", url, "queues")
    assert result.code == EXIT_UNREACHABLE, result
    assert result.error.startswith(f"the API at {url} cannot be reached: ")


def test_an_untrusted_certificate_exits_4(api: Api) -> None:
    env = {k: v for k, v in api.env.items() if k != "TASKQUEUE_API_CAFILE"}
    result = run_in_process(env, "--token-file", str(api.admin), "queues")
    assert result.code == EXIT_UNREACHABLE, result
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert result.error.endswith(
        "(the server's certificate is not signed by a trusted CA); name its CA with "
        "--api-cafile ($TASKQUEUE_API_CAFILE)"
    )


@pytest.mark.parametrize(
    "command", [("run",), ("worker",), ("bench", "--count", "1"), ("plugins",)]
)
def test_commands_the_api_does_not_serve_say_so(api: Api, command: tuple[str, ...]) -> None:
    result = api.run(*command)  # the URL from $TASKQUEUE_API_URL
    assert result.code == EXIT_USAGE, result
    assert result.error.startswith(
        f"`taskqueue {command[0]}` does not run through the API; run it with "
        "$TASKQUEUE_API_URL unset. Through the API: submit, status"
    )
    flagged = api.run("--api", api.url, *command)
    assert flagged.code == EXIT_USAGE, flagged
    assert "does not run through the API; run it without --api." in flagged.error


def test_redis_url_and_api_together_are_refused(api: Api) -> None:
    result = api.run("queues", "--redis-url", "redis://127.0.0.1:1")
    assert result.code == EXIT_USAGE, result
    assert result.error == "--redis-url and --api name two ways to the queue: give one"


def test_the_console_script_through_the_api(api: Api) -> None:
    """What an operator types: the installed ``taskqueue`` in a shell of its own."""
    result = run(api.env, "--api", api.url, "--token-file", str(api.read), "queues", "--json")
    assert result.code == 0, result
    assert json.loads(result.out) == api.daemon.run("queues", "--json").json()
