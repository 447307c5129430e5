"""OpenTelemetry: submits inject W3C trace context into task headers under a producer span, a
worker runs each attempt in a consumer span (the producer's child on the first attempt, a new
trace linked back to it on a retry), and without OpenTelemetry nothing imports it.

Spans are read from the SDK's in-memory exporter, through a tracer the tests put in place of
the global one (the process-wide provider can be set only once); a subprocess checks the
global path a user takes, with ``trace.set_tracer_provider``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import api_server
from daemon_helpers import wait_for_state
from grpc_helpers import grpc_call, grpc_server
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskqueue import Client, SyncClient, tracing
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Submission
from taskqueue.daemon.runtime import Mode
from taskqueue.models import ClaimedTask, Priority, TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.tracing import _off, _otel

TYPE = "test.traced"
FLAKY = "test.traced.flaky"
#: A caller's trace context, as an instrumented HTTP or gRPC client sends it.
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

#: The span current while each task's processor ran, per task id and attempt.
current_spans: dict[tuple[str, int], trace.SpanContext] = {}


async def traced(ctx: TaskContext) -> None:
    current_spans[ctx.id, ctx.attempt] = trace.get_current_span().get_span_context()


async def flaky(ctx: TaskContext) -> None:
    current_spans[ctx.id, ctx.attempt] = trace.get_current_span().get_span_context()
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add(TYPE, traced)
    registry.add(FLAKY, flaky)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Every span taskqueue ends during the test, in the order they end."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_otel, "_tracer", provider.get_tracer("taskqueue"))
    monkeypatch.setattr(_otel, "_provider_set", True)
    current_spans.clear()
    yield exporter
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


def hex_id(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


def test_tracing_is_on_here() -> None:
    # The dev install has OpenTelemetry: the other tests here trace for real.
    assert tracing.enabled and tracing.processing is not None


async def test_a_task_submitted_in_a_span_runs_in_a_consumer_span_that_is_its_child(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    outer = _otel._tracer
    async with (
        api_server(redis_url, mode=Mode.RUN, plugins=(sys.modules[__name__],)) as server,
        Client(redis_url) as client,
    ):
        with outer.start_as_current_span("handle request") as request:
            submitted = await client.submit(TYPE, {"n": 1})
        await wait_for_state(server.broker, submitted.id, TaskState.SUCCEEDED)
        task = await client.get(submitted.id)

    (send,) = named(spans, f"send {TYPE}")
    (process,) = named(spans, f"process {TYPE}")
    request_context = request.get_span_context()
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request_context.span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request_context.trace_id
    # The header on the task is the producer span's context.
    context = send.context
    assert task.headers["traceparent"] == (
        f"00-{hex_id(context.trace_id, 32)}-{hex_id(context.span_id, 16)}"
        f"-{hex_id(context.trace_flags, 2)}"
    )
    # The processor ran inside the consumer span: its own spans would be children of it.
    assert current_spans[submitted.id, 1].span_id == process.context.span_id
    assert dict(process.attributes or {}) == {
        "messaging.system": "taskqueue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": TYPE,
        "messaging.message.id": submitted.id,
        "messaging.client.id": process.attributes["messaging.client.id"],  # type: ignore[index]
        "messaging.taskqueue.attempt": 1,
        "messaging.taskqueue.priority": "medium",
        "messaging.taskqueue.outcome": "succeeded",
    }
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == TYPE
    assert process.status.status_code is StatusCode.UNSET


async def test_a_retry_is_a_new_trace_linked_back_to_the_submission(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    async with (
        api_server(
            redis_url,
            mode=Mode.RUN,
            plugins=(sys.modules[__name__],),
            task__retry_base_delay=0.01,
        ) as server,
        Client(redis_url) as client,
    ):
        submitted = await client.submit(FLAKY, max_retries=2)
        await wait_for_state(server.broker, submitted.id, TaskState.SUCCEEDED)

    (send,) = named(spans, f"send {FLAKY}")
    first, retry = named(spans, f"process {FLAKY}")
    assert first.attributes is not None and retry.attributes is not None
    assert (first.attributes["messaging.taskqueue.attempt"], first.status.status_code) == (
        1,
        StatusCode.ERROR,
    )
    assert first.attributes["messaging.taskqueue.outcome"] == "failed"
    assert "first attempt fails" in (first.status.description or "")
    assert first.parent is not None and first.parent.span_id == send.context.span_id
    # The retry: a trace of its own, a root span, one link back to the first attempt's trace
    # at the submission's span (the first attempt's parent).
    assert retry.attributes["messaging.taskqueue.attempt"] == 2
    assert retry.parent is None and retry.context.trace_id != first.context.trace_id
    (link,) = retry.links
    assert (link.context.trace_id, link.context.span_id) == (
        first.context.trace_id,
        first.parent.span_id,
    )
    assert current_spans[submitted.id, 2].span_id == retry.context.span_id


async def test_rest_continues_the_callers_trace_into_the_task(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    async with api_server(redis_url) as server, server.client() as http:
        one = await http.post(
            "/api/v1/tasks", json={"type": TYPE}, headers={"traceparent": CALLER_TRACEPARENT}
        )
        batch = await http.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": TYPE}, {"type": TYPE}]},
            headers={"traceparent": CALLER_TRACEPARENT},
        )
        untraced = await http.post("/api/v1/tasks", json={"type": TYPE})
        assert {one.status_code, batch.status_code, untraced.status_code} == {201}, batch.text
        headers = [
            (await http.get(f"/api/v1/tasks/{task_id}")).json()["headers"]
            for task_id in (
                one.json()["id"],
                *(t["id"] for t in batch.json()["tasks"]),
                untraced.json()["id"],
            )
        ]

    sends = named(spans, f"send {TYPE}")
    assert len(sends) == 3
    for send in sends[:2]:
        assert send.parent is not None
        assert (hex_id(send.parent.trace_id, 32), hex_id(send.parent.span_id, 16)) == (
            CALLER_TRACE,
            CALLER_SPAN,
        )
    assert sends[1].attributes is not None
    assert sends[1].attributes["messaging.batch.message_count"] == 2
    assert [trace_id_of(h["traceparent"]) for h in headers[:3]] == [CALLER_TRACE] * 3
    # Without a caller's context, the producer span starts a trace of its own.
    assert sends[2].parent is None
    assert trace_id_of(headers[3]["traceparent"]) == hex_id(sends[2].context.trace_id, 32)


async def test_grpc_continues_the_callers_trace_one_at_a_time_and_in_batches(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> list[pb.Task]:
            one = await stub.submit_task(pb.SubmitTaskRequest(type=TYPE))
            batch = await stub.submit_tasks(
                pb.SubmitTasksRequest(tasks=[pb.SubmitTaskRequest(type=TYPE)] * 2)
            )
            ids = [one.id, *(t.id for t in batch.results)]
            return [await stub.get_task(pb.GetTaskRequest(id=i)) for i in ids]

        tasks = await grpc_call(grpc.h2c, use, metadata={"traceparent": CALLER_TRACEPARENT})

    assert [trace_id_of(t.headers["traceparent"]) for t in tasks] == [CALLER_TRACE] * 3
    sends = named(spans, f"send {TYPE}")
    assert len(sends) == 2
    assert all(s.parent is not None and hex_id(s.parent.span_id, 16) == CALLER_SPAN for s in sends)


async def test_a_submission_that_names_its_own_traceparent_keeps_it(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    async with Client(redis_url) as client:
        with _otel._tracer.start_as_current_span("handle request"):
            submitted = await client.submit(TYPE, headers={"traceparent": CALLER_TRACEPARENT})
        task = await client.get(submitted.id)
    assert task.headers == {"traceparent": CALLER_TRACEPARENT}


def test_the_sync_client_injects_its_callers_trace_context(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    client = SyncClient(redis_url)
    try:
        with _otel._tracer.start_as_current_span("handle request") as request:
            (submitted,) = client.submit_many([client_submission()])
        task = client.get(submitted.id)
    finally:
        client.close()
    trace_id = hex_id(request.get_span_context().trace_id, 32)
    assert trace_id_of(task.headers["traceparent"]) == trace_id
    (send,) = named(spans, f"send {TYPE}")
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id


def client_submission() -> Submission:
    return Submission(type=TYPE, headers={"x-tenant": "acme"})


async def test_without_a_tracer_provider_no_span_is_made_and_a_callers_context_passes(
    redis_url: str,
) -> None:
    # This process never sets a global provider: OpenTelemetry's API alone, as a user has it
    # with the extra installed and tracing not set up.
    assert not _otel.provider_set()
    assert tracing.processing is not None
    assert tracing.processing(client_claim(), "w") is _off.UNTRACED
    async with api_server(redis_url) as server, server.client() as http:
        passed = await http.post(
            "/api/v1/tasks",
            json={"type": TYPE, "headers": {"x-tenant": "acme"}},
            headers={"traceparent": CALLER_TRACEPARENT, "tracestate": "vendor=1"},
        )
        plain = await http.post("/api/v1/tasks", json={"type": TYPE})
        assert passed.status_code == plain.status_code == 201, passed.text
        assert (await http.get(f"/api/v1/tasks/{passed.json()['id']}")).json()["headers"] == {
            "x-tenant": "acme",
            "traceparent": CALLER_TRACEPARENT,
            "tracestate": "vendor=1",
        }
        assert (await http.get(f"/api/v1/tasks/{plain.json()['id']}")).json()["headers"] == {}


def client_claim() -> ClaimedTask:
    return ClaimedTask(
        id="t",
        type=TYPE,
        priority=Priority.MEDIUM,
        payload=None,
        attempt=1,
        max_retries=3,
        timeout_ms=1000,
        ready_ms=0,
        started_ms=0,
        headers={"traceparent": CALLER_TRACEPARENT},
    )


# -- with and without OpenTelemetry, as a user's process has it -------------------------------

#: Runs a worker (a daemon in this process, as the tests' api_server starts it), submits a task
#: through each client, lets the worker run it, and prints what it saw.
PROGRAM = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    {setup}
    import trio
    from api_helpers import api_server
    from daemon_helpers import wait_for_state
    from taskqueue import Client, SyncClient, tracing
    from taskqueue.daemon.runtime import Mode
    from taskqueue.models import ClaimedTask, Priority, TaskState
    from taskqueue.plugin import hookimpl

    seen = {{}}

    async def processor(ctx):
        seen[ctx.id] = ctx.headers

    class Plugin:
        @hookimpl
        def taskqueue_register_processors(self, registry):
            registry.add("test.traced", processor)

    async def main():
        async with api_server({url!r}, mode=Mode.RUN, plugins=(Plugin(),)) as server:
            async with Client({url!r}) as client:
                {enter}
                    submitted = await client.submit("test.traced", headers={{"x-tenant": "acme"}})
                await wait_for_state(server.broker, submitted.id, TaskState.SUCCEEDED)
            with SyncClient({url!r}) as sync:
                other = await trio.to_thread.run_sync(sync.submit, "test.traced")
            await wait_for_state(server.broker, other.id, TaskState.SUCCEEDED)
        print(json.dumps({{
            "enabled": tracing.enabled,
            "headers": seen[submitted.id],
            "imported": sorted(m for m in sys.modules
                               if m.startswith("opentelemetry") and sys.modules[m] is not None),
        }}))

    trio.run(main)
    """
)


def run_program(url: str, setup: str, enter: str) -> dict[str, object]:
    program = PROGRAM.format(url=url, tests=str(Path(__file__).parent), setup=setup, enter=enter)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_without_opentelemetry_nothing_imports_it_and_headers_are_left_alone(
    redis_url: str,
) -> None:
    # sys.modules[name] = None is how Python marks a package as absent: find_spec says None
    # and every import of it fails, as on a machine without the otel extra.
    seen = run_program(redis_url, setup="sys.modules['opentelemetry'] = None", enter="if True:")
    assert seen == {"enabled": False, "headers": {"x-tenant": "acme"}, "imported": []}


def test_with_opentelemetry_and_a_tracer_provider_a_submit_carries_the_trace(
    redis_url: str,
) -> None:
    seen = run_program(
        redis_url,
        setup=(
            "from opentelemetry import trace; "
            "from opentelemetry.sdk.trace import TracerProvider; "
            "trace.set_tracer_provider(TracerProvider()); "
            "tracer = trace.get_tracer('app')"
        ),
        enter="with tracer.start_as_current_span('request') as span:",
    )
    assert seen["enabled"] is True
    assert "opentelemetry.trace" in seen["imported"]  # type: ignore[operator]
    headers = seen["headers"]
    assert isinstance(headers, dict) and headers["x-tenant"] == "acme"
    assert len(trace_id_of(headers["traceparent"])) == 32


async def test_a_task_without_trace_context_runs_in_a_root_span(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    async with api_server(redis_url, mode=Mode.RUN, plugins=(sys.modules[__name__],)) as server:
        # Written as a producer without OpenTelemetry writes it: no headers at all.
        (submitted,) = await server.broker.enqueue_many([Submission(type=TYPE)])
        await wait_for_state(server.broker, submitted.id, TaskState.SUCCEEDED)
    (process,) = named(spans, f"process {TYPE}")
    assert process.parent is None and not process.links
