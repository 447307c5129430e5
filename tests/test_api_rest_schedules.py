"""Schedules over REST, on a real socket: create, read, page, replace, pause, resume, delete;
bad definitions answer 422 naming the field; a schedule made over the API fires."""

from __future__ import annotations

from pathlib import Path

from api_helpers import ADMIN_TOKEN, READ_TOKEN, api_server, problem
from daemon_helpers import wait_until

from taskqueue.api.auth import hash_token

URL = "/api/v1/schedules"
NIGHTLY = {
    "name": "nightly",
    "type": "report.build",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "payload": {"format": "pdf"},
}


async def test_a_schedule_is_created_read_listed_and_deleted(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        created = await client.post(URL, json=NIGHTLY)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"{URL}/nightly"
        document = created.json()
        assert document["spec"] == NIGHTLY
        assert document["paused"] is False
        assert document["next_run_at"] == document["upcoming_at"][0]
        assert document["upcoming_at"][0].endswith(":00:00.000Z")  # 03:00 Berlin in UTC
        assert len(document["upcoming_at"]) == 5

        assert (await client.get(f"{URL}/nightly")).json()["spec"] == NIGHTLY
        again = await client.post(URL, json=NIGHTLY)
        assert again.status_code == 409
        assert "a schedule named 'nightly' exists" in problem(again)["detail"]

        for name in ("b", "a"):
            await client.post(URL, json={"name": name, "type": "echo", "every": 60})
        first = (await client.get(URL, params={"limit": 2})).json()
        assert [s["spec"]["name"] for s in first["schedules"]] == ["a", "b"]
        rest = (await client.get(URL, params={"cursor": first["next_cursor"]})).json()
        assert ([s["spec"]["name"] for s in rest["schedules"]], rest["next_cursor"]) == (
            ["nightly"],
            None,
        )

        deleted = await client.delete(f"{URL}/nightly")
        assert (deleted.status_code, deleted.content) == (204, b"")
        gone = await client.get(f"{URL}/nightly")
        assert gone.status_code == 404
        assert problem(gone)["detail"] == "no schedule named 'nightly'"
        assert (await client.delete(f"{URL}/nightly")).status_code == 404


async def test_put_creates_then_replaces_and_pause_resume_shows_in_the_document(
    redis_url: str,
) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        body = {"name": "poll", "type": "feed.poll", "every": 30}
        assert (await client.put(f"{URL}/poll", json=body)).status_code == 201
        assert (await client.put(f"{URL}/poll", json=body)).status_code == 200

        paused = await client.post(f"{URL}/poll/pause")
        assert (paused.status_code, paused.json()["paused"]) == (200, True)
        assert paused.json()["next_run_ms"] is None
        replaced = await client.put(f"{URL}/poll", json={**body, "every": 60})
        assert replaced.json()["paused"] is True  # a new definition keeps the pause
        resumed = (await client.post(f"{URL}/poll/resume")).json()
        assert resumed["paused"] is False
        assert resumed["next_run_ms"] % 60_000 == 0

        mismatch = await client.put(f"{URL}/other", json=body)
        assert mismatch.status_code == 422
        assert problem(mismatch)["field"] == "name"
        assert (await client.post(f"{URL}/nope/pause")).status_code == 404


async def test_bad_definitions_answer_422_naming_the_field(redis_url: str) -> None:
    cases = [
        ({"name": "n", "type": "echo"}, "cron", "exactly one of 'cron' and 'every'"),
        ({"name": "n", "type": "echo", "cron": "0 25 * * *"}, "cron", "not a valid cron"),
        ({"name": "n", "type": "echo", "every": 5, "timezone": "Nowhere/X"}, "timezone", "IANA"),
        ({"name": "n", "type": "echo", "every": 0}, "every", ">= 1"),
        ({"name": "n/x", "type": "echo", "every": 5}, "name", "ASCII letters"),
        ({"name": "n", "type": "echo", "every": 5, "when": 1}, "when", "unknown"),
        ({"name": "n", "type": "echo", "every": "5s"}, "every", "Expected float"),
    ]
    async with api_server(redis_url) as server, server.client() as client:
        for body, field, words in cases:
            reply = await client.post(URL, json=body)
            assert reply.status_code == 422, (body, reply.text)
            assert problem(reply)["field"] == field, (body, problem(reply))
            assert words in problem(reply)["detail"], (body, problem(reply))
        bad_name = await client.get(f"{URL}/{'x' * 101}")
        assert (bad_name.status_code, problem(bad_name)["field"]) == (422, "name")
        bad_cursor = await client.get(URL, params={"cursor": "¹"})
        assert (bad_cursor.status_code, problem(bad_cursor)["field"]) == (422, "cursor")


async def test_a_read_token_reads_schedules_and_cannot_change_them(
    redis_url: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"{hash_token(READ_TOKEN)} read\n")
    async with (
        api_server(
            redis_url, server__tokens=(ADMIN_TOKEN,), server__token_file=str(token_file)
        ) as server,
        server.client(token=ADMIN_TOKEN) as admin,
        server.client(token=READ_TOKEN) as reader,
    ):
        assert (await admin.post(URL, json={**NIGHTLY})).status_code == 201
        assert (await reader.get(f"{URL}/nightly")).status_code == 200
        for method, path in [
            ("POST", URL),
            ("PUT", f"{URL}/nightly"),
            ("POST", f"{URL}/nightly/pause"),
            ("DELETE", f"{URL}/nightly"),
        ]:
            reply = await reader.request(method, path, json=NIGHTLY)
            assert reply.status_code == 403, (method, path)


async def test_a_schedule_made_over_the_api_fires(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        await client.post(URL, json={"name": "often", "type": "echo", "every": 1})

        async def fired() -> bool:
            return bool((await client.get(f"{URL}/often")).json()["fired"] >= 1)

        await wait_until(fired, "the schedule fires", 5)
        document = (await client.get(f"{URL}/often")).json()
        task = (await client.get(f"/api/v1/tasks/{document['last_task_id']}")).json()
        assert task["idempotency_key"] == f"schedule:often:{document['last_tick_ms']}"
        assert document["last_task_state"] == task["state"]
