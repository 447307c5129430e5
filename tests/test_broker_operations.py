"""The worker's operations without I/O: each yields one step, and reads the reply it is sent.

Driven here by hand, with no Redis: what goes to the script, and what its reply means. The
broker tests run the same operations against a real Redis.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from taskqueue.broker import BrokerSettings, Keys, ReapedTask, ReapResult, Report
from taskqueue.broker import operations as ops
from taskqueue.models import Claim, Priority, TaskState
from taskqueue.outcomes import OutcomeKind

T = TypeVar("T")

SETTINGS = BrokerSettings(retry_base_delay=1.0, retry_max_delay=300.0)
KEYS = Keys(SETTINGS.namespace)


def one_step(operation: ops.Operation[T], reply: Any) -> tuple[ops.RunScript, T]:
    """The operation's one step, and what it returns when sent ``reply``."""
    step = operation.send(None)
    assert isinstance(step, ops.RunScript)
    assert step.keys == (KEYS.prefix, KEYS.fence)
    with pytest.raises(StopIteration) as stop:
        operation.send(reply)
    return step, stop.value.value


def test_report_sends_six_fields_per_outcome_in_the_outcome_s_own_words() -> None:
    reports = [
        Report(task_id="a", attempt=1, kind=OutcomeKind.SUCCEEDED, result={"n": 1}),
        Report(task_id="b", attempt=2, kind=OutcomeKind.TIMED_OUT, error="late", traceback="tb"),
        Report(task_id="c", attempt=1, kind=OutcomeKind.INTERRUPTED),
    ]
    step, states = one_step(
        ops.report(SETTINGS, KEYS, reports, 1000, lambda: 0.5),
        ["succeeded", "scheduled", ""],
    )

    assert step.script.name == "finish"
    assert step.args == (
        *(1000, 1000, 300_000),
        *("a", 1, "succeeded", '{"n":1}', "", 0),
        *("b", 2, "timed_out", "late", "tb", 0.5),
        *("c", 1, "interrupted", "", "", 0.5),
    )
    assert states == [TaskState.SUCCEEDED, TaskState.SCHEDULED, None]


def test_claim_of_nothing_yields_no_step() -> None:
    with pytest.raises(StopIteration) as stop:
        ops.claim(SETTINGS, KEYS, "w1", ["t"], 0, 1000).send(None)
    assert stop.value.value == Claim([])


def test_reap_reads_each_reaped_task_from_its_flat_reply() -> None:
    step, result = one_step(
        ops.reap(SETTINGS, KEYS, 2, 1000, lambda: 0.25),
        [1, ["w9"], ["a", "t", "high", "dead"]],
    )

    assert step.script.name == "reap"
    assert step.args[-2:] == (0.25, 0.25)  # one jitter per task it may reap
    assert result == ReapResult(
        reaped=1,
        workers_removed=["w9"],
        outcomes=[ReapedTask("a", "t", Priority.HIGH, TaskState.DEAD)],
    )
