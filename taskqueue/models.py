"""The data model: tasks, their states and priorities, submissions, worker records, statistics.

Each is a :class:`msgspec.Struct`, defined once here with its constraints, and everything else
is derived from it: the broker's Redis codec (:mod:`taskqueue.broker.codec`), the validation of
every submission whatever its source (:func:`validated`), the REST API's documents and their
JSON Schemas (:mod:`taskqueue.wire`), and the ``--json`` output of the command line. A new
field is declared here, written by the Lua script that stores it, and mapped to its protobuf
field in :mod:`taskqueue.api.grpc.convert`.

A Struct checks its constraints when it is decoded or converted, not when Python code builds
one, so the broker passes every :class:`Submission` through :func:`validated` before it
reaches Redis. Times are Unix epoch milliseconds (``int``), so they survive Redis and JSON
unchanged.
"""

from __future__ import annotations

import enum
import itertools
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypedDict, TypeVar

import msgspec
import msgspec.inspect as mi
from msgspec import Meta, Struct

from taskqueue.errors import InvalidTaskError
from taskqueue.numerals import natural
from taskqueue.rates import MAX_RATE_COUNT, RATE_PATTERN, RATE_RULE


class TaskState(enum.StrEnum):
    """Where a task is in its life. At every moment a task is in exactly one state."""

    BLOCKED = "blocked"  # waiting for the tasks it depends on to finish
    PENDING = "pending"  # ready to run, waiting in its priority queue
    SCHEDULED = "scheduled"  # waiting for a delayed start or a retry backoff
    ACTIVE = "active"  # leased by one worker
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # failed its last attempt; in the dead-letter queue
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # its deadline passed before it could start: never run, never retried

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED, TaskState.EXPIRED})


class Priority(enum.StrEnum):
    """Task priorities, most urgent first. Claims are strict in this order by default."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, value: str | Priority) -> Priority:
        """The priority named by ``value``, or a ValueError that lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown priority {value!r}: expected one of {names}") from None


#: Priorities in the order claims visit them.
PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)

#: The priority of a task whose submission and task type name none.
DEFAULT_PRIORITY = Priority.MEDIUM

if TYPE_CHECKING:
    #: A priority, or its name: Python code may write ``priority="high"``, and validation turns
    #: the name into the member (msgspec sees only ``Priority``, which decodes from the name).
    PriorityName = Priority | str
else:
    PriorityName = Priority

# -- limits: one definition each, used by the broker, both APIs and the plugin registry ----------

MAX_TYPE_LENGTH: Final = 200
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 200
MAX_RETRIES_LIMIT: Final = 1000
#: The longest run time one attempt may be given, in seconds (a week).
MAX_TIMEOUT: Final = 7 * 24 * 3600
#: How far ahead ``delay`` and ``eta`` may reach, in seconds (Lua would print a farther time in
#: exponent notation).
MAX_DELAY: Final = 10 * 365 * 86400
#: Epoch seconds beyond which no ``eta`` can be within MAX_DELAY of now (year 2286).
MAX_EPOCH_SECONDS: Final = 9_999_999_999
#: Submissions in one batch: one Lua script runs it, and Redis serves no one else meanwhile.
MAX_BATCH: Final = 1000
#: Tasks in one page of a listing, and the page size when none is asked for.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
#: Task type names: ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
#: digit (``email.send``, ``shell.run``, ``resize-v2``). The names become Redis keys, hash
#: fields, Prometheus label values and parts of messages and cursors, so nothing that
#: separates fields there (``:``, ``|``, ``,``, ``@``, spaces), no control character (NUL) and
#: no look-alike from another script gets in. One definition, written as a regex (msgspec, the
#: OpenAPI document) and as a Lua pattern (enqueue.lua, which checks every submitter's).
_TYPE_ALNUM = "A-Za-z0-9"  # ranges, in both syntaxes
_TYPE_MARKS = "._-"  # literal ('-' last, so a regex set takes it as itself)
_TYPE_PATTERN = f"^[{_TYPE_ALNUM}][{_TYPE_ALNUM}{_TYPE_MARKS}]{{0,{MAX_TYPE_LENGTH - 1}}}$"
#: The same as a Lua pattern (``%`` makes a mark literal; no counted repetition in Lua: the
#: length is checked apart).
TYPE_LUA_PATTERN: Final = (
    f"^[{_TYPE_ALNUM}][{_TYPE_ALNUM}{''.join('%' + c for c in _TYPE_MARKS)}]*$"
)
#: What a task type that breaks the pattern is told (the regex itself says little to people).
TYPE_RULE: Final = (
    f"1 to {MAX_TYPE_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a letter or"
    " digit"
)

#: Schedule names: the same characters as task types, shorter (they go into idempotency keys).
MAX_SCHEDULE_NAME_LENGTH: Final = 100
SCHEDULE_NAME_PATTERN: Final = (
    f"^[{_TYPE_ALNUM}][{_TYPE_ALNUM}{_TYPE_MARKS}]{{0,{MAX_SCHEDULE_NAME_LENGTH - 1}}}$"
)
SCHEDULE_NAME_RULE: Final = (
    f"1 to {MAX_SCHEDULE_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a"
    " letter or digit"
)

#: Group names (fair share, see Submission.group): the same characters as task types, since
#: they become parts of Redis keys and stats too.
MAX_GROUP_LENGTH: Final = 128
GROUP_PATTERN: Final = f"^[{_TYPE_ALNUM}][{_TYPE_ALNUM}{_TYPE_MARKS}]{{0,{MAX_GROUP_LENGTH - 1}}}$"
GROUP_RULE: Final = (
    f"1 to {MAX_GROUP_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a letter or"
    " digit"
)
GroupName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_GROUP_LENGTH,
        pattern=GROUP_PATTERN,
        description="The group the task belongs to (a tenant, a customer, a repository): "
        "within a priority, claims take turns across the groups that have ready tasks, so one "
        "group's backlog does not delay another's tasks. " + GROUP_RULE + ".",
        examples=["tenant-42"],
    ),
]

#: Task headers: metadata that travels with a task apart from its payload (a trace context,
#: a tenant, a correlation id), read by processors and middleware. Names are header-like
#: (``traceparent``, ``x-tenant``); both are small, since every claim carries them.
MAX_HEADERS: Final = 32
MAX_HEADER_NAME_LENGTH: Final = 128
MAX_HEADER_VALUE_LENGTH: Final = 4096
#: Their whole size as JSON, checked by the broker (a Struct cannot say it).
MAX_HEADERS_BYTES: Final = 8192
HEADER_NAME_PATTERN: Final = (
    f"^[{_TYPE_ALNUM}][{_TYPE_ALNUM}{_TYPE_MARKS}]{{0,{MAX_HEADER_NAME_LENGTH - 1}}}$"
)
HEADER_NAME_RULE: Final = (
    f"1 to {MAX_HEADER_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a"
    " letter or digit"
)
_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
HeaderName = Annotated[str, Meta(pattern=HEADER_NAME_PATTERN, max_length=MAX_HEADER_NAME_LENGTH)]
HeaderValue = Annotated[str, Meta(max_length=MAX_HEADER_VALUE_LENGTH)]
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    Meta(
        max_length=MAX_HEADERS,
        description=f"Metadata for the task's processor and middleware (a `traceparent`, a "
        f"tenant): at most {MAX_HEADERS} names ({HEADER_NAME_RULE}) with text values of at "
        f"most {MAX_HEADER_VALUE_LENGTH} characters, {MAX_HEADERS_BYTES} bytes in all as JSON. "
        "Kept across retries.",
    ),
]

TaskType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TYPE_LENGTH,
        pattern=_TYPE_PATTERN,
        description="Names the processor that runs the task, e.g. `email.send`: " + TYPE_RULE + ".",
        examples=["echo"],
    ),
]
MaxRetries = Annotated[int, Meta(ge=0, le=MAX_RETRIES_LIMIT)]
Timeout = Annotated[float, Meta(gt=0, le=MAX_TIMEOUT, description="Seconds one attempt may run.")]
Delay = Annotated[
    float,
    Meta(
        ge=0,
        lt=MAX_DELAY,
        description="Start no sooner than this many seconds from now. Not with `eta`.",
    ),
]
EpochSeconds = Annotated[float, Meta(ge=0, le=MAX_EPOCH_SECONDS)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        description="A second submission with the same key within `task.idempotency_window` "
        "returns the first task instead. The `Idempotency-Key` header is the same.",
    ),
]
#: Epoch milliseconds.
Millis = Annotated[int, Meta(ge=0, description="Unix epoch milliseconds.")]
Count = Annotated[int, Meta(ge=0)]


#: Submission fields that exclude each other: a task waits for a delay, or until a time.
EXCLUSIVE_SUBMISSION_FIELDS: Final = ("delay", "eta")
#: The same for its deadline: a time from now, or a time.
EXCLUSIVE_DEADLINE_FIELDS: Final = ("expires_in", "expires_at")
#: Tasks one task may depend on: each of their endings touches it.
MAX_DEPENDENCIES: Final = MAX_BATCH


class DependencyFailure(enum.StrEnum):
    """What becomes of a task when a task it depends on ends dead, cancelled or expired."""

    CANCEL = "cancel"  # it ends cancelled too, naming the dependency (the default)
    RUN = "run"  # it runs anyway, once every dependency has ended; a failed one's input is null


if TYPE_CHECKING:  # as PriorityName: Python code may write the name
    DependencyFailureName = DependencyFailure | str
else:
    DependencyFailureName = DependencyFailure


#: A dependency: a task id, or the index of an earlier task of the same batch.
Dependency = Annotated[
    str | Annotated[int, Meta(ge=0, lt=MAX_BATCH)],
    Meta(
        description="A task id, or the index (from 0) of an earlier task in the same batch.",
        examples=[0],
    ),
]


#: Which payload a debounced task keeps when later submissions join it.
DebounceKeep = Literal["last", "first"]
#: What a debounced submission did: made the task, replaced its payload, or joined it.
DebounceOutcome = Literal["created", "replaced", "joined"]


class Debounce(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Submissions with one debounce key collapse into one waiting task: each one inside the
    window moves the task's start to ``window`` after it, but never past ``max_wait`` after
    the first, so a steady stream still runs."""

    key: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            description="Submissions with this key (and the same type) while its task waits "
            "to start join that task.",
        ),
    ]
    window: Annotated[
        float,
        Meta(
            gt=0,
            lt=MAX_DELAY,
            description="Seconds: the task starts once this long has passed with no "
            "submission joining it.",
        ),
    ]
    max_wait: (
        Annotated[
            float,
            Meta(
                gt=0,
                lt=MAX_DELAY,
                description="Seconds: the task starts no later than this long after the "
                "submission that created it, however many join it (at least `window`). "
                "Unset: no bound.",
            ),
        ]
        | None
    ) = None
    keep: Annotated[
        DebounceKeep,
        Meta(
            description="The payload the task runs with: the `last` submission's (the "
            "default) or the `first` one's."
        ),
    ] = "last"


class Submission(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A task to submit. An unset priority, max_retries or timeout takes the task type's
    default (registered by its processor's plugin), else the server's.

    `delay` (seconds from now) and `eta` (a time with its zone, or epoch seconds) are
    alternatives; a task with either starts `scheduled` and becomes `pending` when its time
    comes. (Single backticks: this text is also the OpenAPI document's, which is Markdown.)
    """

    type: TaskType
    payload: Annotated[
        Any,
        Meta(
            description="The processor's input: any JSON value (integers within 64 bits), at "
            "most `task.max_payload_bytes` once encoded, else 413."
        ),
    ] = None
    priority: PriorityName | None = None
    max_retries: MaxRetries | None = None
    timeout: Timeout | None = None
    delay: Delay | None = None
    eta: (
        Annotated[
            EpochSeconds | AwareDatetime,
            Meta(
                description="Start no sooner than this time: RFC 3339 with an offset, or Unix "
                "epoch seconds; less than 10 years from now. Not with `delay`."
            ),
        ]
        | None
    ) = None
    idempotency_key: IdempotencyKey | None = None
    depends_on: (
        Annotated[
            list[Dependency],
            Meta(
                max_length=MAX_DEPENDENCIES,
                description="Tasks that must succeed before this one runs: it stays `blocked` "
                "until then, and its processor receives their results as its inputs, in this "
                "order. A task id, or the index of an earlier task of the same batch (a chain, "
                "a group with a callback, any DAG submitted in one call).",
            ),
        ]
        | None
    ) = None
    unique: (
        Annotated[
            bool,
            Meta(
                description="While a task of the same type and payload (the same JSON text) is "
                "blocked, pending, scheduled or active, return it instead of adding this one "
                "(`created` false). Unset: the type's policy (`unique`), else no."
            ),
        ]
        | None
    ) = None
    on_dependency_failure: (
        Annotated[
            DependencyFailureName,
            Meta(
                description="When a dependency ends dead, cancelled or expired: `cancel` this "
                "task too (the default), or `run` it anyway once all have ended (that input is "
                "null)."
            ),
        ]
        | None
    ) = None
    expires_in: (
        Annotated[
            float,
            Meta(
                gt=0,
                lt=MAX_DELAY,
                description="Its deadline, in seconds from now: a task that has not started by "
                "then ends `expired`, never run; so does one whose next attempt (a retry, a "
                "snooze) would start later. Not with `expires_at`.",
            ),
        ]
        | None
    ) = None
    expires_at: (
        Annotated[
            EpochSeconds | AwareDatetime,
            Meta(
                description="Its deadline as a time: RFC 3339 with an offset, or Unix epoch "
                "seconds; in the future and not before its `eta` or `delay`. Not with "
                "`expires_in`."
            ),
        ]
        | None
    ) = None
    headers: Headers | None = None
    group: GroupName | None = None
    debounce: (
        Annotated[
            Debounce,
            Meta(
                description="Collapse submissions with one key into one task that starts "
                "once they stop (see `Debounce`). Not with `delay`, `eta`, `idempotency_key`, "
                "`unique` or `depends_on`."
            ),
        ]
        | None
    ) = None


#: The longest idempotency window a policy may set (seconds): the same bound as a delay's.
MAX_WINDOW: Final = MAX_DELAY
#: The largest depth limit a policy may set.
MAX_DEPTH: Final = 10**12
#: Distinct task types that may have tasks at once (policy ``max_task_types``), and the most it
#: may be set to: each type costs a few keys and counters, and every listing of pending tasks
#: and scrape of the metrics walks them.
DEFAULT_MAX_TASK_TYPES: Final = 1000
MAX_TASK_TYPES: Final = 1_000_000
#: The most snoozes a policy may allow a task; the default is DEFAULT_MAX_SNOOZES.
MAX_SNOOZES: Final = 1_000_000
#: The most partitions a namespace may have (redis.partitions): each is a full set of keys,
#: and every namespace-wide read touches each.
MAX_PARTITIONS: Final = 256
DEFAULT_MAX_SNOOZES: Final = 100
#: How recent a claim's note that a limit held a type back must be for stats to say it is held.
HELD_FRESH_MS: Final = 5_000
#: The largest fleet-wide concurrency limit a policy may set for a type.
MAX_CONCURRENCY: Final = 1_000_000


class Policy(Struct, kw_only=True, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Queue policy of one scope: every task type, or one. Stored in Redis and enforced by
    the enqueue script for every submitter (API, CLI, both clients).

    A null (or absent) setting is unset: a task type's falls back to the global one, the
    global one to the server's built-in default. A submission's own priority, max_retries and
    timeout win over all of them.
    """

    max_queue_depth: (
        Annotated[
            int,
            Meta(ge=0, le=MAX_DEPTH, description="Most pending tasks of a type; 0: no limit."),
        ]
        | None
    ) = None
    max_retries: MaxRetries | None = None
    timeout: Timeout | None = None
    priority: PriorityName | None = None
    idempotency_window: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=MAX_WINDOW,
                description="Seconds an idempotency key returns the task first submitted with it.",
            ),
        ]
        | None
    ) = None
    refuse_unserved: (
        Annotated[
            bool,
            Meta(description="Refuse submissions of a type no live worker serves."),
        ]
        | None
    ) = None
    max_task_types: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=MAX_TASK_TYPES,
                description="Most distinct task types with tasks (pending, scheduled, active or "
                "dead) at once; a submission of one more type is refused. 0: no limit. Global "
                "only.",
            ),
        ]
        | None
    ) = None
    rate_limit: (
        Annotated[
            str,
            Meta(
                pattern=RATE_PATTERN,
                description="Most tasks of the type started per interval across every worker, "
                "e.g. `100/s`, `1000/min`, `5/10s`: evenly spaced, `rate_burst` at once. Tasks "
                "over it wait in the queue. Per task type only.",
                examples=["100/s"],
            ),
        ]
        | None
    ) = None
    rate_burst: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_RATE_COUNT,
                description="Tasks `rate_limit` lets start at once after a quiet spell; 1 (the "
                "default): evenly spaced. Per task type only.",
            ),
        ]
        | None
    ) = None
    concurrency: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_CONCURRENCY,
                description="Most tasks of the type running at once across every worker; "
                "more wait in the queue. Per task type only.",
            ),
        ]
        | None
    ) = None
    group_concurrency: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_CONCURRENCY,
                description="Most tasks of one group (fair share) of the type running at once "
                "across every worker; the group's other tasks wait while the other groups take "
                "their turns. Per task type only.",
            ),
        ]
        | None
    ) = None
    group_rate_limit: (
        Annotated[
            str,
            Meta(
                pattern=RATE_PATTERN,
                description="Most tasks of one group (fair share) of the type started per "
                "interval across every worker, e.g. `10/min`: evenly spaced, one at a time. A "
                "group over it rests while the other groups take their turns. Per task type "
                "only.",
                examples=["10/min"],
            ),
        ]
        | None
    ) = None
    paused: (
        Annotated[
            bool,
            Meta(
                description="Workers claim no task of the type; submissions still queue. "
                "Per task type only.",
            ),
        ]
        | None
    ) = None
    unique: (
        Annotated[
            bool,
            Meta(
                description="A submission of the same type and payload as a task still "
                "blocked, pending, scheduled or active returns that task instead (a submission's "
                "own `unique` wins)."
            ),
        ]
        | None
    ) = None
    max_snoozes: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=MAX_SNOOZES,
                description="Most times a task's processor may snooze it (each waits without "
                "spending an attempt); one more dead-letters the task.",
            ),
        ]
        | None
    ) = None


class SubmitOptions(TypedDict, total=False):
    """A :class:`Submission`'s fields beyond its type and payload, as keyword arguments of the
    clients' ``submit`` (``client.submit("mail.send", payload, priority="high")``). A test
    holds the two to the same fields."""

    priority: PriorityName | None
    max_retries: int | None
    timeout: float | None
    delay: float | None
    eta: datetime | float | None
    idempotency_key: str | None
    unique: bool | None
    depends_on: list[str | int] | None
    on_dependency_failure: DependencyFailure | str | None
    expires_in: float | None
    expires_at: datetime | float | None
    headers: dict[str, str] | None
    group: str | None
    debounce: Debounce | None


class Task(Struct, kw_only=True):
    """One unit of work and everything known about it.

    `attempt` counts the times the task has been claimed: 0 before its first run, and it
    doubles as the fencing token of the current lease.
    """

    id: Annotated[str, Meta(description="A UUIDv7: ids sort by creation time.")]
    type: str
    priority: Priority = Priority.MEDIUM
    payload: Annotated[Any, Meta(description="Any JSON value.")] = None
    state: TaskState = TaskState.PENDING
    attempt: Annotated[
        int,
        Meta(
            ge=0,
            description="Times the task was claimed; 0 before its first run. A snoozed run "
            "or one its worker released at shutdown is given back.",
        ),
    ] = 0
    snoozes: Annotated[
        int, Meta(ge=0, description="Times its processor snoozed it (see max_snoozes).")
    ] = 0
    max_retries: Count = 3
    timeout_ms: Count = 300_000
    created_ms: Millis = 0
    ready_ms: Annotated[
        int, Meta(ge=0, description="When it became (or becomes) ready to run.")
    ] = 0
    started_ms: Millis | None = None
    finished_ms: Millis | None = None
    expires_ms: (
        Annotated[
            int,
            Meta(
                ge=0, description="Its deadline (epoch ms): not started by then, it ends expired."
            ),
        ]
        | None
    ) = None
    result: Annotated[Any, Meta(description="What the processor returned (null until then).")] = (
        None
    )
    error: str | None = None
    traceback: str | None = None
    idempotency_key: str | None = None
    unique_key: Annotated[
        str | None,
        Meta(description="Set for a unique task: a hash of its type and payload."),
    ] = None
    worker_id: str | None = None
    cancel_requested: bool = False
    progress: Annotated[Any, Meta(description="The last progress a running task reported.")] = None
    depends_on: Annotated[
        list[str], Meta(description="The tasks this one waited for, in the order given.")
    ] = msgspec.field(default_factory=list)
    dependents: Annotated[list[str], Meta(description="The tasks that wait for this one.")] = (
        msgspec.field(default_factory=list)
    )
    waiting_for: Annotated[
        list[str], Meta(description="The dependencies it still waits for (while `blocked`).")
    ] = msgspec.field(default_factory=list)
    on_dependency_failure: DependencyFailure = DependencyFailure.CANCEL
    inputs: Annotated[
        Any,
        Meta(
            description="The results of `depends_on`, in its order, once all ended (null for "
            "one that failed, when the task runs anyway)."
        ),
    ] = None
    headers: Annotated[dict[str, str], Meta(description="The headers it was submitted with.")] = (
        msgspec.field(default_factory=dict)
    )
    group: Annotated[
        str | None, Meta(description="The group it was submitted in (fair share); null: none.")
    ] = None

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_retries + 1 - self.attempt)


#: Most tasks one read of a workflow returns.
MAX_WORKFLOW_TASKS: Final = 10_000


class WorkflowTask(Struct, kw_only=True, frozen=True):
    """One task of a workflow, as the workflow's view shows it."""

    id: str
    type: str
    state: TaskState
    priority: Priority
    depends_on: list[str] = msgspec.field(default_factory=list)
    dependents: list[str] = msgspec.field(default_factory=list)
    error: str | None = None


class Workflow(Struct, kw_only=True, frozen=True):
    """Every task linked to one through dependencies, read at one moment (one script)."""

    tasks: Annotated[
        list[WorkflowTask],
        Meta(description="Breadth first from the task asked for, which comes first."),
    ]
    by_state: Annotated[
        dict[TaskState, int], Meta(description="How many of the tasks are in each state.")
    ]
    complete: Annotated[
        bool,
        Meta(description=f"False when the workflow has more than {MAX_WORKFLOW_TASKS} tasks."),
    ] = True

    @property
    def finished(self) -> bool:
        """Every task of it has ended."""
        return all(t.state.is_terminal for t in self.tasks)


class ClaimedTask(Struct, kw_only=True, frozen=True):
    """What a worker receives from a claim: just enough to run the task and report on it."""

    id: str
    type: str
    priority: Priority
    payload: Any
    attempt: int
    max_retries: int
    timeout_ms: int
    ready_ms: int
    started_ms: int
    #: The results of the tasks it depended on, in order (None without dependencies).
    inputs: Any = None
    #: Its deadline (epoch ms; None for none): a worker does not start it later than that.
    expires_ms: int | None = None
    #: The headers it was submitted with (empty for none).
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Its fair share group (None for none).
    group: str | None = None


class HandOff(Struct, frozen=True):
    """A task handed off to a worker (see broker/lua/_lib.lua), with the token that tells this
    hand-off from any other of the same task: the worker takes each token once, whether it
    hears of it by message or by a claim."""

    task: ClaimedTask
    token: str


class Claim(Struct, frozen=True):
    """One claim's answer: the tasks leased, and when a rate limit lets the next of a type it
    held back start (epoch ms; None when no rate limit held a task back), so a worker can wait
    until then rather than poll."""

    tasks: list[ClaimedTask]
    held_until_ms: int | None = None
    #: The type and priority of each task the claim took off a queue past its deadline and
    #: ended expired instead of leasing (the claiming worker counts them in its metrics).
    expired: list[tuple[str, Priority]] = msgspec.field(default_factory=list)
    #: The worker's last hand-off, when it did not say it had it: it may have it already.
    handed: list[HandOff] = msgspec.field(default_factory=list)


class WorkerInfo(Struct, kw_only=True):
    """A worker's registration, refreshed by its heartbeat."""

    id: str
    host: str
    pid: int
    task_types: Annotated[
        dict[str, str],
        Meta(description="Each task type it runs, with the plugin and version providing it."),
    ]
    concurrency: Count
    in_flight: Count
    started_ms: Millis
    last_heartbeat_ms: Millis
    processed: Count = 0
    failed: Count = 0
    instance: Annotated[
        str | None,
        Meta(
            description="Which process of its host this is (boot id, pid namespace, start "
            "time), so that a worker on the same host can tell when it has died."
        ),
    ] = None


#: How many groups of each grouped task type the stats name (the top ones by backlog): a
#: bound, so a million tenants cost the stats and ``/metrics`` no more than ten.
TOP_GROUPS: Final = 10


class GroupLoad(Struct, frozen=True, kw_only=True):
    """One group of a task type: its pending (ready) and active tasks."""

    group: str
    pending: int
    active: int


class GroupStats(Struct, frozen=True, kw_only=True):
    """The groups of one task type with grouped tasks (fair share)."""

    type: str
    #: Groups with pending tasks, and groups with active ones.
    groups_pending: int
    groups_active: int
    #: The groups with the most pending tasks, most first (then, when fewer groups wait than
    #: :data:`TOP_GROUPS`, the busiest of the rest by active tasks).
    top: list[GroupLoad]


class QueueStats(Struct, kw_only=True):
    """Counts kept incrementally by the broker, so reading them costs O(1) on Redis (the
    groups: O(log groups) per grouped type)."""

    by_state: dict[TaskState, int]
    pending_by_priority: dict[Priority, int]
    pending_by_type: dict[str, int]
    #: (state, type) -> count, for the live states (pending, scheduled, active, dead).
    by_state_and_type: dict[tuple[TaskState, str], int]
    #: Lifetime totals of outcomes: submitted, succeeded, failed, retried, dead, cancelled,
    #: expired, reaped.
    totals: dict[str, int]
    #: Registered workers (a dead worker counts until the reaper removes its record).
    workers: int = 0
    #: (state, priority) -> count, for the live states (pending, scheduled, active, dead).
    by_state_and_priority: dict[tuple[TaskState, Priority], int] = msgspec.field(
        default_factory=dict
    )
    #: Task types whose pending tasks a limit holds back -> which limit (``rate`` or
    #: ``concurrency``): a claim left them waiting within the last :data:`HELD_FRESH_MS`.
    held_by_limit: dict[str, str] = msgspec.field(default_factory=dict)
    #: The grouped task types, by name.
    groups: list[GroupStats] = msgspec.field(default_factory=list)


class TaskEvent(Struct, frozen=True):
    """One change of a task's state, as the scripts publish it on the events channel and the
    APIs stream it to watchers.

    ``state`` is a :class:`TaskState` value, or ``"progress"`` when a running task reported
    progress.
    """

    task_id: str
    type: str
    state: Annotated[str, Meta(description="A task state, or `progress`.")]

    @property
    def is_end(self) -> bool:
        """The task reached a terminal state (succeeded, dead, cancelled or expired)."""
        return self.state in _TERMINAL_NAMES


_TERMINAL_NAMES = frozenset(s.value for s in _TERMINAL)

# -- validation ------------------------------------------------------------------------------

T = TypeVar("T")

#: msgspec's errors end with where they happened: "Expected `int`, got `str` - at `$.a[0].b`".
#: An error in a mapping's key says "at `key` in `$.headers`"; one in a value, "`$.headers[...]`".
_WHERE = re.compile(
    r"^(?P<message>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL
)
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]+)`$")
#: A ``__post_init__`` check names its field the same way: ``ValueError("url: must be https")``.
_NAMED = re.compile(r"^([A-Za-z_]\w*): (.+)$", re.DOTALL)


def validated(value: object, kind: type[T], *, prefix: str = "") -> T:
    """``value`` (plain Python data) as ``kind``, its constraints checked; else an
    :class:`~taskqueue.errors.InvalidTaskError` naming the field at fault as a dotted path
    (``tasks.3.priority``), after ``prefix``."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise invalid_field(exc, kind, value, prefix=prefix) from None


def invalid_field(
    exc: msgspec.ValidationError, kind: object, value: object, *, prefix: str = ""
) -> InvalidTaskError:
    """The :class:`~taskqueue.errors.InvalidTaskError` for one of msgspec's errors about
    ``value`` (plain data) as ``kind``: the field named as a dotted path, and the message
    completed with the value given, the fields an object may have, or an enum's values."""
    field, message = describe(str(exc), kind, value)
    field = ".".join(part for part in (prefix, field) if part)
    return InvalidTaskError(f"{field}: {message}" if field else message, field=field or None)


def describe(error: str, kind: object, value: object) -> tuple[str, str]:
    """One of msgspec's messages as (the dotted field it names, what is wrong with it)."""
    match = _WHERE.match(error)
    assert match is not None  # the pattern matches any text
    message = match["message"]
    parts = [part for part in re.split(r"[.\[\]]+", match["path"] or "") if part]
    at = _type_at(kind, parts)
    if missing := _MISSING_FIELD.match(message):
        return ".".join([*parts, missing[1]]), "this field is required"
    if unknown := _UNKNOWN_FIELD.match(message):
        known = ", ".join(f.name for f in at.fields) if isinstance(at, mi.StructType) else ""
        expected = f"; expected one of {known}" if known else ""
        return ".".join([*parts, unknown[1]]), f"unknown field{expected}"
    if isinstance(at, mi.StructType) and (named := _NAMED.match(message)):
        return ".".join([*parts, named[1]]), named[2]
    given = _at(value, parts)
    if match["key"] or (match["path"] or "").endswith("[...]"):
        # msgspec does not say which key: name the first that breaks the rule, if any.
        keys = given if isinstance(given, dict) else {}
        given = next((k for k in keys if not _HEADER_NAME.match(str(k))), _MISSING)
        if not match["key"]:
            given = _MISSING
            message += " for a value"
    shown = "" if given is _MISSING else _show(given)
    if f"matching regex {_TYPE_PATTERN!r}" in message:
        message = f"invalid task type {shown}: {TYPE_RULE}"
    elif f"matching regex {RATE_PATTERN!r}" in message:
        message = f"{shown} is not a rate: {RATE_RULE}"
    elif f"matching regex {SCHEDULE_NAME_PATTERN!r}" in message:
        message = f"invalid schedule name {shown}: {SCHEDULE_NAME_RULE}"
    elif f"matching regex {HEADER_NAME_PATTERN!r}" in message:
        message = f"invalid header name {shown}: {HEADER_NAME_RULE}"
    elif "got `" in message and shown:
        message += f" ({shown})"
    elif shown and not (isinstance(given, str) and shown in message):
        message += f", not {shown}"
    if isinstance(at, mi.EnumType):
        message += "; expected one of " + ", ".join(str(m.value) for m in at.cls)
    return ".".join(parts), message.replace("`", "")


_MISSING = object()


def _at(value: object, parts: list[str]) -> object:
    """What ``value`` holds at the path ``parts``, or _MISSING."""
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list) and (index := natural(part)) is not None and index < len(value)
        ):
            value = value[index]
        else:
            return _MISSING
    return value


def _type_at(kind: object, parts: list[str]) -> mi.Type | None:
    """The type at the path ``parts`` inside ``kind``, without annotations or ``| None``
    (None where the path leads nowhere the type says)."""
    info: mi.Type | None = _unwrap(mi.type_info(kind))
    for part in parts:
        if isinstance(info, mi.StructType):
            fields = {f.name: f.type for f in info.fields}
            info = _unwrap(fields[part]) if part in fields else None
        elif isinstance(info, mi.ListType | mi.DictType):
            inner = info.item_type if isinstance(info, mi.ListType) else info.value_type
            info = _unwrap(inner)
        else:
            return None
    return info


def _unwrap(info: mi.Type) -> mi.Type:
    """The type inside annotations and ``| None``."""
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(kinds) != 1:
                return info
            info = kinds[0]
        else:
            return info


#: How much of a value an error message shows.
_SHOWN_CHARS: Final = 60


def _show(value: object) -> str:
    """``value``'s repr, cut to :data:`_SHOWN_CHARS`; only its start is rendered, so a list of
    150,000 entries (a request's) costs what a short one does."""
    text = repr(_start_of(value, depth=0))
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


class _Cut:
    """Stands where :func:`_start_of` stopped: past the characters that are shown."""

    def __repr__(self) -> str:
        return "..."


def _start_of(value: object, *, depth: int) -> object:
    """As much of ``value`` (plain data) as the shown start of its repr can show: each of 20
    entries takes at least 3 of its 60 characters, and 20 levels of nesting take 20."""
    if depth >= 20:
        return _Cut()
    if isinstance(value, str | bytes):
        return value[:_SHOWN_CHARS]
    if isinstance(value, list | tuple):
        entries = [_start_of(v, depth=depth + 1) for v in value[:20]]
        return type(value)([*entries, _Cut()] if len(value) > 20 else entries)
    if isinstance(value, dict):
        items = list(itertools.islice(value.items(), 20))
        fields: dict[object, object] = {k: _start_of(v, depth=depth + 1) for k, v in items}
        return fields if len(value) <= 20 else {**fields, _Cut(): _Cut()}
    return value
