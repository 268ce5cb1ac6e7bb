"""``CITYCARD_METRICS_ALLOW``: the client addresses /metrics answers without a session."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = "127.0.0.0/8,::1/128"


def networks_parse(text: str | None) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks; unset (None): loopback only; empty: none (then only
    signed-in platform staff get /metrics)."""
    networks = []
    for item in (part.strip() for part in (LOOPBACK if text is None else text).split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"CITYCARD_METRICS_ALLOW: {item!r} is not an address or CIDR block") from None
    return tuple(networks)


def address_allowed(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
