"""The tracing seams with OpenTelemetry: producer spans at submit, consumer spans per attempt.

Span names and attributes follow OpenTelemetry's messaging conventions: ``send <type>`` and
``process <type>``, ``messaging.system`` ``taskqueue``, the task type as the destination, the
task id as the message id; taskqueue's own (attempt, priority, outcome) under
``messaging.taskqueue.``. Only imported when OpenTelemetry's API is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from taskqueue.models import ClaimedTask, Submission
from taskqueue.outcomes import Outcome, OutcomeKind

SYSTEM = "taskqueue"
#: The header W3C trace context travels in; a submission that has one keeps its own.
TRACEPARENT = "traceparent"

#: Attempts that end this way are errors on their span.
_FAILED = frozenset(
    {OutcomeKind.FAILED, OutcomeKind.REJECTED, OutcomeKind.TIMED_OUT, OutcomeKind.LOST}
)

try:
    _VERSION: str | None = version("taskqueue")
except PackageNotFoundError:  # pragma: no cover (run from a tree that was not installed)
    _VERSION = None
# A proxy until the application sets a tracer provider, then that provider's tracer.
_tracer = trace.get_tracer("taskqueue", _VERSION)


class _RequestHeaders(Getter[Callable[[str], str | None]]):
    """Reads trace context from a request through its header lookup."""

    def get(self, carrier: Callable[[str], str | None], key: str) -> list[str] | None:
        value = carrier(key.lower())
        return None if value is None else [value]

    def keys(self, carrier: Callable[[str], str | None]) -> list[str]:
        return []


_REQUEST_HEADERS = _RequestHeaders()


@contextmanager
def sending(
    submissions: Sequence[Submission], incoming: Callable[[str], str | None] | None = None
) -> Iterator[Sequence[Submission]]:
    """A producer span around a submit; yields the submissions carrying its trace context."""
    parent = propagate.extract(incoming, getter=_REQUEST_HEADERS) if incoming else None
    types = {submission.type for submission in submissions}
    destination = types.pop() if len(types) == 1 else None
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if destination is not None:
        attributes["messaging.destination.name"] = destination
    if len(submissions) != 1:
        attributes["messaging.batch.message_count"] = len(submissions)
    name = f"send {destination}" if destination is not None else "send"
    with _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:  # nothing to propagate: no recorded span, no caller's context
            yield submissions
        else:
            yield [_with_context(submission, carrier) for submission in submissions]


def _with_context(submission: Submission, carrier: dict[str, str]) -> Submission:
    headers = submission.headers or {}
    if TRACEPARENT in headers:
        return submission
    return msgspec.structs.replace(submission, headers={**headers, **carrier})


@contextmanager
def processing(task: ClaimedTask, worker_id: str) -> Iterator[Callable[[Outcome], None]]:
    """A consumer span around one attempt, current while the processor runs (so its own
    spans are children); yields the function that records the attempt's outcome on it."""
    created = propagate.extract(task.headers) if task.headers else Context()
    submitted = trace.get_current_span(created).get_span_context()
    if task.attempt > 1 and submitted.is_valid:
        # A retry is a trace of its own, linked back to the submission the first was part of.
        parent, links = Context(), [Link(submitted, {"messaging.taskqueue.link": "submission"})]
    else:
        parent, links = created, []
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": task.type,
        "messaging.message.id": task.id,
        "messaging.client.id": worker_id,
        "messaging.taskqueue.attempt": task.attempt,
        "messaging.taskqueue.priority": task.priority.name.lower(),
    }
    with _tracer.start_as_current_span(
        f"process {task.type}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
    ) as span:

        def ended(outcome: Outcome) -> None:
            span.set_attribute("messaging.taskqueue.outcome", outcome.kind.value)
            if outcome.kind in _FAILED:
                span.set_attribute("error.type", outcome.kind.value)
                span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.kind.value))

        yield ended
