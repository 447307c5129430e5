"""The ``[plugins.http]`` settings: names, defaults and validation. No I/O here."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskqueue.errors import ConfigError
from taskqueue_plugin_http.addresses import AddressPolicy, IPNetwork

SECTION = "[plugins.http]"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Operator settings of ``http.request``; see the package README for each one."""

    allow_private_networks: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_response_bytes: int = MIB
    result_body_bytes: int = 64 * 1024
    max_redirects: int = 5
    user_agent: str = "taskqueue-plugin-http/0.1"
    #: The task type's default timeout and retries, used when a submission sets none.
    timeout: float | None = 60.0
    max_retries: int | None = None

    @property
    def policy(self) -> AddressPolicy:
        return AddressPolicy(self.allow_private_networks, self.allowed_networks)


_FIELDS = frozenset(HttpSettings.__dataclass_fields__)


def parse_settings(table: Mapping[str, Any]) -> HttpSettings:
    """Build settings from the plugin's config table, or raise ConfigError naming the key."""
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigError(f"{SECTION} {unknown[0]}: unknown setting; the settings are {known}")
    defaults = HttpSettings()
    return HttpSettings(
        allow_private_networks=_bool(table, "allow_private_networks", False),
        allowed_networks=_networks(table.get("allowed_networks", [])),
        max_response_bytes=_positive_int(table, "max_response_bytes", defaults.max_response_bytes),
        result_body_bytes=_positive_int(table, "result_body_bytes", defaults.result_body_bytes),
        max_redirects=_non_negative_int(table, "max_redirects", defaults.max_redirects),
        user_agent=_string(table, "user_agent", defaults.user_agent),
        timeout=_optional_seconds(table, "timeout", defaults.timeout),
        max_retries=(
            None if "max_retries" not in table else _non_negative_int(table, "max_retries", 0)
        ),
    )


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{SECTION} {key}: expected true or false, got {value!r}")
    return value


def _positive_int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{SECTION} {key}: expected a positive integer, got {value!r}")
    return value


def _non_negative_int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{SECTION} {key}: expected an integer >= 0, got {value!r}")
    return value


def _string(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{SECTION} {key}: expected a one-line string, got {value!r}")
    return value


def _optional_seconds(table: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = table.get(key, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value > 0 and math.isfinite(value))
    ):
        raise ConfigError(f"{SECTION} {key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            f"{SECTION} allowed_networks: expected a list of networks such as"
            f' ["10.1.2.0/24"], got {value!r}'
        )
    networks: list[IPNetwork] = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{SECTION} allowed_networks: {item!r} is not a network such as 10.1.2.0/24"
            ) from None
    return tuple(networks)
