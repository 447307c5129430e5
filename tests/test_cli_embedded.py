"""`taskqueue run` with no configuration starts its own Redis, and the tools started in the same
directory find it: the README's set-up and tour need no configuration at all."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from cli_helpers import TASKQUEUE, env_without_redis, run, wait_until

from taskqueue.config import Config, RedisConfig
from taskqueue.discovery import DEFAULT_URL, Found, Source, find_redis


def test_tools_find_the_embedded_redis_of_a_daemon_in_the_same_directory(tmp_path: Path) -> None:
    env = env_without_redis(TASKQUEUE_SERVER__PORT="0", TASKQUEUE_LOGGING__FORMAT="console")
    advertised = tmp_path / "data" / "redis.url"
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [TASKQUEUE, "run"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(advertised.exists, "the daemon advertises its Redis")
        assert advertised.read_text().startswith("redis://127.0.0.1:")
        wait_until(
            lambda: run(env, "workers", "--json", cwd=tmp_path).out.strip() not in ("", "[]"),
            "the worker has registered",
        )
        done = run(env, "submit", "echo", "--payload", '"hi"', "--wait", "--json", cwd=tmp_path)
        assert done.json()["result"] == "hi"

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert not advertised.exists()  # gone with its Redis
    gone = Config(redis=RedisConfig(data_dir=str(tmp_path / "data")))
    assert find_redis(gone, env={}) == Found(DEFAULT_URL, Source.DEFAULT)
