"""Configuration: defaults, the four layers, the value parsers, and the words of every error."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import attrs
import pytest

from taskqueue.broker import BrokerSettings
from taskqueue.config import (
    Config,
    RedisConfig,
    RetentionConfig,
    ServerConfig,
    TaskConfig,
    WorkerConfig,
    format_duration,
    format_size,
    load_config,
    mask_url,
    parse_duration,
    parse_size,
)
from taskqueue.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "taskqueue.toml"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskqueue.toml"
    path.write_text(text)
    return path


def config_error(
    path: Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
) -> str:
    """The message of the ConfigError that loading raises (failing the test if none is)."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {}, overrides=overrides)
    return str(caught.value)


# -- defaults -------------------------------------------------------------------------------------


def test_defaults_match_the_spec() -> None:
    config = Config()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 9090
    assert config.server.tokens == ()
    assert config.server.allow_unauthenticated_public is False
    assert config.server.max_request_bytes == 2 * 1024 * 1024
    assert config.redis.url is None
    assert config.redis.namespace == "taskqueue"
    assert config.redis.partitions == 1
    assert config.redis.connect_timeout == 5.0
    assert config.worker.concurrency == 50
    assert config.worker.heartbeat_interval == 2.0
    assert config.worker.worker_timeout == 8.0
    assert config.worker.cleanup_interval == 60.0
    assert config.worker.priority_guard == 0
    assert config.task.default_timeout == 300.0
    assert config.task.max_payload_bytes == 1024 * 1024
    assert config.retention.succeeded == 86400.0
    assert config.retention.dead_max == 100_000
    assert config.metrics.path == "/metrics"
    assert config.logging.level == "info"
    assert config.logging.format == "auto"


def test_loading_nothing_gives_the_defaults() -> None:
    assert load_config(env={}) == Config()


def test_config_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Config().worker.concurrency = 8  # type: ignore[misc]


# -- the layers -----------------------------------------------------------------------------------


def test_toml_file_sets_values_in_every_form(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        [server]
        port = 8080
        tokens = ["one", "two"]
        max_request_bytes = "4MiB"

        [redis]
        url = "redis://db.example:6379/2"

        [worker]
        concurrency = 8
        heartbeat_interval = "250ms"
        worker_timeout = 2
        task_types = ["email.send"]

        [task]
        max_payload_bytes = 65536

        [retention]
        succeeded = "2h30m"
        """,
    )
    config = load_config(path, env={})
    assert config.server.port == 8080
    assert config.server.tokens == ("one", "two")
    assert config.server.max_request_bytes == 4 * 1024 * 1024
    assert config.redis.url == "redis://db.example:6379/2"
    assert config.worker.concurrency == 8
    assert config.worker.heartbeat_interval == 0.25
    assert config.worker.worker_timeout == 2.0
    assert config.worker.task_types == ("email.send",)
    assert config.retention.succeeded == 9000.0
    assert config.task.max_payload_bytes == 65536
    assert config.worker.cleanup_interval == 60.0  # untouched keys keep their default


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurrency = 8\npriority_guard = 3\n")
    config = load_config(path, env={"TASKQUEUE_WORKER__CONCURRENCY": "16"})
    assert config.worker.concurrency == 16
    assert config.worker.priority_guard == 3


def test_overrides_override_the_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurrency = 8\n")
    config = load_config(
        path,
        env={"TASKQUEUE_WORKER__CONCURRENCY": "16"},
        overrides={"worker.concurrency": 32, "server.port": "0"},
    )
    assert config.worker.concurrency == 32
    assert config.server.port == 0


def test_override_of_none_is_a_flag_not_given() -> None:
    config = load_config(
        env={"TASKQUEUE_WORKER__CONCURRENCY": "16"}, overrides={"worker.concurrency": None}
    )
    assert config.worker.concurrency == 16


def test_environment_values_are_parsed_from_text() -> None:
    config = load_config(
        env={
            "TASKQUEUE_SERVER__TOKENS": "alpha, beta,",
            "TASKQUEUE_SERVER__OPEN_HEALTH_ENDPOINTS": "off",
            "TASKQUEUE_WORKER__SKIP_BROKEN_PLUGINS": "Yes",
            "TASKQUEUE_WORKER__TASK_TYPES": "email.send,image.resize",
            "TASKQUEUE_WORKER__DRAIN_TIMEOUT": "1m30s",
            "TASKQUEUE_TASK__MAX_PAYLOAD_BYTES": "64KiB",
            "TASKQUEUE_LOGGING__LEVEL": "DEBUG",
            "TASKQUEUE_METRICS__PORT": "9091",
        }
    )
    assert config.server.tokens == ("alpha", "beta")
    assert config.server.open_health_endpoints is False
    assert config.worker.skip_broken_plugins is True
    assert config.worker.task_types == ("email.send", "image.resize")
    assert config.worker.drain_timeout == 90.0
    assert config.task.max_payload_bytes == 65536
    assert config.logging.level == "debug"
    assert config.metrics.port == 9091


def test_empty_environment_value_unsets_an_optional_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[redis]\nurl = "redis://db:6379/0"\n')
    assert load_config(path, env={"TASKQUEUE_REDIS__URL": ""}).redis.url is None


def test_environment_variables_without_double_underscore_are_not_ours() -> None:
    assert load_config(env={"TASKQUEUE_TEST_REDIS": "x", "TASKQUEUEX__Y": "z"}) == Config()


def test_taskqueue_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurrency = 7\n")
    assert load_config(env={"TASKQUEUE_CONFIG": str(path)}).worker.concurrency == 7


def test_explicit_path_wins_over_taskqueue_config(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurrency = 7\n")
    env = {"TASKQUEUE_CONFIG": str(tmp_path / "elsewhere.toml")}
    assert load_config(path, env=env).worker.concurrency == 7


def test_env_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQUEUE_WORKER__CONCURRENCY", "3")
    assert load_config().worker.concurrency == 3


# -- durations and sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("2h30m", 9000.0),
        ("1m 30s", 90.0),
        (" 5s ", 5.0),
        ("5", 5.0),
        ("0.5", 0.5),
        ("0", 0.0),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5 parsecs", "5x", "s", "-5s", "1h-30m", "five", "inf", "nan", "1e3s", -1]
)
def test_parse_duration_refuses(text: str | float) -> None:
    with pytest.raises(ValueError, match="expected a duration like 250ms, 5s, 1m"):
        parse_duration(text)


def test_parse_duration_refuses_booleans() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("512B", 512),
        ("64KiB", 65536),
        ("1MiB", 1048576),
        ("1MB", 1000000),
        ("1KB", 1000),
        ("2GiB", 2 * 1024**3),
        ("1mib", 1048576),
        ("1.5KiB", 1536),
        (" 64 KiB ", 65536),
        (4096, 4096),
    ],
)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1XB", "1K", "-1", "1.5", "0.1B", "KiB", -5])
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match="expected a"):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5.0, "5s"),
        (60.0, "1m"),
        (86400.0, "24h"),
        (9000.0, "2h30m"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration_is_short_and_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("size", "text"), [(2 * 1024**2, "2MiB"), (65536, "64KiB"), (1000000, "1MB"), (700, "700B")]
)
def test_format_size_is_short_and_reads_back(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


# -- errors: wrong values -------------------------------------------------------------------------


def test_wrong_value_in_file_names_file_key_value_and_expectation(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\nconcurrency = "lots"\n')
    assert config_error(path) == (
        f'config file {path}: worker.concurrency = "lots": expected a whole number >= 1'
    )


def test_file_does_not_guess_numbers_from_strings(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\nconcurrency = "8"\n')
    assert 'worker.concurrency = "8": expected a whole number >= 1' in config_error(path)


def test_wrong_duration_in_environment_names_the_variable() -> None:
    message = config_error(env={"TASKQUEUE_WORKER__HEARTBEAT_INTERVAL": "5 parsecs"})
    assert message.startswith(
        "environment TASKQUEUE_WORKER__HEARTBEAT_INTERVAL = '5 parsecs': "
        "expected a duration like 250ms, 5s, 1m"
    )


def test_wrong_override_names_the_override() -> None:
    message = config_error(overrides={"server.port": 70000})
    assert message == "override: server.port = 70000: expected a port number from 0 to 65535"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("server.port", -1, "expected a port number from 0 to 65535"),
        ("server.max_request_bytes", "0", "expected a size like 512, 64KiB, 1MiB (more than 0)"),
        ("server.allow_unauthenticated_public", "maybe", "expected true or false"),
        ("redis.namespace", "a:b", "expected a non-empty name without '{', '}' or ':'"),
        ("redis.namespace", "{tq}", "expected a non-empty name without '{', '}' or ':'"),
        ("redis.namespace", "", "expected a non-empty name"),
        ("redis.url", "http://db:6379", "expected a URL like redis://host:6379/0"),
        ("redis.pool_size", 0, "expected a whole number >= 1"),
        ("worker.concurrency", 0, "expected a whole number >= 1"),
        ("worker.heartbeat_interval", "0s", "expected a duration like 250ms, 5s, 1m (more than 0)"),
        ("worker.priority_guard", -1, "expected a whole number >= 0"),
        ("worker.id", "has space", "expected a name without spaces"),
        ("task.max_retries", 1.5, "expected a whole number >= 0"),
        ("retention.interval", 0, "expected a duration like 250ms, 5s, 1m (more than 0)"),
        ("retention.dead_max", -1, "expected a whole number >= 0"),
        ("metrics.path", "metrics", "expected a path starting with '/'"),
        ("logging.level", "loud", "expected one of debug, info, warning, error, critical"),
        ("logging.format", "xml", "expected one of auto, json, console, journald"),
    ],
)
def test_each_wrong_value_says_what_was_expected(key: str, value: object, expected: str) -> None:
    message = config_error(overrides={key: value})
    assert message.startswith(f"override: {key} = {value!r}: ")
    assert expected in message


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurrency = true\n")
    assert "worker.concurrency = true: expected a whole number >= 1" in config_error(path)


def test_list_key_wants_a_list_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\ntask_types = "email.send"\n')
    assert 'worker.task_types = "email.send": expected a list of' in config_error(path)


def test_secret_values_are_masked_in_error_messages() -> None:
    message = config_error(overrides={"redis.url": "http://user:hunter2@db:6379"})
    assert "hunter2" not in message
    assert "http://user:***@db:6379" in message


def test_worker_timeout_must_exceed_heartbeat_naming_both_sources(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\nheartbeat_interval = "10s"\n')
    message = config_error(path, env={"TASKQUEUE_WORKER__WORKER_TIMEOUT": "10s"})
    assert message == (
        "worker.worker_timeout = 10s (environment TASKQUEUE_WORKER__WORKER_TIMEOUT)"
        f" and worker.heartbeat_interval = 10s (config file {path}): expected"
        " worker.worker_timeout > worker.heartbeat_interval, or live workers are taken for dead"
    )


def test_retry_max_delay_below_base_delay_is_refused() -> None:
    message = config_error(overrides={"task.retry_max_delay": "500ms"})
    assert message.startswith(
        "task.retry_max_delay = 500ms (override) and task.retry_base_delay = 1s (default)"
    )


def test_keyfile_without_certfile_is_refused() -> None:
    message = config_error(env={"TASKQUEUE_SERVER__KEYFILE": "key.pem"})
    assert "server.keyfile = 'key.pem' (environment TASKQUEUE_SERVER__KEYFILE)" in message
    assert "expected server.certfile as well" in message


def test_sections_built_by_hand_are_validated_too() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("worker.concurrency = 0: expected a whole number >= 1")
    ):
        WorkerConfig(concurrency=0)
    with pytest.raises(
        ConfigError, match=re.escape("worker.worker_timeout > worker.heartbeat_interval")
    ):
        WorkerConfig(heartbeat_interval=30.0, worker_timeout=30.0)
    with pytest.raises(ConfigError, match=re.escape("redis.password = '***'")):
        RedisConfig(password=12345)  # type: ignore[arg-type]


# -- errors: unknown keys and broken files --------------------------------------------------------


def test_unknown_key_in_file_suggests_the_close_one(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker]\nconcurency = 8\n")
    assert config_error(path) == (
        f"config file {path}: unknown key worker.concurency; did you mean worker.concurrency?"
    )


def test_key_in_the_wrong_section_suggests_the_right_section(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nconcurrency = 8\n")
    assert "did you mean worker.concurrency?" in config_error(path)


def test_unknown_section_in_file_suggests_the_close_one(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[wroker]\nconcurrency = 8\n")
    assert "unknown section 'wroker'" in config_error(path)


def test_unknown_section_without_close_match_lists_the_sections(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[database]\nhost = 'x'\n")
    assert config_error(path) == (
        f"config file {path}: unknown section 'database'; "
        "expected one of server, redis, worker, task, retention, metrics, logging"
    )


def test_unknown_key_without_close_match_lists_the_keys(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[logging]\nzzz = 1\n")
    assert config_error(path).endswith("unknown key logging.zzz; expected one of level, format")


def test_unknown_environment_variable_suggests_the_variable() -> None:
    message = config_error(env={"TASKQUEUE_WORKER__CONCURENCY": "8"})
    assert message == (
        "environment TASKQUEUE_WORKER__CONCURENCY: unknown key worker.concurency; "
        "did you mean TASKQUEUE_WORKER__CONCURRENCY?"
    )


def test_unknown_override_suggests_the_key() -> None:
    message = config_error(overrides={"worker.concurency": 8})
    assert message == "override: unknown key worker.concurency; did you mean worker.concurrency?"


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "worker = 8\n")
    assert config_error(path) == f"config file {path}: worker = 8: expected a table [worker]"


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    assert config_error(path) == f"config file {path}: cannot read it: No such file or directory"


def test_missing_file_named_by_taskqueue_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    message = config_error(env={"TASKQUEUE_CONFIG": str(path)})
    assert message.startswith(f"config file {path}: cannot read it")


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[worker\n")
    assert config_error(path).startswith(f"config file {path}: not valid TOML: ")


# -- the example file -----------------------------------------------------------------------------


def test_example_file_loads_and_equals_the_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config()


def test_example_file_documents_every_key() -> None:
    """Each key appears in its section, set or commented out, after a comment explaining it."""
    documented: dict[str, set[str]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section = header[1]
        elif key := re.match(r"#? ?(\w+) = ", line):
            documented.setdefault(section, set()).add(key[1])
    assert documented == {
        name: set(section_config)
        for name, section_config in Config().to_dict().items()
        if name != "plugins"
    }


def test_example_file_is_valid_toml_with_only_known_keys() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    known = Config().to_dict()
    for name, table in data.items():
        assert set(table) <= set(known[name])


def test_plugin_tables_are_passed_through(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[plugins.shell]\nallowed_executables = ["/bin/echo"]\n')
    config = load_config(path, env={})
    assert config.plugins == {"shell": {"allowed_executables": ["/bin/echo"]}}


def test_plugins_section_must_hold_tables(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "plugins = 3\n")
    assert "expected tables like [plugins.shell]" in config_error(path)


# -- showing the configuration --------------------------------------------------------------------


def test_masked_hides_every_secret_and_keeps_the_rest_readable() -> None:
    config = load_config(
        env={
            "TASKQUEUE_REDIS__URL": "redis://app:hunter2@db.example:6379/0",
            "TASKQUEUE_REDIS__PASSWORD": "hunter3",
            "TASKQUEUE_SERVER__TOKENS": "token-a,token-b",
        }
    )
    masked = config.masked()
    assert masked["redis"]["url"] == "redis://app:***@db.example:6379/0"
    assert masked["redis"]["password"] == "***"
    assert masked["server"]["tokens"] == ["***", "***"]
    assert masked["worker"]["heartbeat_interval"] == "2s"
    assert masked["server"]["max_request_bytes"] == "2MiB"
    assert masked["worker"]["concurrency"] == 50
    for secret in ("hunter2", "hunter3", "token-a", "token-b"):
        assert secret not in repr(masked)


def test_masked_shows_unset_secrets_as_unset() -> None:
    masked = Config().masked()
    assert masked["redis"]["password"] is None
    assert masked["server"]["tokens"] == []


def test_masked_output_loads_back_as_overrides() -> None:
    config = Config(
        task=TaskConfig(max_payload_bytes=65536),
        retention=RetentionConfig(succeeded=9000.0),
        server=ServerConfig(port=8080),
    )
    overrides = {
        f"{name}.{key}": value
        for name, section in config.masked().items()
        for key, value in section.items()
    }
    assert load_config(env={}, overrides=overrides) == config


def test_to_dict_holds_the_raw_values() -> None:
    config = load_config(env={"TASKQUEUE_REDIS__PASSWORD": "hunter3"})
    assert config.to_dict()["redis"]["password"] == "hunter3"
    assert config.to_dict()["worker"]["heartbeat_interval"] == 2.0


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://db:6379/0", "redis://db:6379/0"),
        ("redis://:pw@db:6379/0", "redis://:***@db:6379/0"),
        ("rediss://user:pw@db:6380", "rediss://user:***@db:6380"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_schedules_tables_are_read_and_checked(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[schedules]]\nname = "nightly"\ntype = "report.build"\ncron = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\nmissed = "once"\n\n'
        '[[schedules]]\nname = "poll"\ntype = "feed.poll"\nevery = "30s"\n',
    )
    config = load_config(path, env={})
    assert [(s.name, s.timing) for s in config.schedules] == [
        ("nightly", "cron 0 3 * * * Europe/Berlin"),
        ("poll", "every 30s"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[schedules]]\nname = "a"\ntype = "x"\n', r"schedules\[0\]: cron: give exactly one"),
        (
            '[[schedules]]\nname = "a"\ntype = "x"\nevery = 5\n\n'
            '[[schedules]]\nname = "a"\ntype = "y"\nevery = 5\n',
            r"schedules\[1\]: name 'a' is taken",
        ),
        ('schedules = "often"\n', r"schedules: expected tables like \[\[schedules\]\]"),
    ],
)
def test_a_bad_schedule_in_the_file_says_which_and_why(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_toml(tmp_path, text), env={})


def test_a_limits_table_takes_group_limits_and_refuses_a_bad_rate(tmp_path: Path) -> None:
    table = '[limits."tenant.job"]\ngroup_concurrency = 2\ngroup_rate_limit = "10/min"\n'
    config = load_config(write_toml(tmp_path, table))
    limits = config.limits["tenant.job"]
    assert (limits.group_concurrency, limits.group_rate_limit) == (2, "10/min")
    bad = write_toml(tmp_path, '[limits."tenant.job"]\ngroup_rate_limit = "1/0s"\n')
    with pytest.raises(ConfigError, match=r"limits\.tenant\.job: group_rate_limit: '1/0s'"):
        load_config(bad)


@pytest.mark.parametrize("value", ["0", "257", "three"])
def test_partitions_out_of_range_are_refused_naming_the_setting(value: str) -> None:
    message = config_error(env={"TASKQUEUE_REDIS__PARTITIONS": value})
    assert message == (
        f"environment TASKQUEUE_REDIS__PARTITIONS = {value!r}: expected a whole number"
        " from 1 to 256"
    )


def test_partitions_reach_the_broker_settings() -> None:
    config = load_config(None, env={"TASKQUEUE_REDIS__PARTITIONS": "4"})
    assert BrokerSettings.from_config(config).partitions == 4
