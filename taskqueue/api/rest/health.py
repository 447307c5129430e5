"""``/healthz``, ``/readyz`` and the Prometheus ``/metrics``: for orchestrators and scrapers.

Open to anyone by default (a probe rarely carries a token); ``server.open_health_endpoints =
false`` puts them behind a read token. ``/metrics`` renders the daemon's own registry
(:class:`taskqueue.metrics.Metrics`), reading the queue depths from Redis first.
"""

from __future__ import annotations

import msgspec
import trio

from taskqueue.api.rest.routing import Access, Call, Operation, Reply, RouteTable, json_response
from taskqueue.api.rest.send import Response
from taskqueue.metrics import CONTENT_TYPE
from taskqueue.redis import RedisError
from taskqueue.wire import Health, Readiness

#: Seconds /readyz waits for Redis to answer.
PING_TIMEOUT = 1.0


def health_routes(metrics_path: str | None) -> RouteTable:
    """The probes, and ``/metrics`` when metrics are on and served on the API port."""
    routes = RouteTable()
    routes.add(
        Operation(
            method="GET",
            path="/healthz",
            operation_id="healthz",
            summary="Liveness",
            description="200 whenever the process serves requests (its event loop runs).",
            tag="health",
            access=Access.HEALTH,
            replies={200: Reply("Alive.", Health)},
            uses_redis=False,
        )
    )(healthz)
    routes.add(
        Operation(
            method="GET",
            path="/readyz",
            operation_id="readyz",
            summary="Readiness",
            description="200 when Redis answers and every service of the daemon has started "
            "(and it is not shutting down); 503 otherwise, saying why.",
            tag="health",
            access=Access.HEALTH,
            replies={
                200: Reply("Ready.", Readiness),
                503: Reply("Not ready.", Readiness),
            },
            uses_redis=False,
        )
    )(readyz)
    if metrics_path is not None:
        routes.add(
            Operation(
                method="GET",
                path=metrics_path,
                operation_id="metrics",
                summary="Prometheus metrics",
                tag="health",
                access=Access.HEALTH,
                replies={
                    200: Reply(
                        "The registry in the Prometheus text format.",
                        {"type": "string"},
                        "text/plain",
                    )
                },
                uses_redis=False,
            )
        )(metrics)
    return routes


async def healthz(call: Call) -> Response:
    return json_response(Health())


async def readyz(call: Call) -> Response:
    """Asks Redis now (a PING, at most ``PING_TIMEOUT``) rather than trusting the last report:
    an API-only daemon runs no loop that would notice Redis coming back."""
    health = call.api.context.health
    try:
        with trio.fail_after(PING_TIMEOUT):
            await call.api.context.broker.redis.execute("PING")
    except (RedisError, trio.TooSlowError) as exc:
        health.redis_down(exc if isinstance(exc, RedisError) else RedisError("PING timed out"))
    else:
        health.redis_up()
    return json_response(
        msgspec.convert(health.describe(), Readiness), 200 if health.ready else 503
    )


async def metrics(call: Call) -> Response:
    context = call.api.context
    await context.metrics.refresh(context.broker)
    return Response(context.metrics.render(), content_type=CONTENT_TYPE)
