"""Loading the configuration: defaults, then a TOML file, then environment variables
``TASKQUEUE_<SECTION>__<KEY>``, then overrides from command-line flags.

A wrong value is reported with the layer it came from, the key, the value and what was
expected, because "the daemon will not start" is only useful with "and here is the line to fix".
The loader knows nothing about individual keys: it reads the sections' field declarations.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from typing import Final, Literal

import attrs
from attrs import AttrsInstance

from taskqueue.broker.policy import LIMIT_NAMES
from taskqueue.broker.validation import task_type_problem
from taskqueue.config.fields import (
    ENV_PREFIX,
    Conflict,
    FieldSpec,
    Invalid,
    coerce,
    specs_of,
    toml_repr,
)
from taskqueue.config.sections import Config, all_specs, section_classes
from taskqueue.errors import ConfigError, InvalidTaskError
from taskqueue.locations import config_file
from taskqueue.models import Policy, validated
from taskqueue.rates import parse_rate
from taskqueue.schedules import ScheduleSpec, schedule_spec

#: Names the config file when ``load_config`` is given no path.
CONFIG_ENV_VAR: Final = "TASKQUEUE_CONFIG"


@attrs.frozen
class _Origin:
    """Where one value came from, worded for an error message."""

    where: str  # "config file x.toml", "environment", "override"
    label: str  # how that source names the key: "worker.concurrency" or "TASKQUEUE_..."
    style: Literal["toml", "python"]

    def describe(self) -> str:
        if self.where == "environment":
            return f"environment {self.label}"
        return self.where

    def invalid(self, spec: FieldSpec, raw: object) -> ConfigError:
        shown = spec.show(raw) if spec.rule.secret else raw
        value = toml_repr(shown) if self.style == "toml" else repr(shown)
        if self.where == "environment":
            prefix = f"environment {self.label}"
        else:
            prefix = f"{self.where}: {self.label}"
        return ConfigError(f"{prefix} = {value}: expected {spec.expected}")


def _unknown_key(where: str, key: str, *, env: bool = False) -> ConfigError:
    """An unknown ``section.key`` (or ``section.`` for a whole table), with a likely fix.

    The best guess is the same key in another section (``[server] concurrency``), then, in a
    known section, a close spelling of the key, and in an unknown one, of the section.
    """
    section, _, name = key.partition(".")
    sections = list(section_classes())
    specs = all_specs()
    known = section in sections
    elsewhere = [spec.key for spec in specs.values() if name and spec.name == name]
    names = list(specs_of(section_classes()[section])) if known else []
    close_keys = [f"{section}.{close}" for close in difflib.get_close_matches(name, names, n=1)]
    close_sections = difflib.get_close_matches(section, sections, n=1, cutoff=0.6)
    problem = f"unknown key {key}" if known else f"unknown section {section!r}"
    guesses = elsewhere or close_keys
    if guesses:
        guess = guesses[0]
        hint = f"did you mean {specs[guess].env_var if env else guess}?"
    elif not known and close_sections:
        hint = f"did you mean {close_sections[0]!r}?"
    elif not known:
        hint = f"expected one of {', '.join(sections)}"
    else:
        hint = f"expected one of {', '.join(names)}"
    return ConfigError(f"{where}: {problem}; {hint}")


_Values = dict[str, tuple[object, _Origin]]


def _read_plugin_tables(where: str, table: object, plugins: dict[str, dict[str, object]]) -> None:
    """``[plugins.<name>]`` tables: each plugin validates its own keys when it registers."""
    if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
        raise ConfigError(f"{where}: plugins: expected tables like [plugins.shell]")
    for name, settings in table.items():
        plugins[name] = dict(settings)


def _read_schedules(where: str, tables: object) -> list[ScheduleSpec]:
    """``[[schedules]]`` tables, each checked as the API checks a definition."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: schedules: expected tables like [[schedules]]")
    specs: list[ScheduleSpec] = []
    for index, table in enumerate(tables):
        try:
            spec = schedule_spec(table)
        except InvalidTaskError as error:
            raise ConfigError(f"{where}: schedules[{index}]: {error}") from None
        if any(other.name == spec.name for other in specs):
            raise ConfigError(f"{where}: schedules[{index}]: name {spec.name!r} is taken")
        specs.append(spec)
    return specs


def _read_limits(where: str, table: object, limits: dict[str, Policy]) -> None:
    """``[limits.<type>]`` tables: a task type's rate and concurrency limits, checked as the
    API checks a policy."""
    if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
        raise ConfigError(f'{where}: limits: expected tables like [limits."shell.run"]')
    for task_type, settings in table.items():
        at = f"{where}: limits.{task_type}"
        if (problem := task_type_problem(task_type)) is not None:
            raise ConfigError(f"{at}: {problem}")
        unknown = sorted(set(settings) - set(LIMIT_NAMES))
        if unknown:
            raise ConfigError(
                f"{at}: unknown key {unknown[0]!r}; expected {', '.join(LIMIT_NAMES)}"
            )
        try:
            limits[task_type] = validated(settings, Policy)
        except InvalidTaskError as error:
            raise ConfigError(f"{at}: {error}") from None
        for field in ("rate_limit", "group_rate_limit"):
            if (rate := getattr(limits[task_type], field)) is not None:
                try:
                    parse_rate(rate)
                except ValueError as error:
                    raise ConfigError(f"{at}: {field}: {error}") from None


def _read_file(
    path: str,
    values: _Values,
    plugins: dict[str, dict[str, object]],
    schedules: list[ScheduleSpec],
    limits: dict[str, Policy],
) -> None:
    where = f"config file {path}"
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    specs = all_specs()
    for section, table in data.items():
        if section == "plugins":
            _read_plugin_tables(where, table, plugins)
            continue
        if section == "schedules":
            schedules += _read_schedules(where, table)
            continue
        if section == "limits":
            _read_limits(where, table, limits)
            continue
        if section not in section_classes():
            raise _unknown_key(where, f"{section}.")
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where}: {section} = {toml_repr(table)}: expected a table [{section}]"
            )
        for name, raw in table.items():
            key = f"{section}.{name}"
            if key not in specs:
                raise _unknown_key(where, key)
            origin = _Origin(where, key, "toml")
            values[key] = (_checked(specs[key], raw, origin, text=False), origin)


def _read_env(env: Mapping[str, str], values: _Values) -> None:
    """Read ``TASKQUEUE_<SECTION>__<KEY>`` variables; others (no ``__``) are not ours."""
    specs = all_specs()
    by_var = {spec.env_var: spec for spec in specs.values()}
    for var in sorted(env):
        rest = var.removeprefix(ENV_PREFIX)
        if rest == var or "__" not in rest:
            continue
        spec = by_var.get(var)
        if spec is None:
            section, _, name = rest.partition("__")
            key = f"{section.lower()}.{name.lower()}"
            raise _unknown_key(f"environment {var}", key, env=True)
        origin = _Origin("environment", var, "python")
        values[spec.key] = (_checked(spec, env[var], origin, text=True), origin)


def _read_overrides(overrides: Mapping[str, object], values: _Values) -> None:
    specs = all_specs()
    for key, raw in overrides.items():
        if raw is None:  # a CLI flag that was not given
            continue
        if key not in specs:
            raise _unknown_key("override", key)
        origin = _Origin("override", key, "python")
        values[key] = (_checked(specs[key], raw, origin, text=isinstance(raw, str)), origin)


def _checked(spec: FieldSpec, raw: object, origin: _Origin, *, text: bool) -> object:
    try:
        return coerce(spec, raw, text=text)
    except Invalid:
        raise origin.invalid(spec, raw) from None


def config_path(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The config file to read: ``path``, else ``$TASKQUEUE_CONFIG``, else
    ``$CONFIGURATION_DIRECTORY/taskqueue.toml`` if systemd names that directory and it holds
    one; None (defaults and environment only) when none applies."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is not None:
        return os.fspath(path)
    found = environ.get(CONFIG_ENV_VAR) or config_file(environ)
    return os.fspath(found) if found else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """The effective configuration: defaults < TOML file < environment < ``overrides``.

    ``path`` falls back to ``$TASKQUEUE_CONFIG``, then to ``taskqueue.toml`` in systemd's
    ``$CONFIGURATION_DIRECTORY`` (:func:`config_path`); with none, no file is read. ``env`` is
    ``os.environ`` when None (pass ``{}`` to ignore the environment, as tests do). Variables
    are ``TASKQUEUE_<SECTION>__<KEY>``; lists in them are comma-separated, and an empty value
    unsets an optional key. ``overrides`` maps ``"section.key"`` to a value or its text, as
    CLI flags give them; a None value is a flag that was not given and is skipped.

    Raises ConfigError on the first unknown key or wrong value, naming its source, the key,
    the value and what was expected.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    values: _Values = {}
    plugins: dict[str, dict[str, object]] = {}
    schedules: list[ScheduleSpec] = []
    limits: dict[str, Policy] = {}
    path = config_path(path, environ)
    if path is not None:
        _read_file(path, values, plugins, schedules, limits)
    _read_env(environ, values)
    if overrides:
        _read_overrides(overrides, values)

    sections: dict[str, AttrsInstance] = {}
    for name, cls in section_classes().items():
        given = {
            spec.name: values[spec.key][0] for spec in specs_of(cls).values() if spec.key in values
        }
        try:
            sections[name] = cls(**given)
        except Conflict as conflict:
            origins = {key: origin.describe() for key, (_, origin) in values.items()}
            defaults = {key: "default" for key in conflict.values if key not in origins}
            raise ConfigError(conflict.render(origins | defaults)) from None
    tables = {"plugins": plugins, "schedules": tuple(schedules), "limits": limits}
    return Config(**sections, **tables)  # type: ignore[arg-type]
