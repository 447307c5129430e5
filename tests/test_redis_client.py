"""The trio-native Redis client (``taskqueue.redis``) against real redis-server processes.

Most tests use the session server (``redis_url``); those that need special server configuration
(a password, ACL users, a unix socket, TLS, a restart) start their own with :class:`_Server`.
Real waits are kept to a few that cannot be avoided (a blocking command to cancel, a connect
timeout), each a fraction of a second.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import attrs
import pytest
import redis as redis_py
import trio

import taskqueue.redis.client as client_module
from taskqueue.embedded import EmbeddedRedis, find_redis_server
from taskqueue.redis import (
    AuthenticationError,
    Connection,
    NoScriptError,
    Redis,
    RedisAddress,
    RedisConnectionError,
    ResponseError,
    Script,
)

PASSWORD = "hunter2-not-in-logs"
ACL_USER = "alice"
ACL_PASSWORD = "wonderland-not-in-logs"


# -- helpers --------------------------------------------------------------------------------------


class _Server(EmbeddedRedis):
    """A private, non-persistent redis-server with extra command-line ``options``."""

    def __init__(self, *options: str, port: int = 0) -> None:
        super().__init__(port=port, persistent=False)
        self._options = list(options)

    def _args(self, binary: str, workdir: Path, port: int) -> list[str]:
        return [*super()._args(binary, workdir, port), *self._options]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require_password(port: int) -> None:
    """Turn on ``requirepass`` (after start: the readiness probe PINGs without a password)."""
    admin = redis_py.Redis(host="127.0.0.1", port=port)
    try:
        admin.config_set("requirepass", PASSWORD)
    finally:
        admin.close()


def _info(text: str) -> dict[str, str]:
    """``INFO`` text as a dict of its ``key:value`` lines."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


async def _info_int(client: Redis, section: str, key: str) -> int:
    return int(_info(await client.execute("INFO", section))[key])


async def _wait_for_info(client: Redis, section: str, key: str, value: int) -> None:
    """Poll ``INFO section`` until ``key`` equals ``value`` (the server sees closes a bit later)."""
    with trio.fail_after(2):
        while await _info_int(client, section, key) != value:  # noqa: ASYNC110 (polls a server)
            await trio.sleep(0.005)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    """A pool on the (emptied) session server."""
    pool = Redis.from_url(redis_url, connect_attempts=1)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """A second, one-connection pool on the session server, for looking at the server."""
    pool = Redis.from_url(redis_url, pool_size=1, connect_attempts=1)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[RedisAddress]:
    """Records the address of every attempt to open a connection (successful or not)."""
    attempts: list[RedisAddress] = []
    real_open = Connection.open

    async def recording_open(address: RedisAddress, *, connect_timeout: float = 5.0) -> Connection:
        attempts.append(address)
        return await real_open(address, connect_timeout=connect_timeout)

    monkeypatch.setattr(Connection, "open", recording_open)
    return attempts


# -- commands and replies -------------------------------------------------------------------------


async def test_replies_are_decoded_by_type(client: Redis) -> None:
    assert await client.ping() is True
    assert await client.execute("SET", "s", "héllo") == "OK"
    assert await client.execute("GET", "s") == "héllo"  # bulk string -> str
    assert await client.execute("SET", "b", b"raw bytes") == "OK"
    assert await client.execute("GET", "b") == "raw bytes"
    assert await client.execute("INCRBY", "n", 41) == 41  # integer -> int
    assert await client.execute("INCRBYFLOAT", "f", 1.5) == "1.5"
    assert await client.execute("GET", "missing") is None  # nil -> None
    assert await client.execute("RPUSH", "l", "a", "b", 3) == 3
    assert await client.execute("LRANGE", "l", 0, -1) == ["a", "b", "3"]  # array -> list
    assert await client.execute("LRANGE", "missing", 0, -1) == []
    assert await client.execute("BLPOP", "missing", 0.01) is None  # nil array -> None
    nested = await client.execute("EVAL", "return {1, 'two', {3, false}}", 0)
    assert nested == [1, "two", [3, None]]


async def test_pipeline_returns_error_replies_in_place(client: Redis) -> None:
    replies = await client.pipeline(
        [("SET", "k", "v"), ("LPUSH", "k", "x"), ("GET", "k"), ("INCR", "n"), ("NOSUCHCMD",)]
    )
    assert replies[0] == "OK"
    assert isinstance(replies[1], ResponseError)
    assert str(replies[1]).startswith("WRONGTYPE")
    assert replies[2:4] == ["v", 1]
    assert isinstance(replies[4], ResponseError)
    assert "unknown command" in str(replies[4])
    assert await client.pipeline([]) == []


async def test_execute_raises_response_error_and_keeps_the_connection(
    client: Redis, opened: list[RedisAddress]
) -> None:
    me = await client.execute("CLIENT", "ID")
    await client.execute("SET", "k", "v")
    with pytest.raises(ResponseError, match=r"^WRONGTYPE"):
        await client.execute("LPUSH", "k", "x")
    with pytest.raises(ResponseError, match="unknown command"):
        await client.execute("NOSUCHCMD")
    # An error reply is a complete reply: the connection stays in sync and in the pool.
    assert await client.execute("CLIENT", "ID") == me
    assert await client.execute("GET", "k") == "v"
    assert len(opened) == 1


# -- scripts --------------------------------------------------------------------------------------

COUNTING_SCRIPT = Script(
    "count", "local n = redis.call('INCR', KEYS[1]) return {n, ARGV[1], #KEYS, #ARGV}"
)


async def _calls(client: Redis, command: str) -> int:
    """How many times the server ran ``command`` since ``CONFIG RESETSTAT``."""
    stats = _info(await client.execute("INFO", "commandstats"))
    entry = stats.get(f"cmdstat_{command}")
    if entry is None:
        return 0
    fields = dict(item.split("=", 1) for item in entry.split(","))
    return int(fields["calls"])


async def test_script_runs_by_sha(client: Redis) -> None:
    assert await client.execute("SCRIPT", "LOAD", COUNTING_SCRIPT.source) == COUNTING_SCRIPT.sha
    await client.execute("CONFIG", "RESETSTAT")
    assert await client.run_script(COUNTING_SCRIPT, ["c"], ["x", 2]) == [1, "x", 1, 2]
    assert await client.run_script(COUNTING_SCRIPT, ["c"], ["y"]) == [2, "y", 1, 1]
    assert await _calls(client, "evalsha") == 2
    assert await _calls(client, "eval") == 0  # the source was never sent


async def test_script_falls_back_to_eval_after_script_flush(client: Redis) -> None:
    assert await client.run_script(COUNTING_SCRIPT, ["c"], ["a"]) == [1, "a", 1, 1]
    assert await client.execute("SCRIPT", "EXISTS", COUNTING_SCRIPT.sha) == [1]
    assert await client.execute("SCRIPT", "FLUSH") == "OK"
    assert await client.execute("SCRIPT", "EXISTS", COUNTING_SCRIPT.sha) == [0]
    await client.execute("CONFIG", "RESETSTAT")

    assert await client.run_script(COUNTING_SCRIPT, ["c"], ["b"]) == [2, "b", 1, 1]
    assert await client.execute("GET", "c") == "2"  # ran exactly once
    assert await _calls(client, "eval") == 1
    # EVAL cached it again: the next run goes by SHA only.
    assert await client.run_script(COUNTING_SCRIPT, ["c"], ["c"]) == [3, "c", 1, 1]
    assert await _calls(client, "eval") == 1


async def test_script_error_is_raised_without_a_retry(client: Redis) -> None:
    failing = Script("fail", "redis.call('INCR', KEYS[1]) return redis.error_reply('ERR nope')")
    with pytest.raises(ResponseError, match="nope") as info:
        await client.run_script(failing, ["c"], [])
    assert not isinstance(info.value, NoScriptError)
    assert await client.execute("GET", "c") == "1"


# -- the pool -------------------------------------------------------------------------------------


async def test_pool_opens_at_most_pool_size_connections(redis_url: str, admin: Redis) -> None:
    pool = Redis.from_url(redis_url, pool_size=3, connect_attempts=1)
    before = await _info_int(admin, "stats", "total_connections_received")
    popped: list[str] = []

    async def worker() -> None:
        reply = await pool.execute("BLPOP", "jobs", 5)
        popped.append(reply[1])

    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(worker)
                await _wait_for_info(admin, "clients", "blocked_clients", 3)
                await trio.sleep(0.05)  # time for a fourth connection to show up: it must not
                assert await _info_int(admin, "clients", "blocked_clients") == 3
                assert await _info_int(admin, "clients", "connected_clients") == 3 + 1
                await admin.execute("RPUSH", "jobs", *range(8))
        assert sorted(popped) == [str(i) for i in range(8)]
        # Eight commands and then twenty more, all on the same three connections.
        for i in range(20):
            assert await pool.execute("ECHO", i) == str(i)
        after = await _info_int(admin, "stats", "total_connections_received")
        assert after - before == 3
    finally:
        await pool.aclose()


async def test_pool_reuses_one_connection_for_sequential_commands(
    client: Redis, opened: list[RedisAddress]
) -> None:
    ids = {await client.execute("CLIENT", "ID") for _ in range(10)}
    await client.pipeline([("PING",), ("PING",)])
    await client.run_script(COUNTING_SCRIPT, ["c"], [])
    async with client.connection() as conn:
        assert await conn.execute("CLIENT", "ID") in ids
    assert len(ids) == 1
    assert len(opened) == 1


async def test_broken_connection_is_dropped_with_the_idle_ones(
    redis_url: str, admin: Redis
) -> None:
    pool = Redis.from_url(redis_url, pool_size=3, connect_attempts=1)
    try:
        # Three connections in the pool: borrowed at the same time, then all given back.
        everyone_borrowed = trio.Event()
        borrowed: list[int] = []

        async def borrow() -> None:
            async with pool.connection() as conn:
                borrowed.append(await conn.execute("CLIENT", "ID"))
                if len(borrowed) == 3:
                    everyone_borrowed.set()
                await everyone_borrowed.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(borrow)
        assert len(set(borrowed)) == 3
        assert await _info_int(admin, "clients", "connected_clients") == 3 + 1

        # The server drops one of them; the command that finds out fails...
        with pytest.raises(RedisConnectionError, match=r"127\.0\.0\.1"):
            async with pool.connection() as conn:
                victim = await conn.execute("CLIENT", "ID")
                assert await admin.execute("CLIENT", "KILL", "ID", victim) == 1
                await conn.execute("PING")
        assert conn.broken
        # ... and the pool closes the two healthy idle ones too (after a restart all are dead).
        await _wait_for_info(admin, "clients", "connected_clients", 1)
        assert await pool.execute("CLIENT", "ID") not in borrowed
    finally:
        await pool.aclose()


async def test_closed_pool_refuses_commands(client: Redis) -> None:
    assert await client.ping()
    await client.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await client.execute("PING")


# -- cancellation ---------------------------------------------------------------------------------


async def test_cancelled_command_discards_its_connection(
    redis_url: str, admin: Redis, opened: list[RedisAddress]
) -> None:
    pool = Redis.from_url(redis_url, pool_size=1, connect_attempts=1)
    try:
        assert await pool.execute("ECHO", "warm") == "warm"
        with trio.move_on_after(0.05) as scope:
            await pool.execute("BLPOP", "q", 0.3)  # its nil reply would come 0.3 s later
        assert scope.cancelled_caught
        # A reused connection would block here until the BLPOP times out, then hand this
        # command the BLPOP's late nil. A fresh connection answers at once, correctly.
        with trio.fail_after(0.2):
            assert await pool.execute("ECHO", "mine") == "mine"
        assert len(opened) == 2  # the first one and its replacement
        # The cancelled BLPOP's connection is closed, so it cannot steal the next push either.
        await _wait_for_info(admin, "clients", "blocked_clients", 0)
        assert await pool.execute("RPUSH", "q", "job") == 1
        assert await admin.execute("LRANGE", "q", 0, -1) == ["job"]
    finally:
        await pool.aclose()


async def test_cancelled_pipeline_discards_its_connection(redis_url: str) -> None:
    pool = Redis.from_url(redis_url, pool_size=1, connect_attempts=1)
    try:
        first = await pool.execute("CLIENT", "ID")
        with trio.move_on_after(0.05) as scope:
            await pool.pipeline([("ECHO", "a"), ("BLPOP", "q", 0.3), ("ECHO", "b")])
        assert scope.cancelled_caught
        replies = await pool.pipeline([("ECHO", "c"), ("CLIENT", "ID")])
        assert replies[0] == "c"
        assert replies[1] != first
    finally:
        await pool.aclose()


async def test_cancelled_connection_refuses_further_commands(redis_url: str) -> None:
    conn = await Connection.open(RedisAddress.from_url(redis_url))
    try:
        with trio.move_on_after(0.05):
            await conn.execute("BLPOP", "q", 0.3)
        assert conn.broken
        with pytest.raises(RedisConnectionError, match="closed"):
            await conn.execute("PING")
    finally:
        await conn.aclose()


# -- reconnecting ---------------------------------------------------------------------------------


@pytest.fixture
def restartable() -> Iterator[list[EmbeddedRedis]]:
    """A password-protected server of the test's own (the test may replace it); stopped after."""
    server = _Server()
    server.start()
    _require_password(server.port)
    servers: list[EmbeddedRedis] = [server]
    try:
        yield servers
    finally:
        for each in servers:
            each.stop()


def _restart_on(port: int) -> EmbeddedRedis:
    server = _Server(port=port)
    server.start()
    _require_password(port)
    return server


async def test_pool_recovers_when_the_server_comes_back(
    restartable: list[EmbeddedRedis],
) -> None:
    port = restartable[0].port
    pool = Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", connect_attempts=2)
    try:
        assert await pool.execute("SET", "k", "v") == "OK"
        await trio.to_thread.run_sync(restartable[0].stop)

        # The pooled connection is dead: the command fails, naming the address.
        with pytest.raises(RedisConnectionError) as stale:
            await pool.execute("GET", "k")
        # With nothing listening, a new connection cannot be made either.
        with pytest.raises(RedisConnectionError) as refused:
            await pool.execute("GET", "k")
        for error in (stale.value, refused.value):
            message = str(error)
            assert f"127.0.0.1:{port}" in message
            assert PASSWORD not in message
            assert PASSWORD not in repr(error)
        assert str(stale.value).startswith(f"connection to redis 127.0.0.1:{port} db=0 ")
        assert str(stale.value).count("connection to") == 1  # not wrapped twice
        assert str(refused.value).startswith(f"cannot connect to redis 127.0.0.1:{port} db=0: ")

        restartable.append(await trio.to_thread.run_sync(_restart_on, port))
        assert await pool.execute("PING") == "PONG"
        assert await pool.execute("SET", "k", "again") == "OK"
    finally:
        await pool.aclose()


class _NoJitter:
    """Stands in for the ``random`` module of the client: records backoff bounds, sleeps 0."""

    def __init__(self) -> None:
        self.bounds: list[float] = []

    def uniform(self, low: float, high: float) -> float:
        assert low == 0
        self.bounds.append(high)
        return 0.0


async def test_connect_retries_with_growing_backoff(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jitter = _NoJitter()
    monkeypatch.setattr(client_module, "random", jitter)
    real_open = Connection.open
    attempts: list[int] = []

    async def flaky_open(address: RedisAddress, *, connect_timeout: float = 5.0) -> Connection:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise RedisConnectionError(f"cannot connect to {address}: flaky")
        return await real_open(address, connect_timeout=connect_timeout)

    monkeypatch.setattr(Connection, "open", flaky_open)
    pool = Redis.from_url(redis_url, connect_attempts=3)
    try:
        assert await pool.execute("PING") == "PONG"
    finally:
        await pool.aclose()
    assert attempts == [1, 2, 3]
    assert len(jitter.bounds) == 2
    assert 0 < jitter.bounds[0] < jitter.bounds[1]


async def test_connect_gives_up_after_connect_attempts(
    monkeypatch: pytest.MonkeyPatch, opened: list[RedisAddress]
) -> None:
    jitter = _NoJitter()
    monkeypatch.setattr(client_module, "random", jitter)
    port = _free_port()  # nothing listens there
    pool = Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", connect_attempts=4)
    try:
        with pytest.raises(RedisConnectionError) as info:
            await pool.execute("PING")
    finally:
        await pool.aclose()
    assert len(opened) == 4
    assert len(jitter.bounds) == 3
    assert jitter.bounds == sorted(jitter.bounds)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_connect_timeout_on_a_silent_server() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # accepts, then never answers (AUTH hangs)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        pool = Redis.from_url(
            f"redis://:{PASSWORD}@127.0.0.1:{port}/0", connect_timeout=0.2, connect_attempts=1
        )
        start = trio.current_time()
        with pytest.raises(RedisConnectionError, match="timed out") as info:
            await pool.execute("PING")
        elapsed = trio.current_time() - start
        await pool.aclose()
        nursery.cancel_scope.cancel()
    assert 0.2 <= elapsed < 4.0  # its own timeout, not the default of 5 s
    assert f"127.0.0.1:{port}" in str(info.value)
    assert PASSWORD not in str(info.value)


# -- URLs: db, password, ACL user, unix socket, TLS -----------------------------------------------


def test_address_hides_the_password() -> None:
    address = RedisAddress.from_url(f"redis://{ACL_USER}:{PASSWORD}@example.org:6380/3")
    assert (address.host, address.port, address.db) == ("example.org", 6380, 3)
    assert (address.username, address.password) == (ACL_USER, PASSWORD)
    assert str(address) == "redis example.org:6380 db=3"
    assert PASSWORD not in repr(address)
    assert str(RedisAddress.from_url("unix:///run/redis.sock?db=2")) == (
        "redis unix:///run/redis.sock db=2"
    )
    assert str(RedisAddress.from_url("rediss://h:1/0")) == "rediss h:1 db=0"
    # Explicit arguments win over the URL (a password from the environment, say).
    override = RedisAddress.from_url("redis://h/1", db=4, password="from-env")
    assert (override.db, override.password) == (4, "from-env")


async def test_url_db_selects_the_database(redis_server: EmbeddedRedis, client: Redis) -> None:
    db3 = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/3", pool_size=2)
    try:
        assert await db3.execute("SET", "k", "in three") == "OK"
        # Every connection of the pool selects it, not just the first.
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(db3.execute, "INCR", "hits")
        assert await db3.execute("GET", "hits") == "4"
    finally:
        await db3.aclose()
    assert await client.execute("GET", "k") is None
    keyspace = _info(await client.execute("INFO", "keyspace"))
    assert keyspace["db3"].startswith("keys=2,")
    assert "db0" not in keyspace


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EmbeddedRedis]:
    """A server with ``requirepass`` and an ACL user limited to ``app:*`` keys."""
    with _Server() as server:
        admin = redis_py.Redis(host="127.0.0.1", port=server.port)
        try:
            admin.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~app:*", "&*", "+@all"
            )
            admin.config_set("requirepass", PASSWORD)
        finally:
            admin.close()
        yield server


async def test_url_password(auth_server: EmbeddedRedis) -> None:
    pool = Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{auth_server.port}/0")
    try:
        assert await pool.execute("ACL", "WHOAMI") == "default"
        assert await pool.execute("SET", "anything", "ok") == "OK"
    finally:
        await pool.aclose()
    # The password can also come from outside the URL.
    address = RedisAddress.from_url(auth_server.url, password=PASSWORD)
    pool = Redis(address)
    try:
        assert await pool.ping()
    finally:
        await pool.aclose()


async def test_url_acl_user(auth_server: EmbeddedRedis) -> None:
    url = f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{auth_server.port}/0"
    pool = Redis.from_url(url)
    try:
        assert await pool.execute("ACL", "WHOAMI") == ACL_USER
        assert await pool.execute("SET", "app:k", "v") == "OK"
        with pytest.raises(ResponseError, match="NOPERM"):
            await pool.execute("SET", "other:k", "v")
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    "credentials",
    [f":wrong-{PASSWORD}", f"{ACL_USER}:wrong-{ACL_PASSWORD}", f"nobody:{ACL_PASSWORD}"],
    ids=["password", "acl-password", "acl-user"],
)
async def test_wrong_credentials_raise_authentication_error(
    auth_server: EmbeddedRedis, credentials: str
) -> None:
    pool = Redis.from_url(
        f"redis://{credentials}@127.0.0.1:{auth_server.port}/0", connect_attempts=1
    )
    try:
        with pytest.raises(AuthenticationError, match="WRONGPASS") as info:
            await pool.execute("PING")
    finally:
        await pool.aclose()
    assert "wrong-" not in str(info.value)
    assert isinstance(info.value, RedisConnectionError)


async def test_missing_password_raises_authentication_error(auth_server: EmbeddedRedis) -> None:
    pool = Redis.from_url(auth_server.url)
    try:
        with pytest.raises(AuthenticationError, match="NOAUTH"):
            await pool.execute("GET", "k")
    finally:
        await pool.aclose()


async def test_failed_auth_leaves_no_connection_behind(auth_server: EmbeddedRedis) -> None:
    admin = Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{auth_server.port}/0")
    wrong = Redis.from_url(f"redis://:wrong@127.0.0.1:{auth_server.port}/0", connect_attempts=1)
    try:
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await wrong.execute("PING")
        # Only the admin's own connection is left: the refused ones were closed, not leaked.
        await _wait_for_info(admin, "clients", "connected_clients", 1)
    finally:
        await wrong.aclose()
        await admin.aclose()


@pytest.fixture(scope="module")
def unix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A server that also listens on a unix socket; yields the socket's path."""
    path = tmp_path_factory.mktemp("sock") / "redis.sock"
    if len(str(path)) > 100:
        pytest.skip(f"temporary directory too deep for a unix socket path: {path}")
    with _Server("--unixsocket", str(path), "--unixsocketperm", "700"):
        yield path


async def test_unix_socket_url(unix_server: Path) -> None:
    pool = Redis.from_url(f"unix://{unix_server}?db=2")
    try:
        assert await pool.execute("SET", "k", "v") == "OK"
        info = dict(field.split("=", 1) for field in (await pool.execute("CLIENT", "INFO")).split())
        assert info["laddr"].startswith(str(unix_server))
        assert "U" in info["flags"]
        assert info["db"] == "2"
        assert await pool.execute("GET", "k") == "v"
    finally:
        await pool.aclose()


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1 that is its own CA; returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _certificate_with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("needs the cryptography package or the openssl CLI to make a certificate")
        command = [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=taskqueue test", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return cert, key


def _certificate_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import (  # type: ignore[import-not-found, unused-ignore]
        hashes,
        serialization,
    )
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskqueue test")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _skip_unless_tls_build(binary: str) -> None:
    """Skip if ``binary`` was built without TLS: it then rejects ``--tls-port`` as unknown."""
    # Both ports 0: a TLS build starts, finds nothing to listen on and exits; no socket opened.
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    output = probe.stdout + probe.stderr
    if probe.returncode != 0 and "tls-port" in output:
        pytest.skip(f"{binary} was built without TLS support: {output.strip()[-300:]}")


@attrs.frozen
class _TLSServer:
    port: int
    ca: Path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_TLSServer]:
    _skip_unless_tls_build(find_redis_server())
    cert, key = _self_signed_certificate(tmp_path_factory.mktemp("tls"))
    tls_port = _free_port()
    options = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    options += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    options += ["--tls-ca-cert-file", str(cert)]
    with _Server(*options):
        yield _TLSServer(port=tls_port, ca=cert)


@pytest.mark.parametrize("query", ["ssl_ca_certs={ca}", "ssl_cert_reqs=none"])
async def test_rediss_url(tls_server: _TLSServer, query: str) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/1?" + query.format(ca=tls_server.ca)
    pool = Redis.from_url(url, pool_size=2)
    try:
        assert await pool.execute("FLUSHDB") == "OK"
        assert await pool.execute("SET", "k", "x" * 100_000) == "OK"  # several TLS records
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(pool.execute, "INCR", "n")
        replies = await pool.pipeline([("GET", "k"), ("GET", "n"), ("CLIENT", "INFO")])
        assert replies[0] == "x" * 100_000
        assert replies[1] == "4"
        assert f"laddr=127.0.0.1:{tls_server.port}" in replies[2]
        assert " db=1 " in replies[2]
    finally:
        await pool.aclose()


async def test_rediss_verifies_the_certificate_by_default(tls_server: _TLSServer) -> None:
    pool = Redis.from_url(f"rediss://127.0.0.1:{tls_server.port}/0", connect_attempts=1)
    try:
        with pytest.raises(RedisConnectionError) as info:
            await pool.execute("PING")
    finally:
        await pool.aclose()
    # The reason is in the message (trio's BrokenResourceError alone would say nothing).
    assert str(info.value).startswith(f"cannot connect to rediss 127.0.0.1:{tls_server.port}")
    assert "certificate verify failed" in str(info.value)


# -- pub/sub --------------------------------------------------------------------------------------


async def test_subscribe_receives_messages_in_order(client: Redis) -> None:
    with trio.fail_after(5):
        async with client.subscribe("a", "b") as subscription:
            # Subscribed (confirmed) before subscribe() returned: every publish has a receiver.
            sent = [("a", "1"), ("b", "2"), ("c", "lost"), ("a", "3"), ("b", "4")]
            for channel, data in sent:
                receivers = await client.execute("PUBLISH", channel, data)
                assert receivers == (0 if channel == "c" else 1)
            received = [await subscription.get_message() for _ in range(3)]
            async for message in subscription:
                received.append(message)
                if len(received) == 4:
                    break
        assert received == [m for m in sent if m[0] != "c"]
        # The subscription's connection is closed on exit, and the pool is unaffected.
        assert await client.execute("PUBSUB", "NUMSUB", "a", "b") == ["a", 0, "b", 0]


async def test_subscription_does_not_use_the_pool(redis_url: str) -> None:
    pool = Redis.from_url(redis_url, pool_size=1)
    try:
        with trio.fail_after(5):
            async with pool.subscribe("events") as subscription:
                assert await pool.execute("PUBLISH", "events", "hello") == 1
                assert await subscription.get_message() == ("events", "hello")
    finally:
        await pool.aclose()
