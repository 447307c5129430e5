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
from collections.abc import Awaitable, Callable

import attrs
import trio

from taskqueue.broker import Broker, BrokerSettings
from taskqueue.config import Config
from taskqueue.daemon.consumer import Consumer
from taskqueue.daemon.health import Health
from taskqueue.daemon.heartbeat import Heartbeat, new_worker_id
from taskqueue.daemon.metrics_server import serve_metrics
from taskqueue.daemon.notifications import Notifications
from taskqueue.daemon.reaper import Reaper
from taskqueue.daemon.scheduler import Scheduler
from taskqueue.daemon.systemd import SystemdNotifier, run_watchdog, watchdog_interval
from taskqueue.metrics import MeteredBroker, Metrics
from taskqueue.processors import LoadedPlugins
from taskqueue.redis import Redis, RedisAddress

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    RUN = "run"  # everything in one process
    WORKER = "worker"  # runs tasks; no API
    SERVER = "server"  # serves the API; runs no tasks


@attrs.define
class Daemon:
    """The parts of a running daemon, handed to the API service (and to tests)."""

    config: Config
    mode: Mode
    broker: Broker
    health: Health
    plugins: LoadedPlugins
    notifications: Notifications
    shutdown: trio.Event
    consumer: Consumer | None = None
    heartbeat: Heartbeat | None = None
    scheduler: Scheduler | None = None
    reaper: Reaper | None = None
    #: The process's metrics (its own registry), served at ``metrics.path``.
    metrics: Metrics = attrs.field(factory=Metrics)
    #: Where the metrics port listens, when ``metrics.port`` is set (e.g. with port 0).
    metrics_urls: list[str] = attrs.field(factory=list)


#: The API service: serves until the daemon's ``shutdown`` event, then returns. Reports
#: ``task_status.started()`` once it listens. Filled in by the API package.
ApiService = Callable[..., Awaitable[None]]


def open_redis(config: Config, metrics: Metrics | None = None) -> Redis:
    """The daemon's Redis client; with ``metrics``, its errors and reconnects are counted."""
    if config.redis.url is None:
        raise ValueError("redis.url is not set")
    address = RedisAddress.from_url(
        config.redis.url,
        db=config.redis.db,
        username=config.redis.username,
        password=config.redis.password,
    )
    return Redis(
        address,
        pool_size=config.redis.pool_size,
        connect_timeout=config.redis.connect_timeout,
        on_error=metrics.redis_error if metrics is not None else None,
        on_reconnect=metrics.redis_reconnected if metrics is not None else None,
    )


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
    api: ApiService | None = None,
    notifier: SystemdNotifier | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until a signal (or ``Daemon.shutdown``) stops it."""
    notifier = notifier or SystemdNotifier()
    metrics = Metrics()
    redis = open_redis(config, metrics)
    broker = MeteredBroker(redis, BrokerSettings.from_config(config), metrics=metrics)
    health = Health()
    shutdown = trio.Event()
    daemon = Daemon(
        config=config,
        mode=mode,
        broker=broker,
        health=health,
        plugins=plugins,
        notifications=Notifications(broker, health),
        shutdown=shutdown,
        metrics=metrics,
    )
    if mode is not Mode.SERVER:
        _add_worker_services(daemon)
    try:
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, daemon, notifier)
            nursery.start_soon(run_watchdog, notifier, watchdog_interval())
            nursery.start_soon(daemon.notifications.run)
            health.expected.add("notifications")
            health.started.add("notifications")
            if daemon.scheduler is not None:
                nursery.start_soon(daemon.scheduler.run)
            if daemon.reaper is not None:
                nursery.start_soon(daemon.reaper.run)
            # Start-up waits for Redis (the first heartbeat), however long it is away; a stop
            # asked for meanwhile must end that wait, or the process could not be stopped.
            with trio.CancelScope() as start_up:
                nursery.start_soon(_cancel_on_shutdown, shutdown, start_up)
                if daemon.heartbeat is not None:
                    health.expected.add("heartbeat")
                    await nursery.start(daemon.heartbeat.run)
                    health.started.add("heartbeat")
                if api is not None and mode is not Mode.WORKER:
                    health.expected.add("api")
                    await nursery.start(api, daemon)
                    health.started.add("api")
                if config.metrics.enabled and config.metrics.port is not None:
                    daemon.metrics_urls = await nursery.start(serve_metrics, daemon)
                    log.info(
                        "metrics at %s",
                        ", ".join(url + config.metrics.path for url in daemon.metrics_urls),
                    )
                elif config.metrics.enabled and mode is Mode.WORKER:
                    log.info("metrics.port is not set: nothing serves this worker's metrics")
            if start_up.cancelled_caught:
                log.info("taskqueue %s stopped before its start-up completed", mode.value)
                nursery.cancel_scope.cancel()
                return
            task_status.started(daemon)
            status = StatusLine(daemon)
            first_line = status.text(trio.current_time())
            await notifier.ready(first_line)
            nursery.start_soon(_report_status, status, notifier, first_line)
            log.info(
                "taskqueue %s started: %s",
                mode.value,
                f"worker {daemon.consumer.worker_id}, types {', '.join(daemon.consumer.task_types)}"
                if daemon.consumer
                else "API only",
            )
            if daemon.consumer is not None:
                health.expected.add("consumer")
                health.started.add("consumer")
                await daemon.consumer.run()
                assert daemon.heartbeat is not None
                await daemon.heartbeat.deregister()
            else:
                await shutdown.wait()
            nursery.cancel_scope.cancel()
    finally:
        await redis.aclose()
    log.info("taskqueue %s stopped", mode.value)


async def _cancel_on_shutdown(shutdown: trio.Event, scope: trio.CancelScope) -> None:
    await shutdown.wait()
    scope.cancel()


def _add_worker_services(daemon: Daemon) -> None:
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
    )
    daemon.consumer = consumer
    daemon.metrics.watch_worker(lambda: consumer.in_flight, consumer.concurrency)
    daemon.heartbeat = Heartbeat(
        broker,
        consumer,
        health=health,
        interval=config.worker.heartbeat_interval,
        task_types={t: f"{registry[t].plugin} {registry[t].version}".strip() for t in types},
        type_defaults=registry.type_defaults(types),
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
    daemon.notifications.on_scheduled.append(daemon.scheduler.scheduled)


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
