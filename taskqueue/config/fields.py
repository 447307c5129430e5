"""Declaring a setting: one attrs field whose metadata says what its type hint cannot (a
duration, a size, a secret, limits), and the generic reading and checking of one value.

The core's sections and plugins' settings classes are declared with :func:`setting`, so both
get units, limits, masking and errors that name the key, the value and what was expected.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final, Literal

import attrs
from attrs import AttrsInstance

from taskqueue.config.units import (
    DURATION_HINT,
    SIZE_HINT,
    format_duration,
    format_size,
    hide,
    parse_duration,
    parse_size,
)
from taskqueue.errors import ConfigError

#: Environment variables ``TASKQUEUE_<SECTION>__<KEY>`` set one key each.
ENV_PREFIX: Final = "TASKQUEUE_"
DURATION: Final = "duration"
SIZE: Final = "size"
Kind = Literal["duration", "size"]

# --------------------------------------------------------------------------------------------
# Describing fields: the metadata the generic loader reads


@attrs.frozen
class Rule:
    """What a field's type hint cannot say: its unit, its limits, how to show it safely.

    ``kind`` is ``"duration"`` (float seconds, text like ``5s``), ``"size"`` (int bytes, text
    like ``1MiB``) or None (the type hint says it all). ``mask`` replaces the value wherever
    it is shown (``masked()``, error messages). ``expected`` overrides the generated wording.
    """

    kind: str | None = None
    mask: Callable[[object], object] | None = None
    positive: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str], bool] | None = None
    expected: str | None = None

    @property
    def secret(self) -> bool:
        return self.mask is not None


META: Final = "taskqueue"


def setting(
    default: Any,
    *,
    kind: Kind | None = None,
    secret: bool = False,
    mask: Callable[[object], object] | None = None,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[str], bool] | None = None,
    expected: str | None = None,
) -> Any:
    """Declare one setting of a section (or a plugin's settings class) as an attrs field.

    The field's type hint says what a value is (``int``, ``bool``, ``str | None``,
    ``tuple[str, ...]``, ``Mapping[str, str]``); the arguments add what a hint cannot:
    ``kind="duration"`` (float seconds, written ``250ms``, ``5s``, ``1m``) or ``kind="size"``
    (int bytes, written ``64KiB``, ``1MiB``; a default may be written that way too),
    ``secret`` (shown as ``***`` wherever the value is printed), ``positive``, ``minimum``,
    ``maximum``, ``choices``, ``check`` (a predicate on a string, or on each item of a list of
    strings, or on each name of a table) and ``expected`` (the words "expected ..." of the
    error when a value is refused).
    """
    if kind == DURATION and isinstance(default, str):
        default = parse_duration(default)
    elif kind == SIZE and isinstance(default, str):
        default = parse_size(default)
    rule = Rule(
        kind=kind,
        mask=mask or (hide if secret else None),
        positive=positive,
        minimum=minimum,
        maximum=maximum,
        choices=choices,
        check=check,
        expected=expected,
    )
    return attrs.field(default=default, validator=validate_field, metadata={META: rule})


@attrs.frozen
class FieldSpec:
    """One key as the loader sees it: the field's hint and rule, resolved once per class."""

    section: str
    name: str
    base: type  # str, int, float, bool, tuple (of str) or dict (of str to str)
    optional: bool
    rule: Rule

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}__{self.name.upper()}"

    @property
    def expected(self) -> str:
        rule = self.rule
        if rule.expected is not None:
            return rule.expected
        if rule.kind == DURATION:
            return DURATION_HINT + (" (more than 0)" if rule.positive else "")
        if rule.kind == SIZE:
            return SIZE_HINT + (" (more than 0)" if rule.positive else "")
        if rule.choices:
            return "one of " + ", ".join(rule.choices)
        if self.base is bool:
            return "true or false"
        if self.base in (int, float):
            noun = "a whole number" if self.base is int else "a number"
            if rule.minimum is not None and rule.maximum is not None:
                return f"{noun} from {rule.minimum:g} to {rule.maximum:g}"
            if rule.minimum is not None:
                return f"{noun} >= {rule.minimum:g}"
            return noun + (" > 0" if rule.positive else "")
        if self.base is tuple:
            return "a list of non-empty strings"
        if self.base is dict:
            return "a table of names to strings"
        return "a non-empty string"

    def show(self, value: object) -> object:
        """``value`` as people read it: durations and sizes in units, secrets masked."""
        if self.rule.mask is not None:
            return self.rule.mask(value)
        if self.rule.kind == DURATION and isinstance(value, int | float):
            return format_duration(value)
        if self.rule.kind == SIZE and isinstance(value, int):
            return format_size(value)
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, Mapping):
            return dict(value)
        return value


def section_of(cls: type) -> str:
    """The section name a settings class declares (``_section``), for messages about it."""
    name = getattr(cls, "_section", None)
    return name if isinstance(name, str) else cls.__name__


@cache
def specs_of(cls: type[AttrsInstance], section: str | None = None) -> dict[str, FieldSpec]:
    """The keys of one section, read from its attrs fields and their type hints.

    ``section`` names it in keys and messages (``plugins.http``); by default the class's own.
    """
    section = section or section_of(cls)
    hints = typing.get_type_hints(cls)
    specs: dict[str, FieldSpec] = {}
    for field in attrs.fields(cls):
        hint = hints[field.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        optional = type(None) in members
        if optional:
            (hint,) = (member for member in members if member is not type(None))
        base = typing.get_origin(hint) or hint
        if base is Mapping:
            base = dict
        rule = field.metadata.get(META, Rule())
        specs[field.name] = FieldSpec(
            section=section, name=field.name, base=base, optional=optional, rule=rule
        )
    return specs


# --------------------------------------------------------------------------------------------
# Reading and checking one value


class Invalid(ValueError):
    """A value that cannot become its setting; the caller adds where it came from."""


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def is_valid(spec: FieldSpec, value: object) -> bool:
    """Whether ``value`` already has the field's type and lies within its limits."""
    rule = spec.rule
    if value is None:
        return spec.optional
    if spec.base is bool:
        return isinstance(value, bool)
    if spec.base in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if spec.base is int and not isinstance(value, int):
            return False
        if not math.isfinite(value) or (rule.kind is not None and value < 0):
            return False
        if rule.positive and value <= 0:
            return False
        if rule.minimum is not None and value < rule.minimum:
            return False
        return rule.maximum is None or value <= rule.maximum
    if spec.base is str:
        if not isinstance(value, str) or not value.strip():
            return False
        if rule.choices and value not in rule.choices:
            return False
        return rule.check is None or rule.check(value)
    if spec.base is tuple:
        return isinstance(value, tuple) and all(
            isinstance(item, str) and item.strip() and (rule.check is None or rule.check(item))
            for item in value
        )
    if spec.base is dict:
        return isinstance(value, Mapping) and all(
            isinstance(name, str)
            and name
            and isinstance(item, str)
            and (rule.check is None or rule.check(name))
            for name, item in value.items()
        )
    return isinstance(value, spec.base)  # pragma: no cover - every field has one of the above


def _from_text(base: type, text: str) -> object:
    """A string from the environment or a CLI flag read as ``base``."""
    if base is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise Invalid(text)
    if base is int:
        return int(text.strip())
    if base is float:
        return float(text.strip())
    if base is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def coerce(spec: FieldSpec, raw: object, *, text: bool) -> object:
    """``raw`` as a valid value of ``spec``, or :class:`Invalid`.

    ``text`` is for environment variables and string CLI flags, where everything arrives as a
    string: numbers, booleans and comma-separated lists are parsed from it. A TOML file has real
    types, so there ``concurrency = "8"`` is refused rather than guessed at. Durations and sizes
    take text everywhere, that is their point. An empty string unsets an optional key.
    """
    if raw is None or (spec.optional and isinstance(raw, str) and not raw.strip()):
        if spec.optional:
            return None
        raise Invalid(raw)
    value: object = raw
    try:
        if spec.rule.kind == DURATION:
            if not isinstance(raw, str | int | float):
                raise Invalid(raw)
            value = parse_duration(raw)
        elif spec.rule.kind == SIZE:
            if not isinstance(raw, str | int):
                raise Invalid(raw)
            value = parse_size(raw)
        elif text and isinstance(raw, str):
            value = _from_text(spec.base, raw)
        elif spec.base is tuple and isinstance(raw, list | tuple):
            value = tuple(raw)
        elif spec.base is dict and isinstance(raw, Mapping):
            value = dict(raw)
    except ValueError:
        raise Invalid(raw) from None
    if spec.rule.choices and isinstance(value, str):
        value = value.strip().lower()
    if not is_valid(spec, value):
        raise Invalid(raw)
    return value


def validate_field(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a section built by hand is held to the same rules as a loaded one."""
    spec = specs_of(type(instance))[attribute.name]  # type: ignore[arg-type]
    if not is_valid(spec, value):
        shown = spec.show(value) if spec.rule.secret else value
        raise ConfigError(f"{spec.key} = {shown!r}: expected {spec.expected}")


class Conflict(ConfigError):
    """Two keys each fine alone but wrong together; the loader adds where each came from."""

    def __init__(self, values: Mapping[str, object], requirement: str) -> None:
        self.values = dict(values)
        self.requirement = requirement
        super().__init__(self.render({}))

    def render(self, origins: Mapping[str, str]) -> str:
        parts = []
        for key, value in self.values.items():
            origin = f" ({origins[key]})" if key in origins else ""
            parts.append(f"{key} = {value}{origin}")
        return f"{' and '.join(parts)}: expected {self.requirement}"


def show_settings(instance: AttrsInstance, section: str | None = None) -> dict[str, object]:
    """Every value of a section or settings class as people read it (units, secrets masked)."""
    return {
        key: spec.show(getattr(instance, key))
        for key, spec in specs_of(type(instance), section).items()
    }


def toml_repr(value: object) -> str:
    """``value`` as TOML (and JSON) spell it in an error message: ``"5s"``, not ``'5s'``."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # pragma: no cover - TOML values are JSON-able
        return repr(value)
