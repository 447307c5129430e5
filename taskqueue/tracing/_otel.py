"""The tracing seams with OpenTelemetry: producer spans at submit, consumer spans per attempt.

Span names and attributes follow OpenTelemetry's messaging conventions: ``send <type>`` and
``process <type>``, ``messaging.system`` ``taskqueue``, the task type as the destination, the
task id as the message id; taskqueue's own (attempt, priority, outcome) under
``messaging.taskqueue.``. Only imported when OpenTelemetry's API is installed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import PackageNotFoundError, version

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, ProxyTracerProvider, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from taskqueue.models import ClaimedTask, Submission
from taskqueue.outcomes import Outcome, OutcomeKind
from taskqueue.tracing._off import UNTRACED, Passthrough

SYSTEM = "taskqueue"
#: The header W3C trace context travels in; a submission that has one keeps its own.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

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
#: Whether the application has set a tracer provider; until it does, spans would record
#: nothing, and making them would cost each task more than 10 µs.
_provider_set = False
#: When (time.monotonic) to ask again, while no provider is set.
_ask_again_at = -math.inf


def provider_set() -> bool:
    """Whether spans are worth making: the application set a tracer provider. Once set, a
    provider stays; until then OpenTelemetry is asked at most once a second (asking costs a
    look at the environment), so a provider set later is seen within a second."""
    global _provider_set, _ask_again_at
    if _provider_set:
        return True
    now = time.monotonic()
    if now < _ask_again_at:
        return False
    _ask_again_at = now + 1.0
    _provider_set = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    return _provider_set


class _RequestHeaders(Getter[Callable[[str], str | None]]):
    """Reads trace context from a request through its header lookup."""

    def get(self, carrier: Callable[[str], str | None], key: str) -> list[str] | None:
        value = carrier(key.lower())
        return None if value is None else [value]

    def keys(self, carrier: Callable[[str], str | None]) -> list[str]:
        return []


_REQUEST_HEADERS = _RequestHeaders()


def sending(
    submissions: Sequence[Submission], incoming: Callable[[str], str | None] | None = None
) -> AbstractContextManager[Sequence[Submission]]:
    """A producer span around a submit, whose value is the submissions carrying its trace
    context; without a tracer provider, the request's trace context passes on as it came."""
    if provider_set():
        return _producer_span(submissions, incoming)
    if incoming is not None and (traceparent := incoming(TRACEPARENT)) is not None:
        carrier = {TRACEPARENT: traceparent}
        if (tracestate := incoming(TRACESTATE)) is not None:
            carrier[TRACESTATE] = tracestate
        return Passthrough([_with_context(submission, carrier) for submission in submissions])
    return Passthrough(submissions)


@contextmanager
def _producer_span(
    submissions: Sequence[Submission], incoming: Callable[[str], str | None] | None
) -> Iterator[Sequence[Submission]]:
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


def processing(
    task: ClaimedTask, worker_id: str
) -> AbstractContextManager[Callable[[Outcome], None]]:
    """A consumer span around one attempt, current while the processor runs (so its own
    spans are children), whose value records the attempt's outcome on it; without a tracer
    provider, nothing."""
    return _consumer_span(task, worker_id) if provider_set() else UNTRACED


@contextmanager
def _consumer_span(task: ClaimedTask, worker_id: str) -> Iterator[Callable[[Outcome], None]]:
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
