"""A client of a Redis Cluster: each command goes to the primary that owns its key's hash slot.

It keeps one :class:`~taskqueue.redis.client.Redis` per primary (so each node has its own
auto-pipelined shared connection and pool: a namespace's commands, all in one slot, pipeline
together on one node) and the slot map, learnt with ``CLUSTER SLOTS`` from any node it knows
(the URL's seed nodes first). Redirections are followed the way the cluster specification
asks: ``MOVED`` (the slot has a new owner: the map is learnt again), ``ASK`` (the slot is
being migrated and this key is already on the target: ``ASKING`` then the command there, once),
``TRYAGAIN`` and ``CLUSTERDOWN`` (a migration or a failover is under way: wait and retry, for
up to ``redirect_timeout`` seconds). A connection error is raised as it is (the command may
have run) and marks the map stale, so the next command learns it again: after a failover the
old primary's slots are found on the promoted replica.

Pub/sub subscriptions are made on the node that owns the first channel's slot; Redis Cluster
delivers ``PUBLISH`` to every node, so any node would do.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from taskqueue.redis.client import Redis, Script, Subscription
from taskqueue.redis.connection import Arg, Command
from taskqueue.redis.errors import (
    NoScriptError,
    RedisConnectionError,
    RedisError,
    ResponseError,
)
from taskqueue.redis.slots import SLOTS, hash_slot
from taskqueue.redis.url import RedisAddress

Node = tuple[str, int]

#: Commands that name no key: they may run on any node.
_KEYLESS = frozenset(
    {
        "PING", "ECHO", "INFO", "TIME", "DBSIZE", "CLUSTER", "SCRIPT", "FUNCTION", "CONFIG",
        "CLIENT", "COMMAND", "LASTSAVE", "ROLE", "WAIT", "WAITAOF", "FLUSHALL", "FLUSHDB",
        "MEMORY", "SLOWLOG", "LATENCY", "ACL", "HELLO", "AUTH", "SELECT",
    }
)  # fmt: skip
#: How many MOVED/ASK redirections in a row (no wait between them) one command follows before
#: it gives up: a loop between two nodes that disagree, as when a migration was opened on one
#: side only.
_MAX_REDIRECTS = 8


class ClusterError(ResponseError):
    """The cluster kept a command from running: too many redirections, or a migration or a
    failover lasted longer than the client's ``redirect_timeout``."""


def command_slot(command: Command) -> int | None:
    """The hash slot of the key ``command`` names (its first), None for a keyless command."""
    name = str(command[0]).upper()
    if name in _KEYLESS or len(command) < 2:
        return None
    if name in ("EVAL", "EVALSHA", "FCALL"):
        return hash_slot(_text(command[3])) if int(command[2]) > 0 else None
    if name in ("XREAD", "XREADGROUP"):
        words = [str(a).upper() for a in command]
        return hash_slot(_text(command[words.index("STREAMS") + 1]))
    return hash_slot(_text(command[1]))


def _text(arg: Arg) -> str | bytes:
    return arg if isinstance(arg, str | bytes) else str(arg)


@attrs.frozen
class _Redirect:
    """What an error reply asks for: ``MOVED``/``ASK`` to ``node``, or a wait (``TRYAGAIN``,
    ``CLUSTERDOWN``: ``node`` is None)."""

    kind: str
    node: Node | None


def redirect_of(reply: object) -> _Redirect | None:
    """The redirection an error reply asks for, or None for any other reply."""
    if not isinstance(reply, ResponseError):
        return None
    message = str(reply)
    kind = message.split(" ", 1)[0]
    if kind in ("MOVED", "ASK"):
        host, _, port = message.split(" ")[2].rpartition(":")
        return _Redirect(kind, (host, int(port)))
    if kind in ("TRYAGAIN", "CLUSTERDOWN"):
        return _Redirect(kind, None)
    return None


class ClusterRedis(Redis):
    """The :class:`Redis` interface over a Redis Cluster (``redis+cluster://`` URLs).

    ``Redis(address)`` builds one when ``address`` names a cluster, so every caller that makes
    a client from a URL gets cluster support without knowing of it.
    """

    def __init__(
        self,
        address: RedisAddress,
        *,
        pool_size: int = 16,
        connect_timeout: float = 5.0,
        connect_attempts: int = 3,
        on_error: Callable[[RedisError], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        redirect_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            address,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            connect_attempts=connect_attempts,
            on_error=on_error,
            on_reconnect=on_reconnect,
        )
        self.redirect_timeout = redirect_timeout
        self._pool_size = pool_size
        self._nodes: dict[Node, Redis] = {}
        self._owners: list[Node | None] = [None] * SLOTS
        self._replicas: list[Node] = []  # asked for the map when no primary answers
        self._stale = True  # the map is to be learnt before the next command
        self._learning = trio.Lock()
        self._learnt = 0  # how many times the map was learnt (one refresh serves all waiters)
        #: Redirections met, by kind (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): what a resharding
        #: or a failover cost this client.
        self.redirections: Counter[str] = Counter()

    # -- the slot map ------------------------------------------------------------------------

    def node(self, node: Node) -> Redis:
        """The client of one node (made on first use; its connections are made lazily)."""
        client = self._nodes.get(node)
        if client is None:
            self._check_open()
            client = Redis(
                attrs.evolve(self.address, host=node[0], port=node[1], cluster=()),
                pool_size=self._pool_size,
                connect_timeout=self.connect_timeout,
                connect_attempts=self.connect_attempts,
                on_reconnect=self.on_reconnect,
            )
            self._nodes[node] = client
        return client

    def owner(self, slot: int | None) -> Node:
        """The primary serving ``slot`` as far as this client knows (any node for None)."""
        if slot is not None:
            owner = self._owners[slot]
            if owner is not None:
                return owner
            raise RedisConnectionError(f"no primary of the {self.address} serves slot {slot}")
        return next((n for n in self._owners if n is not None), self.address.cluster[0])

    async def refresh(self, *, seen: int | None = None) -> None:
        """Learn the slot map again, from the first node that answers within
        ``connect_timeout``: the known primaries in random order (so one node down does not
        stall everyone), then their replicas, then the seed nodes.

        ``seen``: the refresh count the caller saw before it found the map out of date; if a
        refresh happened since, its map is taken as it is.
        """
        async with self._learning:
            if seen is not None and self._learnt != seen:
                return
            known = list(dict.fromkeys(n for n in self._owners if n is not None))
            random.shuffle(known)
            reasons = []
            for node in dict.fromkeys([*known, *self._replicas, *self.address.cluster]):
                with trio.move_on_after(self.connect_timeout):
                    try:
                        reply = await self.node(node).execute("CLUSTER", "SLOTS")
                    except RedisError as exc:
                        reasons.append(f"{node[0]}:{node[1]}: {exc}")
                        continue
                    self._learn(node, reply)
                    return
                reasons.append(f"{node[0]}:{node[1]}: no answer in {self.connect_timeout:g}s")
            raise RedisConnectionError(
                f"no node of the {self.address} told its slot map: {'; '.join(reasons)}"
            )

    def _learn(self, asked: Node, reply: list[Any]) -> None:
        """Take the map of a ``CLUSTER SLOTS`` reply (from ``asked``) as the client's."""

        def where(entry: list[Any]) -> Node:
            host = str(entry[0])
            return (asked[0] if host in ("", "?") else host, int(entry[1]))  # "": the asked node

        owners: list[Node | None] = [None] * SLOTS
        replicas: list[Node] = []
        for start, end, primary, *others in reply:
            owners[int(start) : int(end) + 1] = [where(primary)] * (int(end) - int(start) + 1)
            replicas += [where(entry) for entry in others]
        self._owners, self._replicas = owners, replicas
        self._stale = False
        self._learnt += 1

    async def _routed(
        self, slot: int | None, attempt: Callable[[Redis, bool], Awaitable[Any]]
    ) -> Any:
        """``attempt(node client, asking)`` on the owner of ``slot``, following redirections
        (an ``attempt`` raises the error reply that redirects it)."""
        if self._stale:
            await self.refresh(seen=self._learnt)
        node, asking, redirects = self.owner(slot), False, 0
        deadline = trio.current_time() + self.redirect_timeout
        delay = 0.005
        while True:
            seen = self._learnt
            try:
                return await attempt(self.node(node), asking)
            except RedisConnectionError:
                self._stale = True
                raise
            except ResponseError as exc:
                redirect = redirect_of(exc)
                if redirect is None:
                    raise
                self.redirections[redirect.kind] += 1
                if redirect.node is not None:
                    redirects += 1
                    if redirects > _MAX_REDIRECTS:
                        raise ClusterError(f"{exc} (after {_MAX_REDIRECTS} redirections)") from exc
                    if redirect.kind == "MOVED":
                        await self.refresh(seen=seen)
                        if slot is not None:
                            self._owners[slot] = redirect.node
                    node, asking = redirect.node, redirect.kind == "ASK"
                    continue
                if trio.current_time() + delay > deadline:
                    raise ClusterError(
                        f"{exc} (still after {self.redirect_timeout:g}s of retrying)"
                    ) from exc
                await trio.sleep(delay)
                delay = min(delay * 2, 0.25)
                if redirect.kind == "CLUSTERDOWN":
                    await self.refresh(seen=seen)
                node, asking, redirects = self.owner(slot), False, 0

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, *args: str | bytes | int | float) -> Any:
        async def attempt(node: Redis, asking: bool) -> Any:
            if not asking:
                return await node.execute(*args)
            reply = (await node.pipeline((("ASKING",), args)))[1]
            if isinstance(reply, Exception):
                raise reply
            return reply

        try:
            return await self._routed(command_slot(args), attempt)
        except RedisError as exc:
            self._failed(exc)
            raise

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """As :meth:`Redis.pipeline`, on the node of the first command's key (the commands of
        one pipeline are for one slot). Commands redirected one by one (a key already
        migrated) are run again on their own; a redirection of them all moves the pipeline."""
        slot = next((s for s in map(command_slot, commands) if s is not None), None)

        async def attempt(node: Redis, asking: bool) -> list[Any]:
            if asking:
                sent = [c for command in commands for c in (("ASKING",), command)]
                replies = (await node.pipeline(sent))[1::2]
            else:
                replies = await node.pipeline(commands)
            redirects = {redirect_of(r) for r in replies}
            if len(redirects) == 1 and None not in redirects:
                raise replies[0]  # every command was redirected the same way
            return replies

        try:
            replies: list[Any] = await self._routed(slot, attempt)
            for index, reply in enumerate(replies):
                if redirect_of(reply) is not None:
                    replies[index] = await self._in_place(commands[index])
            return replies
        except RedisError as exc:
            self._failed(exc)
            raise

    async def _in_place(self, command: Command) -> Any:
        """The reply of one command of a pipeline, its error reply returned, not raised."""
        try:
            return await self.execute(*command)
        except ResponseError as exc:
            return exc

    async def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        """As :meth:`Redis.run_script`, on the owner of the first key's slot."""

        async def attempt(node: Redis, asking: bool) -> Any:
            if not asking:
                return await node.run_script(script, keys, args)
            reply = await _asking(node, ("EVALSHA", script.sha, len(keys), *keys, *args))
            if isinstance(reply, NoScriptError):
                reply = await _asking(node, ("EVAL", script.source, len(keys), *keys, *args))
            if isinstance(reply, Exception):
                raise reply
            return reply

        try:
            return await self._routed(hash_slot(keys[0]) if keys else None, attempt)
        except RedisError as exc:
            self._failed(exc)
            raise

    async def connect(self) -> Any:
        """A new connection to a node of the cluster (any: for keyless commands)."""
        if self._stale:
            await self.refresh(seen=self._learnt)
        return await self.node(self.owner(None)).connect()

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        try:
            if self._stale:
                await self.refresh(seen=self._learnt)
            node = self.node(self.owner(hash_slot(channels[0]) if channels else None))
        except RedisError as exc:
            self._failed(exc)
            raise
        try:
            async with node.subscribe(*channels) as subscription:
                yield subscription
        except RedisError as exc:
            if isinstance(exc, RedisConnectionError):
                self._stale = True  # the node may be gone: the next subscriber asks again
            self._failed(exc)
            raise

    async def aclose(self) -> None:
        await super().aclose()
        nodes, self._nodes = self._nodes, {}
        for client in nodes.values():
            await client.aclose()


async def _asking(node: Redis, command: Command) -> Any:
    """The reply (error replies returned) of ``command`` right after ``ASKING``, on one
    connection with nothing between them."""
    return (await node.pipeline((("ASKING",), command)))[1]
