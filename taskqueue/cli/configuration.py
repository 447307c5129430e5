"""``taskqueue config check``: validate the configuration the daemon would start with (plugin
settings included) and print it, secrets masked, as a TOML file that reads back."""

from __future__ import annotations

from typing import Any

import click

from taskqueue.cli.common import client_options, load
from taskqueue.cli.daemon import plugins_for
from taskqueue.cli.output import Output
from taskqueue.cli.views import config_toml
from taskqueue.config import config_path as find_config_file


@click.group("config")
def config_group() -> None:
    """Check and show the configuration."""


@config_group.command("check")
@client_options
def config_check(config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Validate the configuration (file, TASKQUEUE_* variables, flags) and print the effective
    result with secrets masked. Exit 2 with the reason if it is wrong.

    The plugins are loaded too, so that each reads its ``[plugins.<name>]`` table through its
    declared settings: a misspelled key there fails here as it would at daemon start."""
    config = load(config_path, flags)
    out = Output(json_mode=json_mode)
    masked = config.masked(plugins_for(config).registry.plugin_settings)
    if json_mode:
        out.json(masked)
        return
    source = find_config_file(config_path) or "no file: defaults and environment"
    out.note(f"configuration is valid ({source})")
    out.toml(config_toml(masked))
