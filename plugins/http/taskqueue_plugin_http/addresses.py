"""Which IP addresses ``http.request`` may connect to. No I/O here: plain functions on addresses.

The rule is "public unicast only": loopback, private, link-local, site-local, multicast,
reserved, unspecified, shared (CGNAT) and documentation ranges are refused. IPv6 addresses that
carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16`` and Teredo) are judged by the IPv4 address they carry too,
so ``[::ffff:127.0.0.1]`` is as loopback as ``127.0.0.1``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, by any of the usual transition mechanisms."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (``"loopback"``, ...), or None if it is."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = non_public_reason(inner)
        if reason is not None:
            return f"{reason} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    )
    for name, applies in checks:
        if applies:
            return name
    if not address.is_global:
        return "non-global"
    return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The addresses a request may connect to.

    ``allow_private_networks`` lifts every restriction; ``allowed_networks`` lifts it for the
    listed networks only (e.g. one internal webhook receiver).
    """

    allow_private_networks: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to ``address`` is refused, or None if it is allowed."""
        if self.allow_private_networks:
            return None
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if any(_within(a, self.allowed_networks) for a in candidates):
            return None
        return non_public_reason(address)


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
