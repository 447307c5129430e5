"""Workers of this host that died: found by their process, not by waiting out their timeout.

A killed worker's leases would otherwise wait ``worker_timeout`` for the reaper. When a worker
registered on this host has no process any more, nothing can still be running its tasks, so
they can go back at once: systemd restarts a killed worker within a second, and its tasks run
again a moment later.

"This host" must mean one kernel *and* one pid namespace: containers that share a hostname
(host networking) see each other's pids as absent. Every registration therefore carries an
*instance* (the kernel's boot id, the pid namespace and the process's start time), and a peer
is judged only when the first two match ours; a pid that is alive but started at another time
is a new process that reused it. Where ``/proc`` is missing, no instance is recorded and no peer
is ever judged: the worker timeout still applies.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from taskqueue.models import WorkerInfo

PROC = Path("/proc")


def this_instance(proc: Path = PROC) -> str | None:
    """``boot-id:pid-namespace:start-time`` of this process; None without ``/proc``."""
    try:
        boot_id = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(proc / "self/ns/pid")
    except OSError:
        return None
    started = start_time_of(os.getpid(), proc)
    return None if started is None else f"{boot_id}:{namespace}:{started}"


def start_time_of(pid: int, proc: Path = PROC) -> str | None:
    """When process ``pid`` started (clock ticks after boot), or None if there is no such
    process. ``/proc/<pid>/stat`` is readable whoever owns the process, so a worker running
    as another user is never taken for gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count from after it.
    return stat[stat.rindex(")") + 2 :].split()[19]


def dead_peers(workers: Iterable[WorkerInfo], me: str | None) -> list[str]:
    """Ids of the ``workers`` that ran on this kernel and pid namespace (as ``me``, this
    process's instance, tells) and whose process is gone."""
    if me is None:
        return []
    here, _, _ = me.rpartition(":")
    dead = []
    for worker in workers:
        if worker.instance is None or worker.instance == me:
            continue
        kernel_and_namespace, _, started = worker.instance.rpartition(":")
        if kernel_and_namespace == here and start_time_of(worker.pid) != started:
            dead.append(worker.id)
    return dead
