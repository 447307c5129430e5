"""A real Redis Cluster for tests: three primaries and three replicas, each a ``redis-server``
process of the test's own on a free port (the same binary the suite uses), joined by hand
(``CLUSTER ADDSLOTSRANGE``, ``MEET``, ``REPLICATE``) rather than by ``redis-cli --cluster
create``, which waits whole seconds between its steps.

Besides starting it, :class:`ClusterDeployment` does to it what an operator would: move a slot
to another primary (:meth:`migrate_slot`, the steps ``redis-cli --cluster reshard`` takes) and
promote a replica (:meth:`failover`, ``CLUSTER FAILOVER``).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from daemon_helpers import free_port

from taskqueue.broker.partitions import partition_keys
from taskqueue.embedded import find_redis_server
from taskqueue.redis.slots import SLOTS, hash_slot

#: Slots per primary, as redis-cli would split them among three.
RANGES = ((0, 5460), (5461, 10922), (10923, SLOTS - 1))


def spread_namespace(count: int) -> str:
    """A namespace whose ``count`` partitions' slots fall to every primary of a cluster split
    as :data:`RANGES` (the default namespace's partitions may share one: a slot is a hash)."""
    for n in range(1000):
        namespace = f"spread{n}"
        owners = {
            next(i for i, (low, high) in enumerate(RANGES) if low <= hash_slot(k.prefix) <= high)
            for k in partition_keys(namespace, count)
        }
        if len(owners) == min(count, len(RANGES)):
            return namespace
    raise AssertionError(f"no namespace spreads {count} partitions")  # pragma: no cover


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class ClusterDeployment:
    """Start with ``with ClusterDeployment(tmp_path) as cluster``; stopped after."""

    def __init__(self, directory: Path, *, replicas: bool = True) -> None:
        self.directory = directory
        self.binary = find_redis_server()
        self.primaries = [_cluster_port() for _ in RANGES]
        self.replicas = [_cluster_port() for _ in RANGES] if replicas else []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._clients: dict[int, redis.Redis] = {}

    @property
    def ports(self) -> list[int]:
        return [*self.primaries, *self.replicas]

    def url(self, *ports: int) -> str:
        """The URL with ``ports`` (default: the first primary) as seed nodes."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in ports or self.primaries[:1])
        return f"redis+cluster://{seeds}/"

    def __enter__(self) -> ClusterDeployment:
        try:
            for port in self.ports:
                self._start(port)
            for (start, end), port in zip(RANGES, self.primaries, strict=True):
                self.client(port).execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)  # type: ignore[no-untyped-call]
            for port in self.ports[1:]:
                self.client(port).execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])  # type: ignore[no-untyped-call]
            self._wait(self._all_ok, "every node knows the others and sees all slots served")
            for replica, primary in zip(self.replicas, self.primaries, strict=False):
                self.client(replica).execute_command("CLUSTER", "REPLICATE", self.node_id(primary))  # type: ignore[no-untyped-call]
            self._wait(self._replicating, "every replica is in sync")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def client(self, port: int) -> redis.Redis:
        """A redis-py client of the one node on ``port`` (not cluster-aware: for admin)."""
        if port not in self._clients:
            self._clients[port] = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
        return self._clients[port]

    def node_id(self, port: int) -> str:
        return str(self.client(port).execute_command("CLUSTER", "MYID"))  # type: ignore[no-untyped-call]

    def owner(self, slot: int) -> int:
        """The port of the primary that serves ``slot``, as the first live node sees it."""
        for start, end, primary, *_ in self._slots():
            if start <= slot <= end:
                return int(primary[1])
        raise AssertionError(f"no node serves slot {slot}")

    def replica_of(self, primary: int) -> int:
        primary_id = self.node_id(primary)
        for port in self.ports:
            if (
                port != primary
                and self.client(port).info("replication").get("master_port") == primary
            ):
                return port
        raise AssertionError(f"{primary} ({primary_id}) has no replica")

    def migrate_slot(
        self, key: str, target: int, *, batch: int = 50, pause: Callable[[], None] = lambda: None
    ) -> int:
        """Move the slot of ``key`` to the primary on ``target`` as ``redis-cli --cluster
        reshard`` does: the target imports and the source migrates it, ``MIGRATE ... KEYS`` in
        batches of ``batch`` (``pause`` runs between them, so clients meet the half-moved slot),
        then every primary is told the new owner. The number of keys moved."""
        slot = hash_slot(key)
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        src, dst = self.client(source), self.client(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
        moved = 0
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):  # type: ignore[no-untyped-call]
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)  # type: ignore[no-untyped-call]
            moved += len(keys)
            pause()
        for port in [target, source, *(p for p in self.primaries if p not in (source, target))]:
            self.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        return moved

    def failover(self, primary: int) -> int:
        """Promote the replica of ``primary`` with ``CLUSTER FAILOVER`` (the coordinated kind:
        the primary stops taking writes until the replica has them all); the new primary's
        port once every node agrees."""
        replica = self.replica_of(primary)
        self.client(replica).execute_command("CLUSTER", "FAILOVER")  # type: ignore[no-untyped-call]
        self._wait(
            lambda: self.client(replica).info("replication").get("role") == "master",
            f"{replica} is a primary",
        )
        self.primaries[self.primaries.index(primary)] = replica
        self.replicas[self.replicas.index(replica)] = primary
        return replica

    def kill(self, primary: int) -> int:
        """SIGKILL the primary on ``primary`` once its replica has every write it took, and
        wait until the replica has taken over (after ``cluster-node-timeout``); its port."""
        replica = self.replica_of(primary)
        self._wait(
            lambda: self._offset(replica, "slave_repl_offset") == self._offset(primary),
            f"{replica} has every write of {primary}",
        )
        process = self.processes[primary]
        process.kill()
        process.wait()
        self.primaries[self.primaries.index(primary)] = replica
        self.replicas.remove(replica)
        self._wait(
            lambda: (
                self.client(replica).info("replication").get("role") == "master"
                and self.owner_seen_by(replica) == replica
            ),
            f"{replica} took over from the killed {primary}",
        )
        return replica

    def owner_seen_by(self, port: int) -> int | None:
        """Which node serves the slots ``port`` had as a replica, as ``port`` sees it."""
        for _start, _end, owner, *_ in self.client(port).execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
            if int(owner[1]) == port:
                return port
        return None

    # -- internals ----------------------------------------------------------------------------

    def _start(self, port: int) -> None:
        workdir = self.directory / f"redis-{port}"
        workdir.mkdir()
        log = (self.directory / f"redis-{port}.log").open("wb")
        self.processes[port] = subprocess.Popen(
            [
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(workdir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", "3000",
                "--appendonly", "no",
                "--save", "",
            ],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait(lambda: self._answers(port), f"redis on {port} answers")

    def _slots(self) -> list[list[Any]]:
        for port in self.primaries:
            try:
                return list(self.client(port).execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]
            except redis.RedisError:
                continue
        raise AssertionError("no node answers CLUSTER SLOTS")

    def _offset(self, port: int, field: str = "master_repl_offset") -> int:
        return int(self.client(port).info("replication").get(field, -1))

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.client(port).ping())
        except redis.RedisError:
            return False

    def _all_ok(self) -> bool:
        for port in self.ports:
            info = self.client(port).execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.ports)}" not in info
            ):
                return False
        return True

    def _replicating(self) -> bool:
        for port in self.replicas:
            if self.client(port).info("replication").get("master_link_status") != "up":
                return False
        return (
            all(len(self._slots()[i]) == 4 for i in range(len(RANGES))) if self.replicas else True
        )

    def _wait(self, condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting until {what}")
            time.sleep(0.05)
