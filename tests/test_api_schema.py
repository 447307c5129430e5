"""The REST API keeps to its own OpenAPI document, as schemathesis checks it on a live server.

schemathesis (its ``run`` command, in a subprocess) reads ``/api/v1/openapi.json`` from a
server running in this test's trio loop and sends what the document allows and what it forbids,
through a real socket: boundary values of every constraint (its coverage phase), random valid
and invalid requests (fuzzing), and chains of calls linked by ``Location`` headers (stateful).
Every response must be no 5xx, carry a documented status and content type, match its schema
and headers, and turn away what the document forbids. Seeded and with one worker, the same
requests go out on every run. The command line rather than schemathesis' pytest plugin: the
plugin's fixture loader (``schemathesis.pytest.from_fixture``) fails under pytest 9 (it sets
``node._nodeid``, which pytest no longer has), and its import-time loader needs the server
before the test starts.

One check is left out, on purpose: ``positive_data_acceptance`` wants every request the
document allows to be accepted. The API promises less (see :mod:`taskqueue.api.rest.inputs`):
a few rules depend on the time or on state, which a schema cannot say, and a request that
breaks one gets a 422 naming the field. An ``eta`` must be less than 10 years from *now*; a
``cursor`` must be one an earlier page gave; the ``Idempotency-Key`` header must agree with the
body's key.

Two lengths: a short run in the default suite and a long one (more cases per operation and
phase, a different seed) under the ``soak`` marker, run by ``./dev soak`` and CI. Both run every
phase (examples, coverage, fuzzing, stateful) and every check but the one above, with bearer
tokens configured and the admin token sent (the checks that probe auth send none, a wrong one).

What the runs found is pinned by the plain tests at the end (and by ``test_api_cursors``), so it
stays fixed whatever schemathesis happens to generate.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import pytest
import trio
from api_helpers import ADMIN_TOKEN, ApiServer, api_server, problem
from broker_helpers import claim_one, make_dead, submit, succeeded, worker_info

from taskqueue.api.rest.app import all_routes
from taskqueue.api.rest.openapi import OPENAPI_PATH, build_document
from taskqueue.api.rest.routing import Access

#: Test cases per operation and phase; fewer for operations with little to vary.
MAX_EXAMPLES = 25
SEED = 20240601
#: The soak's: twenty times the cases, and other ones.
SOAK_EXAMPLES = 500
SOAK_SEED = 20261203
#: The short run takes about 10 s on a 2-core machine; this allows for one loaded by other
#: tests (the soak's limit is ten times as long).
TIME_LIMIT = 300.0
CHECKS_LEFT_OUT = ["positive_data_acceptance"]
#: Bodies with a rule across fields that schemathesis' coverage phase does not honour: a
#: schedule names one of `cron` and `every` (the document says so, with `oneOf`), and a cron
#: expression is valid only as croniter reads it. Most of that phase's boundary cases break one,
#: so these operations "mostly reject generated data"; test_api_rest_schedules pins them.
MISMATCH_EXPECTED = ["POST /api/v1/schedules", "PUT /api/v1/schedules/{name}"]
#: An endless stream: schemathesis would wait on it forever. test_api_rest_events covers it.
PATHS_LEFT_OUT = ["/api/v1/events"]


async def seed_every_state(server: ApiServer) -> str:
    """Tasks in each state and a live worker, so that every schema of a response is met with
    real values (a finished task's result and times, a dead one's error, a worker's record).
    Returns the id of a dead task, for the requeue operation."""
    broker = server.broker
    dead = await make_dead(broker, 2)
    await submit(broker, payload={"to": "a@example.com"})
    finished = await claim_one(broker)
    await broker.report([succeeded(finished, result={"sent": True})])
    await submit(broker)
    running = await claim_one(broker)
    now_ms = int(time.time() * 1000)
    await broker.heartbeat(worker_info("w1", now_ms, in_flight=1), [(running.id, running.attempt)])
    await submit(broker, idempotency_key="seed")
    await submit(broker, delay=3600)
    return dead[0]


async def test_the_rest_api_keeps_to_its_openapi_document(redis_url: str, tmp_path: Path) -> None:
    await keeps_to_its_document(redis_url, tmp_path, MAX_EXAMPLES, SEED, TIME_LIMIT)


@pytest.mark.soak
async def test_the_rest_api_keeps_to_its_openapi_document_long(
    redis_url: str, tmp_path: Path
) -> None:
    await keeps_to_its_document(redis_url, tmp_path, SOAK_EXAMPLES, SOAK_SEED, 10 * TIME_LIMIT)


async def keeps_to_its_document(
    redis_url: str, tmp_path: Path, max_examples: int, seed: int, time_limit: float
) -> None:
    """One schemathesis run against a seeded server; every check passes, no 5xx."""
    async with api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server:
        dead_id = await seed_every_state(server)
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "[[operations]]\n"
            'include-name = "POST /api/v1/dead-letters/{task_id}/requeue"\n'
            f'parameters = {{ task_id = "{dead_id}" }}\n'
            # Purging the dead would take away the task the requeue needs, and purging the
            # cancelled that task (or the one of the key "seed") once a bulk cancel with a type
            # taken from a response cancelled it: this run purges the succeeded only
            # (test_api_rest_bulk covers every state).
            "[[operations]]\n"
            'include-name = "DELETE /api/v1/tasks"\n'
            'parameters = { "query.state" = "succeeded" }\n'
        )
        report_path = tmp_path / "report.json"
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "--no-color",
            "run",
            server.url + OPENAPI_PATH,
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks",
            "all",
            "--exclude-checks",
            ",".join(CHECKS_LEFT_OUT),
            *(arg for path in PATHS_LEFT_OUT for arg in ("--exclude-path", path)),
            "--max-examples",
            str(max_examples),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--report",
            "json",
            "--report-json-path",
            str(report_path),
        ]
        with trio.fail_after(time_limit):
            run = await trio.run_process(
                command, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False
            )
        output = run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace")
        assert report_path.exists(), output
        report: dict[str, Any] = json.loads(report_path.read_text())
        cases = report["test_cases"]
        print(
            f"\nschemathesis: {cases['generated']} cases on {report['operations']['tested']} "
            f"operations in {report['running_time']:.1f} s, {len(report['failures'])} failures, "
            f"{len(report['errors'])} errors"
        )
        assert report["failures"] == [], output
        assert report["errors"] == [], output
        assert run.returncode == 0, output
        assert report["complete"], output
        operations = report["operations"]
        assert operations["tested"] == operations["selected"] == operations["total"] - 1, output
        # The document and the server's validation agree: most generated valid data is taken.
        mismatched = set(report["warnings"]["validation_mismatch"]) - set(MISMATCH_EXPECTED)
        assert not mismatched, output
        assert report["warnings"]["missing_test_data"] == [], output
        assert cases["generated"] > 20 * operations["tested"], output

        # And the server still serves.
        async with server.client(token=ADMIN_TOKEN) as client:
            assert (await client.get("/api/v1/queues")).status_code == 200


# -- what the run found, pinned ---------------------------------------------------------------


def refused_then_next(host: str, port: int) -> int | None:
    """On one connection: a POST refused (no token) before its body is sent, then the body,
    then a GET. The GET's status, or None when the server closed the connection instead.

    Blocking, for a thread: the client must not share the server's event loop, whose
    scheduling would hide the fault (the body would always arrive before the server finished
    its part of the refusal)."""
    body = b'{"type": "echo"}'
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, port), timeout=5) as sock:

        def send(*events: h11.Event) -> None:
            sock.sendall(b"".join(conn.send(event) or b"" for event in events))

        def response() -> int | None:
            status = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        return None
                    if not data:  # closed by the server
                        return None
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.EndOfMessage):
                    return status

        headers = [("host", "api"), ("content-type", "application/json")]
        headers.append(("content-length", str(len(body))))
        send(h11.Request(method="POST", target="/api/v1/tasks", headers=headers))
        assert response() == 401
        send(h11.Data(data=body), h11.EndOfMessage())
        conn.start_next_cycle()
        auth = [("host", "api"), ("authorization", f"Bearer {ADMIN_TOKEN}")]
        try:
            send(h11.Request(method="GET", target="/api/v1/queues", headers=auth))
            send(h11.EndOfMessage())
        except OSError:  # already closed by the server
            return None
        return response()


async def test_a_refused_request_does_not_hang_the_next_one_on_its_connection(
    redis_url: str,
) -> None:
    """A request refused before its body arrived used to leave its keep-alive connection stuck
    about one time in two: the next request on it was never answered. Now the next request
    is answered, or the server closes the connection so that the client opens a new one;
    never a wait. (``test_api_rest_keepalive`` holds the server to the first.)"""
    async with api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server:
        address = urlsplit(server.url)
        assert address.hostname is not None and address.port is not None
        for _ in range(100):  # the fault struck some of the time: enough tries to meet it
            try:
                status = await trio.to_thread.run_sync(
                    refused_then_next, address.hostname, address.port
                )
            except TimeoutError:
                raise AssertionError("the request after a refusal was never answered") from None
            assert status in (None, 200)


async def test_a_fixed_path_is_not_read_as_a_task_id(redis_url: str) -> None:
    """``/tasks/batch`` only takes POST: GET there is 405, not the lookup of a task "batch",
    and the ``Allow`` header says POST alone, as the document does."""
    async with (
        api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server,
        server.client(token=ADMIN_TOKEN) as client,
    ):
        for method in ("GET", "OPTIONS"):
            response = await client.request(method, "/api/v1/tasks/batch")
            assert response.status_code == 405, response.text
            assert response.headers["allow"] == "POST"
            problem(response)
        document = (await client.get(OPENAPI_PATH)).json()
        assert list(document["paths"]["/api/v1/tasks/batch"]) == ["post"]
        malformed = await client.get("/api/v1/tasks/not-an-id")
        assert malformed.status_code == 404
        problem(malformed)


async def test_delay_and_eta_together_are_refused_naming_the_task_in_a_batch(
    redis_url: str,
) -> None:
    """The document says ``delay`` and ``eta`` exclude each other (it used to say so in prose
    only); in a batch the error names the task's index (it used to be lost)."""
    async with (
        api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server,
        server.client(token=ADMIN_TOKEN) as client,
    ):
        later = {"type": "echo", "delay": 1, "eta": 2_000_000_000}
        response = await client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"type": "echo"}, later]}
        )
        assert response.status_code == 422
        body = problem(response)
        assert body["field"] == "tasks.1.delay"
        assert "either delay or eta, not both" in body["detail"]
        document = (await client.get(OPENAPI_PATH)).json()
        submission = document["components"]["schemas"]["Submission"]
        assert submission["allOf"] == [
            {"not": {"required": ["delay", "eta"]}},
            {"not": {"required": ["expires_in", "expires_at"]}},
        ]


def test_the_csrf_refusal_is_documented_on_every_write_and_only_there() -> None:
    """The dashboard's session answers 403 to a write without its CSRF token (app._authorize):
    the document says so where that check runs, operations that write behind a token."""
    routes = all_routes()
    document = build_document(routes, auth_enabled=True, health_open=True)
    for route in routes:
        op = route.operation
        responses = document["paths"][op.path][op.method.lower()]["responses"]
        if op.access is Access.WRITE:
            assert "X-CSRF-Token" in responses["403"]["description"], op.operation_id
        else:
            assert "403" not in responses, op.operation_id
    unsecured = build_document(routes, auth_enabled=False, health_open=True)
    for methods in unsecured["paths"].values():  # no tokens, no session: no CSRF check
        assert all("403" not in op["responses"] for op in methods.values())
