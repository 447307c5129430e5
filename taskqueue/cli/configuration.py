"""``taskqueue config check``: validate the configuration the daemon would start with (plugin
settings included) and print it, secrets masked, as a TOML file that reads back."""

from __future__ import annotations

from typing import Any

import click

from taskqueue.cli.common import client_options, fail, load
from taskqueue.cli.daemon import plugins_for
from taskqueue.cli.output import Output
from taskqueue.cli.views import config_toml
from taskqueue.config import Config
from taskqueue.config import config_path as find_config_file
from taskqueue.errors import ConfigError


@click.group("config")
def config_group() -> None:
    """Check and show the configuration."""


@config_group.command("check")
@client_options
def config_check(config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Validate the configuration (file, TASKQUEUE_* variables, flags) and print the effective
    result with secrets masked. Exit 2 with the reason if it is wrong.

    The plugins are loaded too, so that each reads its ``[plugins.<name>]`` table through its
    declared settings: a misspelled key there fails here as it would at daemon start; and the
    API's own start-up checks run (tokens, exposure beyond loopback, TLS files)."""
    config = load(config_path, flags)
    out = Output(json_mode=json_mode)
    masked = config.masked(plugins_for(config).registry.plugin_settings)
    _check_server(config)
    if json_mode:
        out.json(masked)
        return
    source = find_config_file(config_path) or "no file: defaults and environment"
    out.note(f"configuration is valid ({source})")
    out.toml(config_toml(masked))


def _check_server(config: Config) -> None:
    """The checks the API service makes before it binds, where the API package is installed."""
    try:
        from taskqueue.api.service import check_server
    except ImportError:  # pragma: no cover - a build without the API
        return
    try:
        check_server(config.server)
    except ConfigError as exc:
        fail(str(exc))
