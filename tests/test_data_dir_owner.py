"""One owner per data directory: a second ``taskqueue run`` on the same data refuses to start,
in one line and with exit code 5, and leaves the first one serving."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from cli_helpers import TASKQUEUE, env_without_redis, run, wait_until

from taskqueue.cli.common import EXIT_BUSY
from taskqueue.daemon.ownership import own_data_dir


def test_a_second_run_on_the_same_data_exits_5_and_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    env = env_without_redis(TASKQUEUE_SERVER__PORT="0", TASKQUEUE_LOGGING__FORMAT="console")
    data = tmp_path / "data"
    advertised = data / "redis.url"
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(
            [TASKQUEUE, "run"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(advertised.exists, "the first daemon advertises its Redis")
        url = advertised.read_text()
        assert (data / "taskqueue.lock").read_text() == f"{first.pid}\n"

        second = run(env, "run", "--port", "0", cwd=tmp_path)

        assert second.code == EXIT_BUSY == 5, second
        assert second.error == (
            f"data directory {data} is in use by process {first.pid} (another taskqueue run?): "
            "stop it first, or give this one its own redis.data_dir"
        )
        assert first.poll() is None, log.read_text()
        assert advertised.read_text() == url  # the tools still find the first one's Redis
        assert (data / "taskqueue.lock").read_text() == f"{first.pid}\n"
        assert log.read_text().count("started an embedded Redis") == 1
        done = run(
            env, "submit", "echo", "--payload", '"still here"', "--wait", "--json", cwd=tmp_path
        )
        assert done.json()["result"] == "still here"

        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not advertised.exists()
    with own_data_dir(data):  # the lock went with its holder
        assert (data / "taskqueue.lock").read_text() == f"{os.getpid()}\n"
