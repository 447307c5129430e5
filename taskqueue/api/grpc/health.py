"""``grpc.health.v1.Health``: the standard check load balancers and Kubernetes probes call.

It answers from the daemon's readiness (Redis reachable, services started, not draining), the
same source as ``/readyz``, for the whole server (service ``""``) and for
``taskqueue.v1.TaskQueue``. It needs no token: a probe has none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from taskqueue.api.errors import ApiError
from taskqueue.api.grpc.dispatcher import Access
from taskqueue.api.grpc.gen.grpc.health import v1 as health_pb
from taskqueue.api.patches.betterproto_streams import ClosingStreams
from taskqueue.health import Health

#: Services a check may name ("" is the server as a whole).
SERVICES = frozenset({"", "taskqueue.v1.TaskQueue"})
#: How often Watch looks at readiness (it has no event to wait on).
WATCH_INTERVAL = 0.5

Status = health_pb.HealthCheckResponseServingStatus


def access(method: str) -> Access:
    return Access.OPEN


class HealthService(ClosingStreams, health_pb.HealthBase):
    def __init__(self, health: Health) -> None:
        self.health = health

    def _status(self, service: str) -> Status:
        if service not in SERVICES:
            return Status.SERVICE_UNKNOWN
        return Status.SERVING if self.health.ready else Status.NOT_SERVING

    async def check(self, request: health_pb.HealthCheckRequest) -> health_pb.HealthCheckResponse:
        if request.service not in SERVICES:
            raise ApiError(404, "NOT_FOUND", "Not found", f"unknown service {request.service!r}")
        return health_pb.HealthCheckResponse(status=self._status(request.service))

    async def watch(
        self, request: health_pb.HealthCheckRequest
    ) -> AsyncIterator[health_pb.HealthCheckResponse]:
        """The status now, then each change; ends when the call does (see the dispatcher)."""
        last = None
        while True:
            status = self._status(request.service)
            if status != last:
                yield health_pb.HealthCheckResponse(status=status)
                last = status
            await trio.sleep(WATCH_INTERVAL)
