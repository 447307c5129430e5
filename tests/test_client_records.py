"""A task is stored the same whichever way it was submitted: through the REST API, the trio
client or the synchronous client. The records are compared field by field, as Redis holds
them, for a submission that sets everything and for one that leaves every option unset."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from api_helpers import api_server
from daemon_helpers import daemon_config

from taskqueue import Client, Submission, SyncClient
from taskqueue.models import SubmitOptions
from taskqueue.redis import Redis

#: Fields that differ between any two submissions: the id and when it was made.
PER_SUBMISSION = {"id", "created_ms", "ready_ms"}

#: Non-default task settings, so "unset takes the configured default" is tested too.
SETTINGS: dict[str, Any] = {"task__max_retries": 6, "task__default_timeout": "45s"}

FULL = {
    "type": "report.build",
    "payload": {"quarter": 3, "tags": ["a", "é"], "nested": {"x": None}},
    "priority": "critical",
    "max_retries": 2,
    "timeout": 12.5,
    "delay": 600,
}
MINIMAL = {"type": "report.build", "payload": [1, 2.5, "three"]}


async def stored_hashes(redis_url: str, fields: dict[str, Any]) -> list[dict[str, str]]:
    """The Redis hash of the task that each way of submitting ``fields`` wrote."""
    config = daemon_config(redis_url, **SETTINGS)
    ids: list[str] = []
    async with api_server(redis_url, **SETTINGS) as server, server.client() as http:
        response = await http.post("/api/v1/tasks", json={**fields, "idempotency_key": "rest"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

        async with Client.from_config(config) as client:
            submitted = await client.submit(**fields, idempotency_key="trio")
            ids.append(submitted.id)

        def submit_sync() -> str:
            with SyncClient.from_config(config) as sync:
                return sync.submit(**fields, idempotency_key="sync").id

        ids.append(await trio.to_thread.run_sync(submit_sync))

    redis = Redis.from_url(redis_url)
    try:
        replies = await redis.pipeline([("HGETALL", f"{{taskqueue}}:t:{i}") for i in ids])
    finally:
        await redis.aclose()
    hashes = []
    for flat in replies:
        it = iter(flat)
        hashes.append(dict(zip(it, it, strict=True)))
    return hashes


@pytest.mark.parametrize("fields", [FULL, MINIMAL], ids=["every-option", "no-options"])
async def test_records_are_the_same_from_api_trio_client_and_sync_client(
    redis_url: str, fields: dict[str, Any]
) -> None:
    rest, trio_client, sync_client = await stored_hashes(redis_url, fields)
    assert rest.keys() == trio_client.keys() == sync_client.keys()
    for name in sorted(rest.keys() - PER_SUBMISSION - {"idempotency_key"}):
        assert rest[name] == trio_client[name] == sync_client[name], name
    assert (rest["idempotency_key"], trio_client["idempotency_key"]) == ("rest", "trio")
    assert sync_client["idempotency_key"] == "sync"
    delays = {int(h["ready_ms"]) - int(h["created_ms"]) for h in (rest, trio_client, sync_client)}
    assert delays == {fields.get("delay", 0) * 1000}


async def test_unset_options_got_the_configured_defaults(redis_url: str) -> None:
    rest, *_ = await stored_hashes(redis_url, MINIMAL)
    assert (rest["priority"], rest["max_retries"], rest["timeout_ms"]) == ("medium", "6", "45000")
    assert rest["state"] == "pending"


def test_the_clients_submit_options_are_the_submissions_fields() -> None:
    """``submit(type, payload, **options)`` takes exactly the other fields of a Submission:
    a field added to the model cannot be forgotten by the clients' signature."""
    fields = set(Submission.__struct_fields__) - {"type", "payload"}
    assert set(SubmitOptions.__annotations__) == fields
