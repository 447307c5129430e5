"""A plugin declares its ``[plugins.<name>]`` settings with the core's field declarations: units,
limits, errors naming ``plugins.<name>.<key>``, secrets masked because they are declared so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from taskqueue.config import load_config
from taskqueue.errors import ConfigError
from taskqueue.plugin import ProcessorRegistry, hookimpl, setting, settings_class
from taskqueue.processors import load_plugins


@settings_class
class ReportSettings:
    _section: ClassVar[str] = "plugins.report"

    endpoint: str = setting("https://reports.example")
    api_token: str | None = setting(None, secret=True)
    max_upload_bytes: int = setting("1MiB", kind="size", positive=True)
    poll_interval: float = setting("5s", kind="duration", positive=True)
    formats: tuple[str, ...] = setting(("pdf",), choices=("pdf", "csv"))


seen: list[ReportSettings] = []


def _register(registry: ProcessorRegistry) -> None:
    seen.append(registry.settings_as(ReportSettings))


REPORT = SimpleNamespace(__name__="report", taskqueue_register_processors=hookimpl(_register))


def load(table: dict[str, Any], **others: dict[str, Any]) -> Any:
    seen.clear()
    return load_plugins(settings={"report": table, **others}, extra=(REPORT,), entry_points=False)


def test_declared_settings_read_units_and_keep_defaults() -> None:
    load({"max_upload_bytes": "64KiB", "poll_interval": "250ms"})

    (settings,) = seen
    assert settings.max_upload_bytes == 64 * 1024
    assert settings.poll_interval == 0.25
    assert settings.endpoint == "https://reports.example"
    assert settings.api_token is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"poll_intervall": "5s"},
            "plugins.report.poll_intervall: unknown setting; "
            "did you mean plugins.report.poll_interval?",
        ),
        (
            {"max_upload_bytes": "lots"},
            'plugins.report.max_upload_bytes = "lots": expected a size like 512, 64KiB, 1MiB'
            " (more than 0)",
        ),
        ({"poll_interval": 0}, "plugins.report.poll_interval = 0: expected a duration"),
        ({"api_token": 42}, 'plugins.report.api_token = "***": expected a non-empty string'),
    ],
)
def test_a_wrong_setting_stops_start_up_naming_key_and_value(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(table)
    assert str(caught.value).startswith(message)


def test_a_table_no_plugin_answers_to_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.reprot: .*did you mean plugins\.report\?"):
        load({}, reprot={"endpoint": "x"})


def test_declared_secrets_are_masked_and_the_rest_shown_in_units(tmp_path: Path) -> None:
    path = tmp_path / "taskqueue.toml"
    path.write_text('[plugins.report]\napi_token = "hunter2"\nmax_upload_bytes = 2097152\n')
    config = load_config(path, env={})
    loaded = load_plugins(settings=config.plugins, extra=(REPORT,), entry_points=False)

    masked = config.masked(loaded.registry.plugin_settings)["plugins"]["report"]
    assert isinstance(masked, dict)
    assert masked["api_token"] == "***"
    assert masked["max_upload_bytes"] == "2MiB"
    assert masked["poll_interval"] == "5s"
    assert "hunter2" not in repr(config.masked())  # undeclared: masked whole


@pytest.mark.parametrize("command", [("config", "check"), ("worker",)])
def test_config_check_and_the_daemon_refuse_a_misspelled_plugin_key(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "taskqueue.toml"
    path.write_text("[plugins.http]\nallow_private_network = true\n")

    done = subprocess.run(
        [sys.executable, "-m", "taskqueue", *command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )

    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "taskqueue: plugins.http.allow_private_network: unknown setting; "
        "did you mean plugins.http.allow_private_networks?"
    )
