"""A real Redis Sentinel deployment for tests: a primary, a replica and three sentinels, each a
``redis-server`` process of the test's own on a free port (the same binary the suite uses).

Failover timings are short (``down-after-milliseconds`` 300), so killing the primary promotes
the replica within a second or two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from daemon_helpers import free_port

from taskqueue.embedded import find_redis_server

SERVICE = "tq"


class SentinelDeployment:
    """Start with ``with SentinelDeployment(tmp_path) as deployment``; stopped after."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.binary = find_redis_server()
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def __enter__(self) -> SentinelDeployment:
        try:
            self._server(self.primary_port, "--appendonly", "yes", "--appendfsync", "always")
            self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
            for port in self.sentinel_ports:
                config = self.directory / f"sentinel-{port}.conf"
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} 300\n"
                    f"sentinel failover-timeout {SERVICE} 2000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                self._start(port, [str(config), "--sentinel"])
            self._wait(self._replicating, "the replica is in sync")
            self._wait(self._sentinels_see_the_replica, "the sentinels know the replica")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port`` (the primary, usually)."""
        os.kill(self.processes[port].pid, signal.SIGKILL)
        self.processes[port].wait()

    def primary_named(self) -> int | None:
        """The primary's port as the first sentinel names it."""
        reply = self._client(self.sentinel_ports[0]).execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "get-master-addr-by-name", SERVICE
        )
        return int(reply[1]) if reply else None

    # -- internals ----------------------------------------------------------------------------

    def _server(self, port: int, *args: str) -> None:
        workdir = self.directory / f"redis-{port}"
        workdir.mkdir()
        self._start(
            port, ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), *args]
        )

    def _start(self, port: int, args: list[str]) -> None:
        log = (self.directory / f"redis-{port}.log").open("wb")
        self.processes[port] = subprocess.Popen(
            [self.binary, *args], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        self._wait(lambda: self._answers(port), f"redis on {port} answers")

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, decode_responses=True)

    def _answers(self, port: int) -> bool:
        try:
            return bool(self._client(port).ping())
        except redis.RedisError:
            return False

    def _replicating(self) -> bool:
        info = self._client(self.replica_port).info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_see_the_replica(self) -> bool:
        for port in self.sentinel_ports:
            command = ("SENTINEL", "replicas", SERVICE)
            replicas = self._client(port).execute_command(*command)  # type: ignore[no-untyped-call]
            if not replicas:
                return False
        return True

    def _wait(self, condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting until {what}")
            time.sleep(0.05)
