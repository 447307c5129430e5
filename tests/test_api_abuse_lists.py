"""A list response is bounded by bytes as well as by count: large payloads, results and
errors are cut in lists (and named in ``truncated``), and come whole from a single task."""

from __future__ import annotations

import sys
from pathlib import Path

from api_helpers import api_server
from daemon_helpers import wait_for_count
from grpc_helpers import TASKQUEUE_SERVICE, Target, raw_call

from taskqueue import _json
from taskqueue.api import views
from taskqueue.api.grpc import pb
from taskqueue.api.grpc.framing import frame, unframe
from taskqueue.broker import Submission
from taskqueue.daemon.runtime import Mode
from taskqueue.models import TaskState
from taskqueue.outcomes import clipped_error
from taskqueue.plugin import hookimpl
from taskqueue.processors import ProcessorRegistry, TaskContext
from taskqueue.redis import Redis

ROOT = Path(__file__).resolve().parent.parent
TASKS = 100
BIG = 100_000  # characters of each payload, result and error


async def bulky(ctx: TaskContext) -> str:
    """Returns a big result, or (payload "fail") fails with a big error."""
    if ctx.payload["fail"]:
        raise RuntimeError("e" * BIG)
    return "r" * BIG


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.bulky", bulky, max_retries=0)


async def redis_sent_bytes(redis: Redis) -> int:
    """How many bytes the Redis server has sent its clients so far (INFO's counter)."""
    info: str = await redis.execute("INFO", "stats")
    (line,) = (x for x in info.splitlines() if x.startswith("total_net_output_bytes:"))
    return int(line.split(":")[1])


def big_payload(fail: bool) -> dict[str, object]:
    return {"fail": fail, "blob": "p" * BIG}


async def test_a_page_of_big_tasks_stays_under_the_bound_and_says_what_it_cut(
    redis_url: str,
) -> None:
    async with api_server(redis_url, mode=Mode.RUN, plugins=(sys.modules[__name__],)) as server:
        async with server.client() as client:
            for fail in (False, True):
                batch = [Submission(type="test.bulky", payload=big_payload(fail))] * TASKS
                await server.broker.enqueue_many(batch)
            await wait_for_count(server.broker, TaskState.SUCCEEDED, TASKS, within=30)
            await wait_for_count(server.broker, TaskState.DEAD, TASKS, within=30)

            for path, state in (("/api/v1/tasks", "succeeded"), ("/api/v1/dead-letters", None)):
                params: dict[str, str | int] = {"limit": TASKS}
                if state:
                    params["state"] = state
                sent_before = await redis_sent_bytes(server.broker.redis)
                response = await client.get(path, params=params)
                sent = await redis_sent_bytes(server.broker.redis) - sent_before
                assert response.status_code == 200
                # Uncut, this page would be 2-3 * TASKS * BIG = 20-30 MB, and so would what
                # Redis sent the daemon for it: the cut happens in Redis.
                print(
                    f"{path}: a page of {TASKS} is {len(response.content)} bytes, {sent} from Redis"
                )
                assert len(response.content) < TASKS * views.LISTED_TASK_BYTES
                assert sent < TASKS * views.LISTED_TASK_BYTES
                tasks = response.json()["tasks"]
                assert len(tasks) == TASKS
                for task in tasks:
                    assert task["payload"] is None
                    cut = {"payload": len(_json.dumps(big_payload(state is None)))}
                    if state:
                        cut["result"] = BIG + 2
                        assert task["result"] is None
                    else:
                        assert len(task["error"].encode()) <= views.LIST_FIELD_BYTES
                        assert task["error"].startswith("RuntimeError: eee")
                        assert set(task["truncated"]) >= {"error", "traceback"}
                        cut["error"] = task["truncated"]["error"]
                        cut["traceback"] = task["truncated"]["traceback"]
                    assert task["truncated"] == cut

            # Alone, a task comes whole.
            one = tasks[0]
            whole = (await client.get(f"/api/v1/tasks/{one['id']}")).json()
            assert whole["truncated"] == {}
            assert whole["payload"] == big_payload(True)
            # (an error is kept to its start when the worker writes it: see outcomes.py)
            assert whole["error"] == clipped_error("RuntimeError: " + "e" * BIG)

        target = Target("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        request = pb.ListTasksRequest(state=pb.TaskState.SUCCEEDED, limit=TASKS)
        reply = await raw_call(target, TASKQUEUE_SERVICE + "ListTasks", frame(bytes(request)))
        assert reply.grpc_status == 0, reply.grpc_message
        assert len(reply.data) < TASKS * views.LISTED_TASK_BYTES
        page = pb.ListTasksResponse().parse(unframe(reply.data)[0])
        assert len(page.tasks) == TASKS
        first = page.tasks[0]
        assert first.payload_json == "" and first.result_json is None
        assert set(first.truncated) == {"payload_json", "result_json"}
        request_one = pb.GetTaskRequest(id=first.id)
        reply = await raw_call(target, TASKQUEUE_SERVICE + "GetTask", frame(bytes(request_one)))
        task = pb.Task().parse(unframe(reply.data)[0])
        assert task.truncated == {}
        assert _json.loads(task.payload_json) == big_payload(False)
        assert task.result_json == _json.dumps("r" * BIG)


def test_the_proto_states_the_list_bounds_the_code_keeps() -> None:
    proto = (ROOT / "proto" / "taskqueue" / "v1" / "taskqueue.proto").read_text()
    assert f"over {views.LIST_FIELD_BYTES}\n// bytes" in proto
    assert f"at most {views.LISTED_TASK_BYTES // 1024} KiB" in proto
    assert f"page at most {views.MAX_LIST_BYTES // 10**6} MB" in proto
