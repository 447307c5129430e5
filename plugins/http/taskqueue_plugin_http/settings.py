"""The ``[plugins.http]`` settings, declared with the core's settings engine. No I/O here.

The core reads the table through this class: units (``max_response_bytes = "1MiB"``,
``timeout = "1m"``), limits, and errors that name ``plugins.http.<key>`` come from there.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from taskqueue.plugin import setting, settings_class
from taskqueue_plugin_http.addresses import AddressPolicy


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _one_line(text: str) -> bool:
    return not any(c in text for c in "\r\n\0")


@settings_class
class HttpSettings:
    """Operator settings of ``http.request``; see the package README for each one.

    Safe by default: private, loopback and link-local addresses are refused until
    ``allow_private_networks`` or ``allowed_networks`` says otherwise.
    """

    _section: ClassVar[str] = "plugins.http"

    allow_private_networks: bool = setting(False)
    allowed_networks: tuple[str, ...] = setting(
        (), check=_is_network, expected='a list of networks such as ["10.1.2.0/24"]'
    )
    max_response_bytes: int = setting("1MiB", kind="size", positive=True)
    result_body_bytes: int = setting("64KiB", kind="size", positive=True)
    max_redirects: int = setting(5, minimum=0)
    user_agent: str = setting(
        "taskqueue-plugin-http/0.1", check=_one_line, expected="a one-line string"
    )
    #: The task type's default timeout and retries, used when a submission sets none.
    timeout: float | None = setting("1m", kind="duration", positive=True)
    max_retries: int | None = setting(None, minimum=0)

    @property
    def policy(self) -> AddressPolicy:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)
        return AddressPolicy(self.allow_private_networks, networks)
