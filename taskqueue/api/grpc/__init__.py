"""The gRPC API: ``taskqueue.v1.TaskQueue`` and ``grpc.health.v1.Health`` on the API port.

Server side, :func:`create_grpc_app` builds the ASGI app the API server hands every request
whose content type is ``application/grpc``. Client side, the generated grpclib stub works in
any asyncio application::

    from grpclib.client import Channel
    from taskqueue.api.grpc import TaskQueueStub, pb

    async with Channel("127.0.0.1", 9090) as channel:
        queue = TaskQueueStub(channel, metadata={"authorization": "Bearer <token>"})
        reply = await queue.submit_task(pb.SubmitTaskRequest(type="echo", payload_json="{}"))

``pb`` is the generated message module (``proto/taskqueue/v1/taskqueue.proto``).
"""

from __future__ import annotations

from taskqueue.api.auth import Authenticator
from taskqueue.api.context import ApiContext
from taskqueue.api.events import EventHub
from taskqueue.api.grpc import health, service
from taskqueue.api.grpc.context import CallContext, current_call
from taskqueue.api.grpc.dispatcher import Access, GrpcApp
from taskqueue.api.grpc.gen.grpc.health import v1 as health_pb
from taskqueue.api.grpc.gen.grpc.health.v1 import HealthStub
from taskqueue.api.grpc.gen.taskqueue import v1 as pb
from taskqueue.api.grpc.gen.taskqueue.v1 import TaskQueueStub

__all__ = [
    "Access",
    "CallContext",
    "GrpcApp",
    "HealthStub",
    "TaskQueueStub",
    "create_grpc_app",
    "current_call",
    "health_pb",
    "pb",
]


def create_grpc_app(context: ApiContext, authenticator: Authenticator, events: EventHub) -> GrpcApp:
    """The ASGI app serving the gRPC API.

    ``events`` must be running (``EventHub.run``, as the API service does) for WatchTasks to
    stream anything; streams end when ``context.shutdown`` is set.
    """
    app = GrpcApp(
        authenticator=authenticator,
        shutdown=context.shutdown,
        max_request_bytes=context.server.max_request_bytes,
    )
    app.add_service(service.TaskQueueService(context.broker, events), service.access)
    app.add_service(health.HealthService(context.health), health.access)
    return app
