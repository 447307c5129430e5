"""Finding Redis the same way everywhere: explicit URL > environment > redis.url > the data
directory's advertisement > the default; paths under systemd's directories; the password file."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_py

from taskqueue import Client, SyncClient
from taskqueue.config import Config, RedisConfig, load_config
from taskqueue.discovery import (
    DEFAULT_URL,
    Found,
    Source,
    advertise,
    find_redis,
    redis_address,
    redis_password,
)
from taskqueue.embedded import EmbeddedRedis
from taskqueue.errors import ConfigError
from taskqueue.locations import config_file, credential_file, data_dir


def _config(**redis: object) -> Config:
    return Config(redis=RedisConfig(**redis))  # type: ignore[arg-type]


def test_each_source_wins_over_the_ones_after_it(tmp_path: Path) -> None:
    config = _config(url="redis://config:6379/0", data_dir=str(tmp_path))
    env = {"TASKQUEUE_REDIS__URL": "redis://env:6379/0"}
    with advertise(tmp_path, "redis://advertised:6379/0") as path:
        assert find_redis(config, url="redis://explicit:6379/0", env=env) == Found(
            "redis://explicit:6379/0", Source.EXPLICIT
        )
        assert find_redis(config, env=env) == Found("redis://env:6379/0", Source.ENVIRONMENT)
        assert find_redis(config, env={}) == Found("redis://config:6379/0", Source.CONFIG)
        unset = _config(data_dir=str(tmp_path))
        assert find_redis(unset, env={}) == Found(
            "redis://advertised:6379/0", Source.ADVERTISED, path
        )
        # A `taskqueue run` owns its data directory: it never joins an advertisement.
        assert find_redis(unset, env={}, advertised=False, default=False) is None
    assert find_redis(unset, env={}) == Found(DEFAULT_URL, Source.DEFAULT)
    assert find_redis(unset, env={"TASKQUEUE_REDIS__URL": ""}) == Found(DEFAULT_URL, Source.DEFAULT)


def test_a_relative_data_dir_is_in_the_state_directory_under_systemd(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert data_dir(Config(), {"STATE_DIRECTORY": f"{state}:{tmp_path}/other"}) == state / "data"
    assert data_dir(_config(data_dir="/srv/tq"), {"STATE_DIRECTORY": str(state)}) == Path("/srv/tq")
    assert data_dir(Config(), {}) == Path.cwd() / "data"


def test_the_advertisement_is_read_from_the_state_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with advertise(tmp_path / "data", "redis://127.0.0.1:1234/0"):
        found = find_redis(env={"STATE_DIRECTORY": str(tmp_path)})
    assert found is not None
    assert (found.url, found.source) == ("redis://127.0.0.1:1234/0", Source.ADVERTISED)


def test_the_config_file_is_found_in_the_configuration_directory(tmp_path: Path) -> None:
    env = {"CONFIGURATION_DIRECTORY": str(tmp_path)}
    assert config_file(env) is None  # no file there: defaults, not an error
    (tmp_path / "taskqueue.toml").write_text('[worker]\nid = "from-etc"\n')

    assert config_file(env) == tmp_path / "taskqueue.toml"
    assert load_config(env=env).worker.id == "from-etc"
    named = tmp_path / "named.toml"
    named.write_text('[worker]\nid = "named"\n')
    assert load_config(env={**env, "TASKQUEUE_CONFIG": str(named)}).worker.id == "named"


def test_clients_with_no_url_find_the_daemon_advertised_in_the_working_directory(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with advertise(tmp_path / "data", redis_url):
        with SyncClient() as client:
            submitted = client.submit("echo", "hi")
        with SyncClient.from_config(load_config(env={})) as client:
            assert client.get(submitted.id).payload == "hi"
    with SyncClient() as client:  # the advertisement is gone with its daemon: the default
        assert (client.address.host, client.address.port) == ("127.0.0.1", 6379)


async def test_the_trio_client_with_no_url_uses_the_advertised_redis(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with advertise(tmp_path / "data", redis_url):
        async with Client() as client:
            submitted = await client.submit("echo", 7)
        async with Client.from_config(load_config(env={})) as client:
            assert (await client.get(submitted.id)).payload == 7


@pytest.fixture
def locked_redis(tmp_path: Path) -> EmbeddedRedis:
    """A private redis-server that wants the password ``s3cret pass``."""
    server = EmbeddedRedis(data_dir=tmp_path / "locked", persistent=False)
    server.start()
    admin = redis_py.Redis.from_url(server.url)
    admin.config_set("requirepass", "s3cret pass")
    admin.close()
    return server


def test_the_password_file_is_a_credential_under_systemd(
    locked_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "redis-password").write_text("s3cret pass\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(
        env={}, overrides={"redis.url": locked_redis.url, "redis.password_file": "redis-password"}
    )
    try:
        assert redis_password(config) == "s3cret pass"
        assert "s3cret" not in repr(redis_address(config))
        assert "s3cret" not in str(config.masked())
        with SyncClient.from_config(config) as client:
            assert client.stats().workers == 0
    finally:
        locked_redis.stop()


def test_an_unreadable_password_file_is_named_and_its_content_never_shown(tmp_path: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    missing = _config(password_file="redis-password")
    with pytest.raises(ConfigError, match=r"redis.password_file .*redis-password: cannot read"):
        redis_password(missing, env)
    (tmp_path / "redis-password").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        redis_password(missing, env)
    assert credential_file("/run/secret", env) == Path("/run/secret")


def test_password_and_password_file_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"only one of redis\.password and redis\.password_file"):
        load_config(env={"TASKQUEUE_REDIS__PASSWORD": "x", "TASKQUEUE_REDIS__PASSWORD_FILE": "f"})
