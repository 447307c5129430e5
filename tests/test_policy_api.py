"""The queue policy and unserved task types through the REST and gRPC APIs, on real sockets:
a policy set live binds the next submission, an unserved type is warned about, and refused
(REST 422 naming the type, gRPC FAILED_PRECONDITION) when the policy says so."""

from __future__ import annotations

import pytest
from api_helpers import api_server
from daemon_helpers import wait_until
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc.gen.taskqueue import v1 as pb
from taskqueue.broker import Broker, Submission
from taskqueue.daemon.runtime import Mode

#: No worker of these tests serves it: its tasks stay pending.
QUEUED = "queued.only"
WARNING = f"no live worker serves task type {QUEUED!r}: it waits until one starts"


async def test_rest_policy_set_live_binds_the_next_submit_and_is_shown(redis_url: str) -> None:
    async with api_server(redis_url, task__max_queue_depth=5) as server, server.client() as client:
        await wait_until(
            lambda: _config_written(server.daemon.broker), "the daemon wrote its [task] policy"
        )
        put = await client.put(
            f"/api/v1/policy/{QUEUED}", json={"max_queue_depth": 1, "timeout": 2.5}
        )
        assert put.status_code == 200, put.text
        assert put.json()["live"] == {"max_queue_depth": 1, "timeout": 2.5}
        assert put.json()["effective"]["max_retries"] == 3  # the global config's

        first = await client.post("/api/v1/tasks", json={"type": QUEUED})
        assert (first.status_code, first.json()["timeout_ms"]) == (201, 2500)
        assert first.json()["warnings"] == [WARNING]
        full = await client.post("/api/v1/tasks", json={"type": QUEUED})
        assert full.status_code == 429

        document = (await client.get("/api/v1/policy")).json()
        assert document["global"]["config"]["max_queue_depth"] == 5
        assert document["types"][QUEUED]["live"]["max_queue_depth"] == 1
        queues = (await client.get("/api/v1/queues")).json()
        assert queues["unserved_types"] == [QUEUED]
        assert queues["policy"] == document

        cleared = await client.delete(f"/api/v1/policy/{QUEUED}")
        assert cleared.json()["live"] == {}
        again = await client.post("/api/v1/tasks", json={"type": QUEUED})
        assert again.status_code == 201  # the global limit, 5, again


async def _config_written(broker: Broker) -> bool:
    return (await broker.policy()).layer("config", None).max_queue_depth is not None


async def test_rest_policy_refuses_an_unserved_type_with_a_problem_naming_it(
    redis_url: str,
) -> None:
    async with api_server(redis_url, mode=Mode.RUN) as server, server.client() as client:
        assert (
            await client.put("/api/v1/policy", json={"refuse_unserved": True})
        ).status_code == 200

        refused = await client.post("/api/v1/tasks", json={"type": QUEUED})
        served = await client.post("/api/v1/tasks", json={"type": "echo"})
        batch = await client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"type": "echo"}, {"type": QUEUED}]}
        )

    assert refused.status_code == 422
    problem = refused.json()
    assert problem["field"] == "type" and repr(QUEUED) in problem["detail"]
    assert problem["title"] == "Unserved task type"
    assert (served.status_code, served.json()["warnings"]) == (201, [])
    assert (batch.status_code, batch.json()["field"]) == (422, "tasks.1.type")


async def test_rest_rejects_an_invalid_policy_naming_the_field(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        bad = await client.put("/api/v1/policy", json={"max_retries": -1})
        bad_type = await client.get("/api/v1/policy/a:b")
    assert (bad.status_code, bad.json()["field"]) == (422, "max_retries")
    assert (bad_type.status_code, bad_type.json()["field"]) == (422, "type")


async def test_grpc_policy_set_live_binds_the_next_submit_and_unserved_types_are_warned(
    redis_url: str,
) -> None:
    async with grpc_server(redis_url) as server:

        async def use(stub: pb.TaskQueueStub) -> None:
            scope = await stub.set_policy(
                pb.SetPolicyRequest(type=QUEUED, live=pb.Policy(max_queue_depth=1))
            )
            assert scope.live.max_queue_depth == 1
            assert (await stub.get_policy(pb.GetPolicyRequest(type=QUEUED))).live == scope.live
            first = await stub.submit_task(pb.SubmitTaskRequest(type=QUEUED))
            assert first.warnings == [WARNING]
            with pytest.raises(GRPCError) as full:
                await stub.submit_task(pb.SubmitTaskRequest(type=QUEUED))
            assert full.value.status is Status.RESOURCE_EXHAUSTED
            stats = await stub.get_queue_stats(pb.GetQueueStatsRequest())
            assert stats.unserved_types == [QUEUED]

            await stub.set_policy(pb.SetPolicyRequest(live=pb.Policy(refuse_unserved=True)))
            with pytest.raises(GRPCError) as refused:
                await stub.submit_task(pb.SubmitTaskRequest(type="other"))
            assert refused.value.status is Status.FAILED_PRECONDITION
            assert "'other'" in (refused.value.message or "")
            with pytest.raises(GRPCError) as invalid:
                await stub.set_policy(pb.SetPolicyRequest(live=pb.Policy(max_retries=-1)))
            assert invalid.value.status is Status.INVALID_ARGUMENT
            assert "live.max_retries" in (invalid.value.message or "")

        await grpc_call(server.h2c, use)


async def test_limits_are_set_per_type_over_rest_and_grpc_and_refused_globally(
    redis_url: str,
) -> None:
    async with grpc_server(redis_url) as server:

        async def use(stub: pb.TaskQueueStub) -> None:
            live = pb.Policy(rate_limit="600/min", rate_burst=5, concurrency=2)
            scope = await stub.set_policy(pb.SetPolicyRequest(type="hook", live=live))
            assert (scope.live.rate_limit, scope.effective.concurrency) == ("600/min", 2)
            for bad, field in [
                (pb.Policy(rate_limit="10/parsec"), "live.rate_limit"),
                (pb.Policy(concurrency=0), "live.concurrency"),
            ]:
                with pytest.raises(GRPCError) as invalid:
                    await stub.set_policy(pb.SetPolicyRequest(type="hook", live=bad))
                assert invalid.value.status is Status.INVALID_ARGUMENT
                assert field in (invalid.value.message or "")
            with pytest.raises(GRPCError) as global_:
                await stub.set_policy(pb.SetPolicyRequest(live=pb.Policy(concurrency=3)))
            assert "set per task type" in (global_.value.message or "")

        await grpc_call(server.h2c, use)

    async with api_server(redis_url) as rest, rest.client() as client:
        shown = (await client.get("/api/v1/policy/hook")).json()
        assert shown["live"] == {"rate_limit": "600/min", "rate_burst": 5, "concurrency": 2}
        bad = await client.put("/api/v1/policy/hook", json={"rate_limit": "fast"})
        assert (bad.status_code, bad.json()["field"]) == (422, "rate_limit")
        assert "'fast' is not a rate" in bad.json()["detail"]
        refused = await client.put("/api/v1/policy", json={"concurrency": 3})
        assert refused.status_code == 422, refused.text
        assert "concurrency" in refused.json()["detail"]

        broker = rest.daemon.broker
        await broker.enqueue_many([Submission(type="hook") for _ in range(3)])
        assert len(await broker.claim("w1", ["hook"], 3)) == 2  # concurrency 2
        queues = (await client.get("/api/v1/queues")).json()
        assert queues["held_by_limit"] == {"hook": "concurrency"}
