"""Privacy rules: how much of a client address snip may keep or log."""

from __future__ import annotations

import ipaddress


def anonymize_ip(address: str) -> str:
    """IPv4 to its /24 and IPv6 to its /48 network: enough for geography, not for a person."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
