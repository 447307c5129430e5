"""The daemon: one trio nursery that supervises every service of one process.

``taskqueue run`` starts all services, ``taskqueue worker`` the worker side (consumer,
heartbeat, scheduler, reaper), ``taskqueue server`` the API side. A Redis error never stops a
service (it backs off and retries, and the daemon reports not-ready meanwhile); any other
exception in a service is a bug: the nursery cancels the rest, the process exits non-zero and
systemd restarts it. Tasks that were running then are not lost: their leases expire and the
reaper of another (or the restarted) worker returns them to the queue.

Shutdown: the first SIGTERM or SIGINT stops claiming and lets running tasks finish for up to
``worker.drain_timeout``; then what still runs is interrupted and put back without spending
an attempt; the worker deregisters and the process exits 0. A second signal ends the drain
at once.
"""

from __future__ import annotations

import enum
import logging
import signal
from collections import deque
from collections.abc import Callable

import attrs
import msgspec
import trio

from taskqueue.api.context import ApiContext
from taskqueue.broker import Broker, BrokerSettings
from taskqueue.config import Config
from taskqueue.daemon.consumer import Consumer
from taskqueue.daemon.durability_check import DurabilityCheck
from taskqueue.daemon.heartbeat import Heartbeat, new_worker_id
from taskqueue.daemon.metrics_server import MetricsApp, MetricsServer
from taskqueue.daemon.notifications import Notifications
from taskqueue.daemon.policy_writer import PolicyWriter
from taskqueue.daemon.reaper import Reaper
from taskqueue.daemon.schedule_runner import ScheduleRunner
from taskqueue.daemon.scheduler import Scheduler
from taskqueue.daemon.service import Service
from taskqueue.daemon.systemd import SystemdNotifier, run_watchdog, watchdog_interval
from taskqueue.daemon.trimmer import Trimmer
from taskqueue.discovery import redis_address
from taskqueue.health import Health
from taskqueue.metrics import Metrics
from taskqueue.models import Policy
from taskqueue.processors import LoadedPlugins
from taskqueue.redis import Redis

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    RUN = "run"  # everything in one process
    WORKER = "worker"  # runs tasks; no API
    SERVER = "server"  # serves the API; runs no tasks


#: Builds the API service from what the API may use (:mod:`taskqueue.api.service` makes the
#: real one); passed in, so a daemon can run without the web stack installed.
ApiFactory = Callable[[ApiContext], Service]


@attrs.define
class Daemon:
    """The parts of a running daemon, handed to tests and to the signal handler."""

    config: Config
    mode: Mode
    broker: Broker
    health: Health
    plugins: LoadedPlugins
    notifications: Notifications
    shutdown: trio.Event
    #: The client processors get as ``ctx.redis``: the same server as the broker's, but its
    #: own connections, and its errors are the tasks' (not counted as the daemon's).
    task_redis: Redis | None = None
    consumer: Consumer | None = None
    heartbeat: Heartbeat | None = None
    scheduler: Scheduler | None = None
    schedule_runner: ScheduleRunner | None = None
    reaper: Reaper | None = None
    trimmer: Trimmer | None = None
    policy_writer: PolicyWriter | None = None
    #: The process's metrics (its own registry), served at ``metrics.path``.
    metrics: Metrics = attrs.field(factory=Metrics)
    metrics_server: MetricsServer | None = None
    #: Every service, in the order they start.
    services: list[Service] = attrs.field(factory=list)

    @property
    def metrics_urls(self) -> list[str]:
        """Where the metrics port listens, when ``metrics.port`` is set (e.g. with port 0)."""
        return self.metrics_server.urls if self.metrics_server is not None else []

    def api_context(self) -> ApiContext:
        metrics = self.config.metrics
        on_api_port = metrics.enabled and metrics.port is None
        return ApiContext(
            broker=self.broker,
            health=self.health,
            shutdown=self.shutdown,
            server=self.config.server,
            metrics=self.metrics,
            metrics_path=metrics.path if on_api_port else None,
            metrics_public=metrics.public,
        )


def open_redis(config: Config, metrics: Metrics | None = None) -> Redis:
    """The daemon's Redis client; with ``metrics``, its errors and reconnects are counted.

    The credentials are read here, once at start (``redis.password_file`` included).
    """
    if config.redis.url is None:
        raise ValueError("redis.url is not set")
    address = redis_address(config, config.redis.url)
    return Redis(
        address,
        pool_size=config.redis.pool_size,
        connect_timeout=config.redis.connect_timeout,
        on_error=metrics.redis_error if metrics is not None else None,
        on_reconnect=metrics.redis_reconnected if metrics is not None else None,
    )


def type_config_policies(config: Config, plugin_policies: dict[str, Policy]) -> dict[str, Policy]:
    """What a worker writes to the policy's config layer for the types it runs: each type's
    plugin defaults, with the configuration's ``[limits.<type>]`` beside them (a limit of a
    type no worker here runs is written by the workers that run it)."""
    return {
        task_type: msgspec.structs.replace(policy, **_set_fields(config.limits.get(task_type)))
        for task_type, policy in plugin_policies.items()
    }


def _set_fields(policy: Policy | None) -> dict[str, object]:
    if policy is None:
        return {}
    return {k: v for k, v in msgspec.structs.asdict(policy).items() if v is not None}


def worker_task_types(config: Config, plugins: LoadedPlugins) -> list[str]:
    """The task types this worker claims: those configured (default: all it can run)."""
    available = plugins.registry.task_types
    wanted = list(config.worker.task_types) or available
    missing = [t for t in wanted if t not in plugins.registry]
    if missing:
        raise ValueError(
            f"worker.task_types names {', '.join(missing)}, which no installed plugin provides "
            f"(installed: {', '.join(available) or 'none'})"
        )
    return wanted


async def run_daemon(
    config: Config,
    plugins: LoadedPlugins,
    *,
    mode: Mode = Mode.RUN,
    api: ApiFactory | None = None,
    notifier: SystemdNotifier | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until a signal (or ``Daemon.shutdown``) stops it.

    The services of ``mode`` start one after the other (see :mod:`taskqueue.daemon.service`);
    once all have, the daemon reports READY. It stops when every draining service (the
    consumer, the API) has finished its work after shutdown began; the others are cancelled
    then, the heartbeat last among the worker's, so running tasks keep their leases to the end.
    """
    notifier = notifier or SystemdNotifier()
    metrics = Metrics()
    redis = open_redis(config, metrics)
    task_redis = open_redis(config) if mode is not Mode.SERVER else None
    broker = Broker(redis, BrokerSettings.from_config(config), observer=metrics)
    health = Health()
    daemon = Daemon(
        config=config,
        mode=mode,
        broker=broker,
        health=health,
        plugins=plugins,
        notifications=Notifications(broker, health),
        shutdown=trio.Event(),
        task_redis=task_redis,
        metrics=metrics,
    )
    daemon.services = _services(daemon, api)
    try:
        async with trio.open_nursery() as supervisor:
            if handle_signals:
                supervisor.start_soon(_watch_signals, daemon, notifier)
            supervisor.start_soon(run_watchdog, notifier, watchdog_interval())
            async with trio.open_nursery() as draining:
                # Start-up waits for Redis (the first heartbeat), however long it is away; a
                # stop asked for meanwhile must end that wait, or the process could not stop.
                with trio.CancelScope() as start_up:
                    supervisor.start_soon(_cancel_on_shutdown, daemon.shutdown, start_up)
                    health.expected.update(service.name for service in daemon.services)
                    for service in daemon.services:
                        await (draining if service.drains else supervisor).start(service.run)
                        health.started.add(service.name)
                if start_up.cancelled_caught:
                    log.info("taskqueue %s stopped before its start-up completed", mode.value)
                    supervisor.cancel_scope.cancel()
                    return
                task_status.started(daemon)
                await _announce(daemon, notifier, supervisor)
                await daemon.shutdown.wait()
            # Every draining service has returned: the tasks have ended, the API has closed.
            if daemon.heartbeat is not None:
                await daemon.heartbeat.deregister()
            supervisor.cancel_scope.cancel()
    finally:
        if task_redis is not None:
            await task_redis.aclose()
        await redis.aclose()
    log.info("taskqueue %s stopped", mode.value)


def _services(daemon: Daemon, api: ApiFactory | None) -> list[Service]:
    """The services of the daemon's mode, in the order they start."""
    daemon.trimmer = Trimmer(
        daemon.broker,
        health=daemon.health,
        interval=daemon.config.retention.interval,
        metrics=daemon.metrics,
    )
    # Every mode trims: finished records must not pile up while no worker runs; every mode
    # writes its [task] policy to Redis, where it binds every submitter.
    daemon.policy_writer = PolicyWriter(
        daemon.broker, health=daemon.health, hold_start=daemon.mode is not Mode.SERVER
    )
    # Every mode runs the schedules: any number of daemons may, each tick fires once.
    daemon.schedule_runner = ScheduleRunner(
        daemon.broker, health=daemon.health, configured=daemon.config.schedules
    )
    services: list[Service] = [
        daemon.notifications,
        daemon.policy_writer,
        daemon.trimmer,
        daemon.schedule_runner,
    ]
    if daemon.broker.settings.durable_submit:
        services.insert(0, DurabilityCheck(daemon.broker, health=daemon.health))
    if daemon.mode is not Mode.SERVER:
        services += _worker_services(daemon)
    if api is not None and daemon.mode is not Mode.WORKER:
        services.append(api(daemon.api_context()))
    config = daemon.config.metrics
    if config.enabled and config.port is not None:
        app = MetricsApp(daemon.metrics, daemon.broker, config.path)
        daemon.metrics_server = MetricsServer(app, host=daemon.config.server.host, port=config.port)
        services.append(daemon.metrics_server)
    elif config.enabled and daemon.mode is Mode.WORKER:
        log.info("metrics.port is not set: nothing serves this worker's metrics")
    if daemon.consumer is not None:
        services.append(daemon.consumer)  # last: it claims once everything else runs
    return services


async def _announce(daemon: Daemon, notifier: SystemdNotifier, nursery: trio.Nursery) -> None:
    """Tell systemd (READY, then a STATUS line kept current) and the log that it runs."""
    status = StatusLine(daemon)
    first_line = status.text(trio.current_time())
    await notifier.ready(first_line)
    nursery.start_soon(_report_status, status, notifier, first_line)
    consumer = daemon.consumer
    log.info(
        "taskqueue %s started: %s",
        daemon.mode.value,
        f"worker {consumer.worker_id}, types {', '.join(consumer.task_types)}"
        if consumer
        else "API only",
    )


async def _cancel_on_shutdown(shutdown: trio.Event, scope: trio.CancelScope) -> None:
    await shutdown.wait()
    scope.cancel()


def _worker_services(daemon: Daemon) -> list[Service]:
    """Builds the consumer and the services around it; the consumer itself starts last."""
    config, broker, health = daemon.config, daemon.broker, daemon.health
    registry = daemon.plugins.registry
    types = worker_task_types(config, daemon.plugins)
    consumer = Consumer(
        broker,
        registry,
        worker_id=config.worker.id or new_worker_id(),
        health=health,
        task_types=types,
        concurrency=config.worker.concurrency,
        prefetch=config.worker.prefetch,
        drain_timeout=config.worker.drain_timeout,
        hooks=daemon.plugins.manager.hook,
        metrics=daemon.metrics,
        # Two heartbeats without a reply: cut off from Redis, most likely; start nothing more.
        hold_starts_after=2 * config.worker.heartbeat_interval,
        redis=daemon.task_redis,
        hand_offs=True,
    )
    daemon.consumer = consumer
    daemon.metrics.watch_worker(lambda: consumer.in_flight, consumer.concurrency, types)
    daemon.heartbeat = Heartbeat(
        broker,
        consumer,
        health=health,
        interval=config.worker.heartbeat_interval,
        task_types={t: f"{registry[t].plugin} {registry[t].version}".strip() for t in types},
        type_policies=type_config_policies(config, registry.type_policies(types)),
        on_beat=daemon.metrics.heartbeat_sent,
    )
    daemon.scheduler = Scheduler(broker, health=health)
    daemon.reaper = Reaper(
        broker,
        health=health,
        interval=min(config.worker.cleanup_interval, config.worker.heartbeat_interval),
        metrics=daemon.metrics,
    )
    daemon.notifications.on_wake.append(consumer.wake)
    daemon.notifications.on_cancel.append(consumer.request_cancel)
    daemon.notifications.watch_hand_offs(consumer.worker_id, consumer.receive_hand_off)
    daemon.notifications.on_scheduled.append(daemon.scheduler.scheduled)
    return [daemon.scheduler, daemon.reaper, daemon.heartbeat]


def begin_shutdown(daemon: Daemon) -> None:
    """Start the graceful stop (what the first SIGTERM does)."""
    daemon.health.draining = True
    daemon.shutdown.set()
    if daemon.consumer is not None:
        daemon.consumer.stop()


async def _watch_signals(daemon: Daemon, notifier: SystemdNotifier) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not daemon.shutdown.is_set():
                running = daemon.consumer.in_flight if daemon.consumer else 0
                log.info(
                    "%s: draining (%d task(s) running, up to %gs); send it again to stop now",
                    name,
                    running,
                    daemon.config.worker.drain_timeout,
                )
                await notifier.stopping(f"draining {running} task(s)")
                begin_shutdown(daemon)
            elif daemon.consumer is not None:
                log.warning("%s again: interrupting running tasks now", name)
                daemon.consumer.end_drain()


#: How often the STATUS line is looked at; it is sent to systemd only when it changed.
STATUS_INTERVAL = 1.0


class PerMinute:
    """How much a running total grew in the last minute, from samples of it.

    Each :meth:`update` adds a sample; the baseline is the newest sample at least a minute old
    (before there is one, the first sample), so the answer covers a minute and a little.
    """

    WINDOW = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, total: int) -> int:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 1 and samples[1][0] <= now - self.WINDOW:
            samples.popleft()
        return total - samples[0][1]


class StatusLine:
    """What ``systemctl status`` shows: ``processing 37/50, 120k done, 3 failed/min, redis ok``.

    "failed/min" counts the failed attempts (raised or timed out) of the last minute.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._failed = PerMinute()

    def text(self, now: float) -> str:
        d = self.daemon
        redis = "redis ok" if d.health.redis_ok else "redis UNREACHABLE"
        c = d.consumer
        if c is None:
            return f"serving API, {redis}"
        state = "draining" if d.shutdown.is_set() else "processing"
        failed = self._failed.update(now, c.failed)
        return (
            f"{state} {c.in_flight}/{c.concurrency}, {short_count(c.processed)} done, "
            f"{failed} failed/min, {redis}"
        )


def short_count(n: int) -> str:
    """``n`` in at most four characters, rounded down: 999, 1.2k, 120k, 3.4M, 56M."""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n // 100 / 10:.1f}k"
    if n < 1_000_000:
        return f"{n // 1000}k"
    if n < 10_000_000:
        return f"{n // 100_000 / 10:.1f}M"
    return f"{n // 1_000_000}M"


async def _report_status(status: StatusLine, notifier: SystemdNotifier, sent: str) -> None:
    """Keep the STATUS line current: look every second, send what changed."""
    if not notifier.enabled:
        return
    interval = min(STATUS_INTERVAL, status.daemon.config.worker.heartbeat_interval)
    while True:
        await trio.sleep(interval)
        line = status.text(trio.current_time())
        if line != sent:
            await notifier.status(line)
            sent = line
