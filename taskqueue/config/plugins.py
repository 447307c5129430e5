"""``[plugins.<name>]`` tables read through the settings class a plugin declares.

A plugin declares its settings the way the core declares a section (attrs fields made with
:func:`~taskqueue.config.fields.setting`), so its operators get the same units (``5s``,
``1MiB``), limits, masking of secrets and errors that name ``plugins.<name>.<key>``, the value
and what was expected. A key the class does not declare is an error: a typo must not pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar, cast, dataclass_transform

import attrs

from taskqueue.config.fields import Conflict, Invalid, coerce, setting, specs_of, toml_repr
from taskqueue.errors import ConfigError

__all__ = ["check_plugin_tables", "parse_plugin_settings", "settings_class"]

S = TypeVar("S")
T = TypeVar("T", bound=type)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(setting,))
def settings_class(cls: T) -> T:
    """Make ``cls`` a plugin's settings class: a frozen, keyword-only attrs class whose fields
    are declared with :func:`~taskqueue.config.fields.setting`."""
    return attrs.define(frozen=True, kw_only=True)(cls)


def parse_plugin_settings(cls: type[S], plugin: str, table: Mapping[str, object]) -> S:
    """``table`` (the ``[plugins.<plugin>]`` table) as an instance of ``cls``, or ConfigError.

    Values are read as a TOML file's are: real types, with durations and sizes also as text.
    """
    if not attrs.has(cls):
        raise TypeError(f"{cls.__name__} is not a settings class: decorate it with settings_class")
    section = f"plugins.{plugin}"
    specs = specs_of(cls, section)
    values: dict[str, object] = {}
    for key, raw in table.items():
        spec = specs.get(key)
        if spec is None:
            raise _unknown(section, key, list(specs))
        try:
            values[key] = coerce(spec, raw, text=False)
        except Invalid:
            shown = spec.show(raw) if spec.rule.secret else raw
            raise ConfigError(
                f"{spec.key} = {toml_repr(shown)}: expected {spec.expected}"
            ) from None
    try:
        instance = cls(**values)
    except Conflict as conflict:
        raise ConfigError(conflict.render({})) from None
    return cast(S, instance)  # attrs.has() narrowed cls to any attrs class


def check_plugin_tables(tables: Iterable[str], plugins: Iterable[str]) -> None:
    """ConfigError for a ``[plugins.<name>]`` table that no loaded plugin answers to."""
    known = sorted(plugins)
    for name in tables:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean plugins.{close[0]}?" if close else f"loaded: {', '.join(known)}"
        raise ConfigError(f"plugins.{name}: no plugin named {name!r} is loaded; {hint}")


def _unknown(section: str, key: str, names: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        hint = f"did you mean {section}.{close[0]}?"
    else:
        hint = f"expected one of {', '.join(names)}" if names else "this plugin has no settings"
    return ConfigError(f"{section}.{key}: unknown setting; {hint}")
