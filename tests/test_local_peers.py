"""A worker judges the workers of its own host by their process: gone, or its pid reused, is
dead; a process of another kernel or pid namespace is never judged."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from taskqueue.daemon.local_peers import dead_peers, start_time_of, this_instance
from taskqueue.models import WorkerInfo

pytestmark = pytest.mark.skipif(this_instance() is None, reason="needs Linux's /proc")


def registration(worker_id: str, pid: int, instance: str | None) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="here",
        pid=pid,
        task_types={},
        concurrency=1,
        in_flight=0,
        started_ms=0,
        last_heartbeat_ms=0,
        instance=instance,
    )


@pytest.fixture
def me() -> str:
    instance = this_instance()
    assert instance is not None
    return instance


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def here(me: str, started: str) -> str:
    return me.rpartition(":")[0] + ":" + started


def test_a_live_process_is_alive(me: str, live_process: subprocess.Popen[bytes]) -> None:
    started = start_time_of(live_process.pid)
    assert started is not None
    worker = registration("alive", live_process.pid, here(me, started))
    assert dead_peers([worker], me) == []


def test_a_process_that_exited_is_dead(me: str) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = start_time_of(process.pid)
    process.wait()
    assert started is not None and start_time_of(process.pid) is None
    assert dead_peers([registration("gone", process.pid, here(me, started))], me) == ["gone"]


def test_a_reused_pid_is_a_new_process(me: str, live_process: subprocess.Popen[bytes]) -> None:
    started = start_time_of(live_process.pid)
    assert started is not None
    earlier = str(int(started) - 1)
    assert dead_peers([registration("old", live_process.pid, here(me, earlier))], me) == ["old"]


def test_other_kernels_namespaces_and_itself_are_not_judged(me: str) -> None:
    kernel_and_namespace, _, started = me.rpartition(":")
    boot_id, _, namespace = kernel_and_namespace.partition(":")  # the namespace: "pid:[…]"
    far = 2**22 + 7  # above the default pid_max: no such process here
    workers = [
        registration("other-boot", far, f"another-boot:{namespace}:{started}"),
        registration("container", far, f"{boot_id}:pid:[1]:{started}"),
        registration("unknown", far, None),
        registration("myself", 1, me),
    ]
    assert dead_peers(workers, me) == []
    assert dead_peers([registration("any", far, here(me, started))], None) == []
