"""A daemon runs a task of every bundled type: the built-ins and the http and shell plugins.

Each test starts a worker in this trio run against the session's Redis, submits through its own
broker (on the wall clock, like the daemon's) and waits for the task to end.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state, write_toml
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.redis import Redis


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


async def test_noop_task_succeeds_with_no_result(redis_url: str, broker: Broker) -> None:
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "noop")
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED
    assert task.result is None
    assert task.attempt == 1
    await assert_invariants(broker)


async def test_echo_task_stores_its_payload_as_the_result(redis_url: str, broker: Broker) -> None:
    payload = {"greeting": "héllo", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    async with running_daemon(daemon_config(redis_url, worker__id="echo-worker")):
        task_id = await submit(broker, "echo", payload)
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED
    assert task.result == payload
    assert task.worker_id == "echo-worker"
    await assert_invariants(broker)


async def test_sleep_task_succeeds_after_sleeping_for_its_seconds(
    redis_url: str, broker: Broker
) -> None:
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "sleep", {"seconds": 0.2})
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED
    assert task.result == {"slept": 0.2}
    assert task.started_ms is not None and task.finished_ms is not None
    assert task.finished_ms - task.started_ms >= 200
    await assert_invariants(broker)


async def test_fail_task_fails_until_the_attempt_it_may_succeed_on(
    redis_url: str, broker: Broker
) -> None:
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(
            broker, "fail", {"message": "not yet", "succeed_on_attempt": 3}, max_retries=5
        )
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED
    assert task.attempt == 3
    assert (await broker.stats()).totals["failed"] == 2
    await assert_invariants(broker)


# -- http.request -------------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a small JSON body and remembers what it received."""

    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        reply = json.dumps({"accepted": True}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Recorder]]]:
    """A tiny HTTP server on 127.0.0.1 in a thread: its base URL and its request log."""
    handler = type("Recorder", (_Recorder,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_http_request_task_posts_to_a_local_server_when_private_networks_are_allowed(
    redis_url: str,
    broker: Broker,
    tmp_path: Path,
    http_server: tuple[str, type[_Recorder]],
) -> None:
    base_url, recorder = http_server
    config_file = write_toml(
        tmp_path / "taskqueue.toml", "[plugins.http]\nallow_private_networks = true\n"
    )
    async with running_daemon(daemon_config(redis_url, config_file)):
        task_id = await submit(
            broker, "http.request", {"url": f"{base_url}/hooks/build", "json": {"build": 42}}
        )
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED, task.error
    assert task.result["status"] == 201
    assert json.loads(task.result["body"]) == {"accepted": True}
    assert recorder.received == [("/hooks/build", "application/json", b'{"build":42}')]
    await assert_invariants(broker)


async def test_http_request_task_refuses_a_local_server_by_default(
    redis_url: str, broker: Broker, http_server: tuple[str, type[_Recorder]]
) -> None:
    base_url, recorder = http_server
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "http.request", {"url": base_url}, max_retries=0)
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.DEAD
    assert task.error is not None and "DestinationNotAllowedError" in task.error
    assert recorder.received == []


# -- shell.run ----------------------------------------------------------------------------------


async def test_shell_run_task_runs_an_allowlisted_executable(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    config_file = write_toml(
        tmp_path / "taskqueue.toml", '[plugins.shell]\nallowed_executables = ["/bin/echo"]\n'
    )
    async with running_daemon(daemon_config(redis_url, config_file)):
        task_id = await submit(broker, "shell.run", {"argv": ["/bin/echo", "hello", "world"]})
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED, task.error
    assert task.result["exit_code"] == 0
    assert task.result["stdout"] == "hello world\n"
    await assert_invariants(broker)


async def test_shell_run_task_refuses_every_executable_until_one_is_allowed(
    redis_url: str, broker: Broker
) -> None:
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "shell.run", {"argv": ["/bin/echo", "hi"]}, max_retries=0)
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.DEAD
    assert task.error is not None and "ExecutableNotAllowedError" in task.error
    assert "allowed_executables" in task.error
