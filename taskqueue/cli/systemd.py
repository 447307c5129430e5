"""``taskqueue systemd install``: the shipped units, written for this host.

Run from the virtual environment taskqueue is installed in: the units then start that
environment's ``taskqueue`` (``--prefix`` names another), which is what makes them pass
``systemd-analyze verify`` and start at all. It also writes the annotated example
configuration where the unit reads it, unless a configuration is there already; it never
overwrites one, and never runs ``systemctl`` itself: what to run next is printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from taskqueue.cli.common import EXIT_FAILED, fail
from taskqueue.deploy import EXAMPLE_CONFIG, UNIT_NAMES, example_config, unit_text
from taskqueue.deploy.units import render_unit

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG_DIR = Path("/etc/taskqueue")


def _xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _executable(prefix: str | None) -> Path:
    """``PREFIX/bin/taskqueue``, absolute; exit 2 if it is not an executable file."""
    venv = Path(prefix if prefix is not None else sys.prefix).expanduser().absolute()
    executable = venv / "bin" / "taskqueue"
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        fail(
            f"{executable} is not an executable file: --prefix must name the virtual "
            "environment taskqueue is installed in"
        )
    return executable


@click.group("systemd")
def systemd_group() -> None:
    """Install taskqueue as a systemd service."""


@systemd_group.command("install")
@click.option("--user", is_flag=True, help="Units for your user manager (systemctl --user).")
@click.option(
    "--prefix",
    metavar="VENV",
    help="Virtual environment whose taskqueue the units start (default: this one).",
)
@click.option("--print", "print_only", is_flag=True, help="Print the units; write nothing.")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the units (default: /etc/systemd/system, or "
    "$XDG_CONFIG_HOME/systemd/user with --user).",
)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the example taskqueue.toml goes if none is there (default: /etc/taskqueue, "
    "or $XDG_CONFIG_HOME/taskqueue with --user).",
)
def install(
    user: bool,
    prefix: str | None,
    print_only: bool,
    unit_dir: Path | None,
    config_dir: Path | None,
) -> None:
    """Write taskqueue.service and taskqueue-worker@.service, starting this environment's
    taskqueue, and the example configuration if there is none yet."""
    executable = _executable(prefix)
    if unit_dir is None:
        unit_dir = _xdg_config_home() / "systemd" / "user" if user else SYSTEM_UNIT_DIR
    if config_dir is None:
        config_dir = _xdg_config_home() / "taskqueue" if user else SYSTEM_CONFIG_DIR
    units = {name: render_unit(unit_text(name), executable, user=user) for name in UNIT_NAMES}
    if print_only:
        for name, text in units.items():
            click.echo(f"# {unit_dir / name}\n{text}")
        return
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (unit_dir / name).write_text(text, encoding="utf-8")
            click.echo(f"wrote {unit_dir / name}")
        config = config_dir / EXAMPLE_CONFIG
        if config.exists():
            click.echo(f"kept {config} (already there)")
        else:
            config_dir.mkdir(parents=True, exist_ok=True)
            config.write_text(example_config(), encoding="utf-8")
            config.chmod(0o644)  # DynamicUser= runs the daemon as a uid that owns nothing
            click.echo(f"wrote {config} (every key at its default: edit it)")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        hint = "" if user else " (system units need root; --user installs for your user)"
        fail(f"cannot write{where}: {exc.strerror or exc}{hint}", EXIT_FAILED)
    systemctl = "systemctl --user" if user else "systemctl"
    click.echo(f"next: {systemctl} daemon-reload && {systemctl} enable --now taskqueue")
