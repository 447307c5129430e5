"""What the command line shows, checked without running it: the JSON documents agree with the
REST API's, plain output stays ``awk``-friendly, tables fit narrow terminals, and the bench
arithmetic is right."""

from __future__ import annotations

import io
import math
import tomllib

import pytest

from taskqueue.cli import views
from taskqueue.cli.loadgen import BenchPlan, due, percentile, summarize
from taskqueue.cli.output import Output, fit_widths
from taskqueue.config import load_config
from taskqueue.models import Priority, QueueStats, Task, TaskState, WorkerInfo

NOW = 1_700_000_000_000


def a_task(**fields: object) -> Task:
    values: dict[str, object] = {
        "id": "01a2-task",
        "type": "mail.send",
        "priority": Priority.HIGH,
        "payload": {"to": "ada"},
        "state": TaskState.DEAD,
        "attempt": 2,
        "max_retries": 1,
        "timeout_ms": 30_000,
        "created_ms": NOW - 5_000,
        "ready_ms": NOW - 5_000,
        "started_ms": NOW - 1_250,
        "finished_ms": NOW - 1_000,
        "error": "RuntimeError: boom",
        "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n",
        "worker_id": "w1",
    }
    values.update(fields)
    return Task(**values)  # type: ignore[arg-type]


def a_worker() -> WorkerInfo:
    return WorkerInfo(
        id="w1",
        host="host-1",
        pid=42,
        task_types={"echo": "builtin taskqueue 0.1.0", "noop": "builtin taskqueue 0.1.0"},
        concurrency=50,
        in_flight=3,
        started_ms=NOW - 3_600_000,
        last_heartbeat_ms=NOW - 2_000,
        processed=120,
        failed=4,
    )


def some_stats() -> QueueStats:
    return QueueStats(
        by_state={s: i for i, s in enumerate(TaskState)},
        pending_by_priority={p: 0 for p in Priority},
        pending_by_type={"echo": 0},
        by_state_and_type={(TaskState.SCHEDULED, "echo"): 1, (TaskState.DEAD, "fail"): 4},
        totals={"submitted": 10, "dead": 4},
        workers=1,
    )


# -- words ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.35, "350ms"),
        (4.25, "4.2s"),
        (42, "42s"),
        (185, "3m05s"),
        (7380, "2h03m"),
        (273600, "3d04h"),
    ],
)
def test_span_says_a_duration_the_way_people_do(seconds: float, words: str) -> None:
    assert views.span(seconds) == words


def test_ago_says_past_and_future() -> None:
    assert views.ago(NOW - 5_000, NOW) == "5.0s ago"
    assert views.ago(NOW + 60_000, NOW) == "in 1m00s"
    assert views.ago(None, NOW) == "-"


def test_compact_keeps_one_line_and_json_strings_quoted() -> None:
    assert views.compact("a\n  b") == "a b"
    assert views.compact("x" * 100, width=10) == "x" * 9 + "…"
    assert views.compact_json("a") == '"a"'
    assert views.compact_json({"k": [1, 2]}) == '{"k": [1, 2]}'


# -- views, printed plain ---------------------------------------------------------------------


def plain(*shown: views.View) -> str:
    out = io.StringIO()
    Output(stdout=out, stderr=io.StringIO()).show(*shown)
    return out.getvalue()


def test_task_details_say_what_happened_and_indent_the_traceback() -> None:
    text = plain(views.task_details(a_task(), NOW))
    assert text.splitlines() == [
        "id:        01a2-task",
        "type:      mail.send",
        "state:     dead",
        "priority:  high",
        "attempt:   2 of 2",
        "timeout:   30s",
        'payload:   {"to": "ada"}',
        "created:   2023-11-14T22:13:15.000Z (5.0s ago)",
        "started:   2023-11-14T22:13:18.750Z (1.2s ago)",
        "finished:  2023-11-14T22:13:19.000Z (1.0s ago)",
        "ran for:   250ms",
        "worker:    w1",
        "error:     RuntimeError: boom",
        "traceback: Traceback (most recent call last):",
        "    ...",
        "  RuntimeError: boom",
    ]


def test_details_without_the_traceback_say_how_to_see_it() -> None:
    lines = plain(views.task_details(a_task(), NOW, traceback=False)).splitlines()
    assert lines[-2:] == [
        "error:     RuntimeError: boom",
        "traceback: 3 lines: taskqueue status 01a2-task --traceback",
    ]


def test_a_task_that_succeeded_after_failing_shows_its_result_before_the_old_error() -> None:
    task = a_task(state=TaskState.SUCCEEDED, result={"ok": True})
    assert plain(views.task_listing([task], NOW)).splitlines()[1].endswith('{"ok": true}')
    lines = plain(views.task_details(task, NOW, traceback=False)).splitlines()
    assert lines[-3:] == [
        'result:            {"ok": true}',
        "earlier error:     RuntimeError: boom",
        "earlier traceback: 3 lines: taskqueue status 01a2-task --traceback",
    ]


def test_listings_are_aligned_columns_without_trailing_spaces() -> None:
    tasks = [a_task(), a_task(id="02", type="x", state=TaskState.SUCCEEDED, result=[1], error=None)]
    lines = plain(views.task_listing(tasks, NOW)).splitlines()
    assert lines == [
        "ID         TYPE       STATE      PRIORITY  ATTEMPT  CREATED   DETAIL",
        "01a2-task  mail.send  dead       high      2/2      5.0s ago  RuntimeError: boom",
        "02         x          succeeded  high      2/2      5.0s ago  [1]",
    ]
    assert (
        plain(views.task_listing([], NOW))
        == "ID  TYPE  STATE  PRIORITY  ATTEMPT  CREATED  DETAIL\n"
    )


def test_numbers_are_right_aligned_and_several_views_get_titles() -> None:
    text = plain(*views.stats_views(some_stats()))
    blocks = text.split("\n\n")
    assert blocks[0].splitlines()[:3] == [
        "# tasks by state",
        "STATE      TASKS",
        "blocked        0",
    ]
    assert blocks[1].splitlines() == [
        "# live tasks by type",
        "TYPE  PENDING  SCHEDULED  ACTIVE  DEAD",
        "echo        0          1       0     0",
        "fail        0          0       0     4",
    ]
    worker_row = plain(views.worker_listing([a_worker()], NOW)).splitlines()[1]
    assert worker_row.split() == [
        "w1",
        "host-1",
        "42",
        "3/50",
        "120",
        "4",
        "1h00m",
        "2.0s",
        "ago",
        "echo,noop",
    ]


def test_configuration_as_toml_reads_back() -> None:
    config = load_config(
        None, env={}, overrides={"redis.password": "secret", "worker.task_types": "a,b"}
    )
    masked = config.masked()
    text = views.config_toml(masked)
    assert "secret" not in text
    parsed = tomllib.loads(text)
    assert parsed["redis"]["password"] == "***"
    assert parsed["worker"]["task_types"] == ["a", "b"]
    assert "url" not in parsed["redis"]  # unset: a comment
    assert "# url is unset" in text


# -- tables on a narrow terminal --------------------------------------------------------------


def test_a_table_that_fits_is_left_alone() -> None:
    assert fit_widths([36, 5, 9], 200) is None


def test_free_text_columns_share_what_the_short_ones_leave() -> None:
    # id 20, state 9, detail 60, types 40 in 90 columns: 90 - 3*4 + 1 = 79; 50 to share out.
    assert fit_widths([20, 9, 60, 40], 90) == {0: 20, 1: 9, 2: 25, 3: 25}


def test_a_short_free_text_column_gives_its_spare_room_to_the_long_one() -> None:
    assert fit_widths([20, 14, 100], 80) == {0: 20, 1: 14, 2: 80 - 9 + 1 - 20 - 14}


def test_optional_columns_are_hidden_first_then_others_from_the_right() -> None:
    # id 36, type 12, state 9, priority 8, attempt 7, created 9, detail 40, in 100 columns.
    widest = [36, 12, 9, 8, 7, 9, 40]
    # Hiding PRIORITY and ATTEMPT would leave the detail 10, then 20 characters; with
    # CREATED hidden too it gets 32, a comfortable width.
    assert fit_widths(widest, 100, optional=(3, 4, 5)) == {0: 36, 1: 12, 2: 9, 6: 32}
    # Not enough even so: optional columns go, then others from the right.
    assert fit_widths(widest, 80, optional=(3, 4, 5)) == {0: 36, 1: 12, 2: 9}
    assert fit_widths(widest, 100) == {0: 36, 1: 12, 2: 9, 3: 8, 4: 7, 5: 9}
    assert fit_widths(widest, 40) == {0: 36}


# -- bench arithmetic -------------------------------------------------------------------------


def test_pacing_sends_the_first_at_once_then_one_per_interval() -> None:
    assert [due(t, rate=10, count=5) for t in (-1, 0, 0.05, 0.1, 0.35, 10)] == [0, 1, 1, 2, 4, 5]


def test_percentiles_are_nearest_rank_values_that_were_observed() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_summary_counts_states_and_measures_from_the_records() -> None:
    plan = BenchPlan(count=3, task_type="noop")
    tasks = [
        a_task(
            id=str(i),
            state=TaskState.SUCCEEDED,
            created_ms=NOW + i,
            started_ms=NOW + i + 1,
            finished_ms=NOW + 10 * (i + 1),
        )
        for i in range(2)
    ] + [
        a_task(
            id="2", state=TaskState.PENDING, created_ms=NOW + 2, started_ms=None, finished_ms=None
        )
    ]
    report = summarize(plan, tasks, submit_seconds=0.5, timed_out=True)
    assert report.by_state == {"pending": 1, "succeeded": 2}
    assert report.finished == 2
    assert report.elapsed_seconds == 0.02  # first created to last finished
    assert report.throughput == 100.0
    assert report.latency == {"p50": 0.01, "p90": 0.019, "p99": 0.019, "max": 0.019}
    assert report.submit_rate == 6.0
    assert not report.ok


def test_types_a_limit_holds_back_get_a_column_saying_which_limit() -> None:
    stats = some_stats()
    stats.held_by_limit = {"fail": "rate"}
    lines = plain(*views.stats_views(stats)).split("\n\n")[1].splitlines()
    assert lines[1].split() == ["TYPE", "PENDING", "SCHEDULED", "ACTIVE", "DEAD", "HELD", "BY"]
    assert lines[2].split()[-1] == "-"
    assert lines[3].split()[-1] == "rate"
