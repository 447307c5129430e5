"""Every setting of taskqueue: its default, its limits, and where a value came from.

An operator reads ``config/taskqueue.toml``; a developer reads :mod:`taskqueue.config.sections`;
both see the same keys. The package is split by job: :mod:`~taskqueue.config.units` (durations,
sizes, masking), :mod:`~taskqueue.config.fields` (declaring and checking one setting),
:mod:`~taskqueue.config.sections` (the sections and :class:`Config`) and
:mod:`~taskqueue.config.loader` (file, environment, overrides). Import from here: the names
below are the stable surface.
"""

from __future__ import annotations

from taskqueue.config.fields import ENV_PREFIX, setting
from taskqueue.config.loader import CONFIG_ENV_VAR, config_path, load_config
from taskqueue.config.sections import (
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    LoggingConfig,
    MetricsConfig,
    RedisConfig,
    RetentionConfig,
    ServerConfig,
    TaskConfig,
    WorkerConfig,
)
from taskqueue.config.units import (
    format_duration,
    format_size,
    mask_url,
    parse_duration,
    parse_size,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Config",
    "LoggingConfig",
    "MetricsConfig",
    "RedisConfig",
    "RetentionConfig",
    "ServerConfig",
    "TaskConfig",
    "WorkerConfig",
    "config_path",
    "format_duration",
    "format_size",
    "load_config",
    "mask_url",
    "parse_duration",
    "parse_size",
    "setting",
]
