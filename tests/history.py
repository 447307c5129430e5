"""The history of a fault test, and its check: what was acknowledged, what ran, what ended.

A fault test submits tasks of type ``test.journaled`` (registered by :data:`JOURNALED`, which
the worker processes import through ``worker.processors``): each body appends a line to a
journal file when it starts and when it ends, with its process, task id and attempt. At the
end, :meth:`History.check` reads the journal and the broker and says, for the whole run:

- **lost**: acknowledged submissions without a final state (must be 0);
- **double-accepted**: successes counted more often than tasks succeeded (must be 0: the
  outcome of a lease the worker no longer holds is refused);
- **duplicate bodies**: tasks whose body started more than once (a crash or a lease taken over
  mid-body runs it again: at-least-once is the promise), and of those, how many finished more
  than once. These are counted and printed, not forbidden, except where a scenario says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from taskqueue.broker import Broker
from taskqueue.models import TaskState

#: The module name workers import (``TASKQUEUE_WORKER__PROCESSORS``) to get ``test.journaled``.
MODULE = "journaledtasks"
TASK_TYPE = "test.journaled"

#: The processor: sleeps ``payload.seconds``, journaling its start and its end.
JOURNALED = """
import os
import time

import trio

from taskqueue.plugin import hookimpl


async def journaled(ctx):
    def note(event):
        with open(ctx.payload["journal"], "a") as journal:
            journal.write(f"{event} {os.getpid()} {ctx.id} {ctx.attempt} {time.time()}\\n")

    note("start")
    await trio.sleep(ctx.payload["seconds"])
    note("end")


@hookimpl
def taskqueue_register_processors(registry):
    registry.add("test.journaled", journaled)
"""


@attrs.frozen
class Entry:
    """One line of the journal."""

    event: str  # "start" or "end"
    pid: int
    task_id: str
    attempt: int
    at: float  # wall-clock time.time()


@attrs.frozen
class Verdict:
    """What :meth:`History.check` found."""

    acknowledged: int
    lost: list[str]
    double_accepted: int
    started_twice: int
    finished_twice: int
    by_state: dict[str, int]

    def summary(self, scenario: str) -> str:
        return (
            f"{scenario}: {self.acknowledged} acknowledged, {len(self.lost)} lost, "
            f"{self.double_accepted} successes double-accepted, bodies started twice "
            f"{self.started_twice}, finished twice {self.finished_twice}; final states "
            f"{self.by_state}"
        )

    def assert_clean(self, scenario: str) -> None:
        """No acknowledged task lost, no success accepted twice; prints the summary."""
        print(self.summary(scenario))
        assert not self.lost, f"{self.summary(scenario)}; lost: {self.lost[:5]}"
        assert self.double_accepted == 0, self.summary(scenario)


class History:
    """The journal of one test (in ``directory``) and the ids its submitters got back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.journal = directory / "journal"
        self.journal.touch()
        (directory / f"{MODULE}.py").write_text(JOURNALED)
        self.acknowledged: list[str] = []

    def worker_env(self) -> dict[str, str]:
        """The variables a worker process needs to run ``test.journaled`` into this journal."""
        return {"PYTHONPATH": str(self.directory), "TASKQUEUE_WORKER__PROCESSORS": MODULE}

    def payload(self, seconds: float) -> dict[str, Any]:
        return {"journal": str(self.journal), "seconds": seconds}

    def acknowledge(self, ids: Iterable[str]) -> None:
        self.acknowledged.extend(ids)

    def entries(self) -> list[Entry]:
        entries = []
        for line in self.journal.read_text().splitlines():
            event, pid, task_id, attempt, at = line.split()
            entries.append(Entry(event, int(pid), task_id, int(attempt), float(at)))
        return entries

    async def check(self, broker: Broker) -> Verdict:
        """The verdict on every acknowledged task, once the test has let them all end.

        ``broker`` must be on a namespace that holds this test's tasks only: the lifetime
        ``succeeded`` counter is compared with the tasks that are succeeded.
        """
        tasks = await broker.get_many(self.acknowledged)
        lost = [
            task_id
            for task_id, task in zip(self.acknowledged, tasks, strict=True)
            if task is None or not task.state.is_terminal
        ]
        states = Counter(str(t.state) for t in tasks if t is not None)
        succeeded = states.get(str(TaskState.SUCCEEDED), 0)
        totals = (await broker.stats()).totals
        entries = self.entries()
        starts = Counter(e.task_id for e in entries if e.event == "start")
        ends = Counter(e.task_id for e in entries if e.event == "end")
        return Verdict(
            acknowledged=len(self.acknowledged),
            lost=lost,
            double_accepted=totals["succeeded"] - succeeded,
            started_twice=sum(1 for n in starts.values() if n > 1),
            finished_twice=sum(1 for n in ends.values() if n > 1),
            by_state=dict(states),
        )
