"""Every setting of taskqueue in one place: its default, its limits, and where a value came from.

An operator reads ``config/taskqueue.toml``; a developer reads this module; both see the same
keys. Values are layered: the defaults below, then a TOML file, then environment variables
``TASKQUEUE_<SECTION>__<KEY>``, then overrides from command-line flags. A wrong value is
reported with the layer it came from, the key, the value and what was expected, because "the
daemon will not start" is only useful with "and here is the line to fix".

The loader knows nothing about individual keys. It reads each section's attrs fields: the type
hint says what a value is (``int``, ``bool``, ``str | None``, ``tuple[str, ...]``), and the
field's metadata adds what the hint cannot say (a duration, a size, a secret, the limits).
Adding a setting is adding one field.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs
from attrs import AttrsInstance

from taskqueue.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Config",
    "LoggingConfig",
    "MetricsConfig",
    "RedisConfig",
    "ServerConfig",
    "TaskConfig",
    "WorkerConfig",
    "format_duration",
    "format_size",
    "load_config",
    "mask_url",
    "parse_duration",
    "parse_size",
]

#: Environment variables ``TASKQUEUE_<SECTION>__<KEY>`` set one key each.
ENV_PREFIX: Final = "TASKQUEUE_"
#: Names the config file when ``load_config`` is given no path.
CONFIG_ENV_VAR: Final = "TASKQUEUE_CONFIG"

MASK: Final = "***"
DURATION: Final = "duration"
SIZE: Final = "size"

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("auto", "json", "console", "journald")

# --------------------------------------------------------------------------------------------
# Durations and sizes


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)", re.ASCII)
_DURATION_TEXT = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+", re.ASCII)
_DURATION_HINT: Final = "a duration like 250ms, 5s, 1m"

_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_TEXT = re.compile(rf"({_NUMBER})\s*([a-z]*)", re.ASCII | re.IGNORECASE)
_SIZE_HINT: Final = "a size like 512, 64KiB, 1MiB"


def parse_duration(text: str | float) -> float:
    """Seconds from text like ``250ms``, ``5s``, ``1m``, ``1h``, ``1.5s``, ``2h30m``.

    Why units: ``result_ttl = "24h"`` is easier to get right than ``86400``. A bare number
    (``5``, ``"5"``, ``0.5``) is seconds. Parts combine (``1m30s``); ``d`` is days. Negative,
    infinite and NaN values are refused with a ValueError, so a typo never becomes "forever".
    """
    seconds: float
    if isinstance(text, bool):
        raise ValueError(f"expected {_DURATION_HINT}, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str):
        stripped = text.strip()
        if re.fullmatch(_NUMBER, stripped, re.ASCII):
            seconds = float(stripped)
        elif _DURATION_TEXT.fullmatch(stripped):
            parts = _DURATION_PART.findall(stripped)
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
        else:
            raise ValueError(f"expected {_DURATION_HINT}, got {text!r}")
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got {text!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {_DURATION_HINT}, got {text!r}")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes from text like ``512``, ``64KiB``, ``1MiB`` or ``1MB``.

    ``KB``/``MB``/``GB`` are powers of 1000 and ``KiB``/``MiB``/``GiB`` powers of 1024, as
    their standards say; units are case-insensitive. A fraction is fine when the result is a
    whole number of bytes (``1.5KiB`` is 1536). Raises ValueError otherwise.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected {_SIZE_HINT}, got {text!r}")
    if isinstance(text, int):
        size = text
    elif isinstance(text, str):
        match = _SIZE_TEXT.fullmatch(text.strip())
        unit = match[2].lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"expected {_SIZE_HINT}, got {text!r}")
        try:
            exact = Decimal(match[1]) * _SIZE_UNITS[unit]
        except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
            raise ValueError(f"expected {_SIZE_HINT}, got {text!r}") from None
        if exact != exact.to_integral_value():
            raise ValueError(f"expected a whole number of bytes, got {text!r}")
        size = int(exact)
    else:
        raise ValueError(f"expected {_SIZE_HINT}, got {text!r}")
    if size < 0:
        raise ValueError(f"expected {_SIZE_HINT}, got {text!r}")
    return size


def _decimal(number: float) -> str:
    """``number`` without float noise or a trailing ``.0``: 1.5 -> "1.5", 30.0 -> "30"."""
    return f"{number:.6f}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """Short text for ``seconds`` that :func:`parse_duration` reads back: 5s, 1m, 2h30m, 250ms.

    Hours are the largest unit, so a day shows as ``24h``, the way operators write TTLs.
    """
    if seconds <= 0:
        return f"{_decimal(seconds)}s"
    if seconds < 1:
        return f"{_decimal(seconds * 1000)}ms"
    parts: list[str] = []
    rest = seconds
    for unit, length in (("h", 3600), ("m", 60)):
        count = int(rest // length)
        if count:
            parts.append(f"{count}{unit}")
            rest -= count * length
    if round(rest, 6):
        parts.append(f"{_decimal(rest)}s")
    return "".join(parts)


def format_size(size: int) -> str:
    """Short text for ``size`` bytes that :func:`parse_size` reads back: 2MiB, 1MB, 512B."""
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        factor = _SIZE_UNITS[unit.lower()]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# --------------------------------------------------------------------------------------------
# Masking secrets


def mask_url(url: str) -> str:
    """``url`` with any password (``redis://user:pw@host`` or ``?password=pw``) shown as ``***``.

    For logs and ``taskqueue config``: the host and database stay visible, the secret does not.
    A URL too broken to parse is masked whole rather than risk printing its password.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        url = url.replace(f"//{parts.netloc}", f"//{user}:{MASK}@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", rf"\g<1>{MASK}", url)


def _hide(value: object) -> object:
    """A secret's stand-in that still tells whether it is set (and how many tokens there are)."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return [MASK] * len(value)
    return MASK


def _mask_url_value(value: object) -> object:
    return mask_url(value) if isinstance(value, str) else _hide(value)


# --------------------------------------------------------------------------------------------
# Describing fields: the metadata the generic loader reads


@attrs.frozen
class _Rule:
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


_META: Final = "taskqueue"


def _setting(
    default: Any,
    *,
    kind: str | None = None,
    secret: bool = False,
    mask: Callable[[object], object] | None = None,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[str], bool] | None = None,
    expected: str | None = None,
) -> Any:
    """An attrs field whose metadata tells the loader how to read, check and show it."""
    rule = _Rule(
        kind=kind,
        mask=mask or (_hide if secret else None),
        positive=positive,
        minimum=minimum,
        maximum=maximum,
        choices=choices,
        check=check,
        expected=expected,
    )
    return attrs.field(default=default, validator=_validate_field, metadata={_META: rule})


@attrs.frozen
class _FieldSpec:
    """One key as the loader sees it: the field's hint and rule, resolved once per class."""

    section: str
    name: str
    base: type  # str, int, float, bool or tuple (of str)
    optional: bool
    rule: _Rule

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
            return _DURATION_HINT + (" (more than 0)" if rule.positive else "")
        if rule.kind == SIZE:
            return _SIZE_HINT + (" (more than 0)" if rule.positive else "")
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
        return value


def _section_of(cls: type) -> str:
    for name, section_cls in _section_classes().items():
        if section_cls is cls:
            return name
    raise TypeError(f"{cls.__name__} is not a section of Config")  # pragma: no cover


@cache
def _section_classes() -> dict[str, type[AttrsInstance]]:
    """Config's sections by name, in the order they are documented."""
    hints = typing.get_type_hints(Config)
    return {
        field.name: hints[field.name] for field in attrs.fields(Config) if field.name != "plugins"
    }


@cache
def _specs(cls: type[AttrsInstance]) -> dict[str, _FieldSpec]:
    """The keys of one section, read from its attrs fields and their type hints."""
    section = _section_of(cls)
    hints = typing.get_type_hints(cls)
    specs: dict[str, _FieldSpec] = {}
    for field in attrs.fields(cls):
        hint = hints[field.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        optional = type(None) in members
        if optional:
            (hint,) = (member for member in members if member is not type(None))
        base = typing.get_origin(hint) or hint
        rule = field.metadata.get(_META, _Rule())
        specs[field.name] = _FieldSpec(
            section=section, name=field.name, base=base, optional=optional, rule=rule
        )
    return specs


def _all_specs() -> dict[str, _FieldSpec]:
    """Every key of every section, by ``section.key``."""
    return {spec.key: spec for cls in _section_classes().values() for spec in _specs(cls).values()}


# --------------------------------------------------------------------------------------------
# Reading and checking one value


class _Invalid(ValueError):
    """A value that cannot become its setting; the caller adds where it came from."""


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _is_valid(spec: _FieldSpec, value: object) -> bool:
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
            isinstance(item, str) and item.strip() for item in value
        )
    return isinstance(value, spec.base)  # pragma: no cover - every field has one of the above


def _from_text(base: type, text: str) -> object:
    """A string from the environment or a CLI flag read as ``base``."""
    if base is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _Invalid(text)
    if base is int:
        return int(text.strip())
    if base is float:
        return float(text.strip())
    if base is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _coerce(spec: _FieldSpec, raw: object, *, text: bool) -> object:
    """``raw`` as a valid value of ``spec``, or :class:`_Invalid`.

    ``text`` is for environment variables and string CLI flags, where everything arrives as a
    string: numbers, booleans and comma-separated lists are parsed from it. A TOML file has real
    types, so there ``concurrency = "8"`` is refused rather than guessed at. Durations and sizes
    take text everywhere, that is their point. An empty string unsets an optional key.
    """
    if raw is None or (spec.optional and isinstance(raw, str) and not raw.strip()):
        if spec.optional:
            return None
        raise _Invalid(raw)
    value: object = raw
    try:
        if spec.rule.kind == DURATION:
            if not isinstance(raw, str | int | float):
                raise _Invalid(raw)
            value = parse_duration(raw)
        elif spec.rule.kind == SIZE:
            if not isinstance(raw, str | int):
                raise _Invalid(raw)
            value = parse_size(raw)
        elif text and isinstance(raw, str):
            value = _from_text(spec.base, raw)
        elif spec.base is tuple and isinstance(raw, list | tuple):
            value = tuple(raw)
    except ValueError:
        raise _Invalid(raw) from None
    if spec.rule.choices and isinstance(value, str):
        value = value.strip().lower()
    if not _is_valid(spec, value):
        raise _Invalid(raw)
    return value


def _validate_field(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a section built by hand is held to the same rules as a loaded one."""
    spec = _specs(type(instance))[attribute.name]  # type: ignore[arg-type]
    if not _is_valid(spec, value):
        shown = spec.show(value) if spec.rule.secret else value
        raise ConfigError(f"{spec.key} = {shown!r}: expected {spec.expected}")


class _Conflict(ConfigError):
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


# --------------------------------------------------------------------------------------------
# The sections


def _namespace_ok(name: str) -> bool:
    return not any(char in name for char in "{}:") and name == name.strip()


def _worker_id_ok(name: str) -> bool:
    return not any(char in name for char in "{}") and not any(char.isspace() for char in name)


def _redis_url_ok(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    if parts.scheme == "unix":
        return bool(parts.path)
    return parts.scheme in ("redis", "rediss")


_PORT = "a port number from 0 to 65535"


@attrs.define(frozen=True, kw_only=True)
class ServerConfig:
    """The API server: where it listens, who may call it, how large a request may be.

    Bearer tokens come from ``tokens`` and/or ``token_file`` (one sha256 hex digest per line,
    so the file never holds a usable secret). ``allow_unauthenticated_public`` must be set on
    purpose to serve a non-loopback address without any token.
    """

    host: str = _setting("127.0.0.1")
    port: int = _setting(9090, minimum=0, maximum=65535, expected=_PORT)
    tokens: tuple[str, ...] = _setting((), secret=True)
    token_file: str | None = _setting(None)
    allow_unauthenticated_public: bool = _setting(False)
    certfile: str | None = _setting(None)
    keyfile: str | None = _setting(None)
    open_health_endpoints: bool = _setting(True)
    max_request_bytes: int = _setting(2 * 2**20, kind=SIZE, positive=True)

    def __attrs_post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise _Conflict(
                {"server.keyfile": repr(self.keyfile), "server.certfile": "None"},
                "server.certfile as well: a key alone does not make TLS",
            )


@attrs.define(frozen=True, kw_only=True)
class RedisConfig:
    """Where tasks live. ``url = None`` starts an embedded redis-server under ``data_dir``.

    ``namespace`` prefixes every key inside a ``{...}`` hash tag (one Redis Cluster slot per
    namespace), which is why it may not contain braces or the ``:`` separator.
    """

    url: str | None = _setting(
        None,
        mask=_mask_url_value,
        check=_redis_url_ok,
        expected="a URL like redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock",
    )
    db: int = _setting(0, minimum=0)
    username: str | None = _setting(None)
    password: str | None = _setting(None, secret=True)
    pool_size: int = _setting(16, minimum=1)
    namespace: str = _setting(
        "taskqueue",
        check=_namespace_ok,
        expected="a non-empty name without '{', '}' or ':'",
    )
    connect_timeout: float = _setting(5.0, kind=DURATION, positive=True)
    data_dir: str = _setting("./data")


@attrs.define(frozen=True, kw_only=True)
class WorkerConfig:
    """The consumer: how many tasks at once, how often it proves it is alive, how it stops.

    ``worker_timeout`` is how long a silent worker is trusted before the reaper takes its tasks
    back, so it must exceed ``heartbeat_interval`` (a few intervals is sensible).
    ``priority_guard = N`` makes every Nth claim first take one task from each lower priority,
    so a flood of urgent work cannot starve the rest forever; 0 keeps priorities strict.
    """

    id: str | None = _setting(
        None, check=_worker_id_ok, expected="a name without spaces, '{' or '}'"
    )
    concurrency: int = _setting(50, minimum=1)
    prefetch: int = _setting(50, minimum=0)
    heartbeat_interval: float = _setting(5.0, kind=DURATION, positive=True)
    worker_timeout: float = _setting(30.0, kind=DURATION, positive=True)
    cleanup_interval: float = _setting(60.0, kind=DURATION, positive=True)
    drain_timeout: float = _setting(30.0, kind=DURATION)
    priority_guard: int = _setting(0, minimum=0)
    task_types: tuple[str, ...] = _setting(())
    skip_broken_plugins: bool = _setting(False)

    def __attrs_post_init__(self) -> None:
        if self.worker_timeout <= self.heartbeat_interval:
            raise _Conflict(
                {
                    "worker.worker_timeout": format_duration(self.worker_timeout),
                    "worker.heartbeat_interval": format_duration(self.heartbeat_interval),
                },
                "worker.worker_timeout > worker.heartbeat_interval, "
                "or live workers are taken for dead",
            )


@attrs.define(frozen=True, kw_only=True)
class TaskConfig:
    """Defaults for tasks that do not set their own, and limits on what may be submitted.

    A retry waits ``min(retry_max_delay, retry_base_delay * 2**attempt)`` with full jitter.
    """

    default_timeout: float = _setting(300.0, kind=DURATION, positive=True)
    max_retries: int = _setting(3, minimum=0)
    retry_base_delay: float = _setting(1.0, kind=DURATION)
    retry_max_delay: float = _setting(300.0, kind=DURATION)
    max_payload_bytes: int = _setting(2**20, kind=SIZE, positive=True)
    result_ttl: float = _setting(86400.0, kind=DURATION, positive=True)
    idempotency_window: float = _setting(86400.0, kind=DURATION, positive=True)
    max_queue_depth: int = _setting(0, minimum=0)

    def __attrs_post_init__(self) -> None:
        if self.retry_max_delay < self.retry_base_delay:
            raise _Conflict(
                {
                    "task.retry_max_delay": format_duration(self.retry_max_delay),
                    "task.retry_base_delay": format_duration(self.retry_base_delay),
                },
                "task.retry_max_delay >= task.retry_base_delay",
            )


@attrs.define(frozen=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics: served at ``path`` on the API port, or on ``port`` when set.

    A worker-only daemon has no API server, so it needs ``port`` to be scraped at all. The
    metrics port listens on ``server.host`` and asks for no token (there is nothing secret in
    the metrics); 0 picks a free port.
    """

    enabled: bool = _setting(True)
    port: int | None = _setting(None, minimum=0, maximum=65535, expected=_PORT)
    path: str = _setting(
        "/metrics", check=lambda path: path.startswith("/"), expected="a path starting with '/'"
    )


@attrs.define(frozen=True, kw_only=True)
class LoggingConfig:
    """Log level and format. ``auto`` picks journald under systemd, console on a terminal,
    and JSON otherwise."""

    level: str = _setting("info", choices=LOG_LEVELS)
    format: str = _setting("auto", choices=LOG_FORMATS)


@attrs.define(frozen=True, kw_only=True)
class Config:
    """The whole configuration: one frozen attrs instance per section.

    Build it with :func:`load_config`; ``Config()`` is the defaults. Show it with
    :meth:`masked`, never by printing ``to_dict()``, which holds the secrets.
    """

    server: ServerConfig = attrs.field(factory=ServerConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    worker: WorkerConfig = attrs.field(factory=WorkerConfig)
    task: TaskConfig = attrs.field(factory=TaskConfig)
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    #: ``[plugins.<name>]`` tables, handed as they are to the plugin registering as ``<name>``.
    plugins: Mapping[str, Mapping[str, object]] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, dict[str, object]]:
        """Every value as stored (seconds, bytes; tuples as lists), secrets included."""
        result: dict[str, dict[str, object]] = {}
        for name, cls in _section_classes().items():
            section = getattr(self, name)
            result[name] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in ((key, getattr(section, key)) for key in _specs(cls))
            }
        result["plugins"] = {name: dict(table) for name, table in self.plugins.items()}
        return result

    def masked(self) -> dict[str, dict[str, object]]:
        """The effective configuration for people: durations like ``5s``, sizes like ``1MiB``,
        and the redis password, bearer tokens and any password in the redis URL as ``***``.

        Safe to log and to print from ``taskqueue config``; durations and sizes read back.
        """
        result: dict[str, dict[str, object]] = {}
        for name, cls in _section_classes().items():
            section = getattr(self, name)
            result[name] = {
                key: spec.show(getattr(section, key)) for key, spec in _specs(cls).items()
            }
        result["plugins"] = {
            name: {k: "***" if _looks_secret(k) else v for k, v in table.items()}
            for name, table in self.plugins.items()
        }
        return result


def _looks_secret(key: str) -> bool:
    return any(word in key.lower() for word in ("password", "secret", "token", "key"))


# --------------------------------------------------------------------------------------------
# Loading: defaults, then the file, then the environment, then overrides


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

    def invalid(self, spec: _FieldSpec, raw: object) -> ConfigError:
        shown = spec.show(raw) if spec.rule.secret else raw
        value = _toml_repr(shown) if self.style == "toml" else repr(shown)
        if self.where == "environment":
            prefix = f"environment {self.label}"
        else:
            prefix = f"{self.where}: {self.label}"
        return ConfigError(f"{prefix} = {value}: expected {spec.expected}")


def _toml_repr(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # pragma: no cover - TOML values are JSON-able
        return repr(value)


def _unknown_key(where: str, key: str, *, env: bool = False) -> ConfigError:
    """An unknown ``section.key`` (or ``section.`` for a whole table), with a likely fix.

    The best guess is the same key in another section (``[server] concurrency``), then, in a
    known section, a close spelling of the key, and in an unknown one, of the section.
    """
    section, _, name = key.partition(".")
    sections = list(_section_classes())
    specs = _all_specs()
    known = section in sections
    elsewhere = [spec.key for spec in specs.values() if name and spec.name == name]
    names = list(_specs(_section_classes()[section])) if known else []
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


def _read_file(path: str, values: _Values, plugins: dict[str, dict[str, object]]) -> None:
    where = f"config file {path}"
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    specs = _all_specs()
    for section, table in data.items():
        if section == "plugins":
            _read_plugin_tables(where, table, plugins)
            continue
        if section not in _section_classes():
            raise _unknown_key(where, f"{section}.")
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where}: {section} = {_toml_repr(table)}: expected a table [{section}]"
            )
        for name, raw in table.items():
            key = f"{section}.{name}"
            if key not in specs:
                raise _unknown_key(where, key)
            origin = _Origin(where, key, "toml")
            values[key] = (_checked(specs[key], raw, origin, text=False), origin)


def _read_env(env: Mapping[str, str], values: _Values) -> None:
    """Read ``TASKQUEUE_<SECTION>__<KEY>`` variables; others (no ``__``) are not ours."""
    specs = _all_specs()
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
    specs = _all_specs()
    for key, raw in overrides.items():
        if raw is None:  # a CLI flag that was not given
            continue
        if key not in specs:
            raise _unknown_key("override", key)
        origin = _Origin("override", key, "python")
        values[key] = (_checked(specs[key], raw, origin, text=isinstance(raw, str)), origin)


def _checked(spec: _FieldSpec, raw: object, origin: _Origin, *, text: bool) -> object:
    try:
        return _coerce(spec, raw, text=text)
    except _Invalid:
        raise origin.invalid(spec, raw) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """The effective configuration: defaults < TOML file < environment < ``overrides``.

    ``path`` falls back to ``$TASKQUEUE_CONFIG``; with neither, no file is read. ``env`` is
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
    if path is None:
        path = environ.get(CONFIG_ENV_VAR) or None
    if path is not None:
        _read_file(os.fspath(path), values, plugins)
    _read_env(environ, values)
    if overrides:
        _read_overrides(overrides, values)

    sections: dict[str, AttrsInstance] = {}
    for name, cls in _section_classes().items():
        given = {
            spec.name: values[spec.key][0] for spec in _specs(cls).values() if spec.key in values
        }
        try:
            sections[name] = cls(**given)
        except _Conflict as conflict:
            origins = {key: origin.describe() for key, (_, origin) in values.items()}
            defaults = {key: "default" for key in conflict.values if key not in origins}
            raise ConfigError(conflict.render(origins | defaults)) from None
    return Config(**sections, plugins=plugins)  # type: ignore[arg-type]
