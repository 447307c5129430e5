"""``taskqueue plugins``: the task types this machine can run, who provides each, and their
defaults — what a worker started here would register."""

from __future__ import annotations

from typing import Any

import click

from taskqueue.cli.common import client_options, load
from taskqueue.cli.daemon import plugins_for, processors_option
from taskqueue.cli.output import Output
from taskqueue.cli.views import plugin_json, plugin_listing


@click.command()
@client_options
@processors_option
def plugins(config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """List installed plugins: their task types, versions and per-type defaults.

    A plugin that fails to load is named on stderr (exit 1 unless
    worker.skip_broken_plugins is set, as the daemon would refuse to start). ``--processors``
    lists a development module's types too, as ``taskqueue worker --processors`` runs them.
    """
    config = load(config_path, flags)
    loaded = plugins_for(config)
    out = Output(json_mode=json_mode)
    specs = loaded.registry.specs()
    if json_mode:
        out.json([plugin_json(spec) for spec in specs])
    else:
        out.show(plugin_listing(specs))
    for name, error in loaded.broken.items():
        out.note(f"{name}: BROKEN: {error}")
