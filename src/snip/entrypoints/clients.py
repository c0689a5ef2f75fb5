"""Who is on the other end: the client address from the socket, or from proxy headers.

`X-Forwarded-For` and `Forwarded` are believed only when the socket peer is a trusted proxy
(`SNIP_TRUSTED_PROXIES`), and then only up to the first address that is not itself trusted:
a client cannot forge its address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.0/8", "127.0.0.1"]` → networks; raises ValueError with the bad entry."""
    found = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        try:
            found.append(ipaddress.ip_network(spec, strict=False))
        except ValueError as exc:
            raise ValueError(f"not an address or network: {spec!r}") from exc
    return tuple(found)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _forwarded_for(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """Addresses from `Forwarded` (RFC 7239) if sent, else `X-Forwarded-For`, nearest last."""
    forwarded: list[str] = []
    xff: list[str] = []
    for name, value in headers:
        if name == b"forwarded":
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    key, _, val = pair.strip().partition("=")
                    if key.lower() == "for":
                        forwarded.append(val)
        elif name == b"x-forwarded-for":
            xff.extend(value.decode("latin-1").split(","))
    return forwarded or xff


class ClientAddresses:
    """Resolve a request's client address, honouring proxy headers from trusted proxies only."""

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self._trusted = tuple(trusted)

    def _is_trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self._trusted)

    def of(self, scope: dict[str, Any]) -> str | None:
        client = scope.get("client")
        if not client:
            return None
        peer = _ip(client[0])
        if peer is None:
            return client[0]  # type: ignore[no-any-return]
        if not self._trusted or not self._is_trusted(peer):
            return str(peer)
        # Walk the chain from the nearest hop back; the first untrusted address is the client.
        current = peer
        for raw in reversed(_forwarded_for(scope.get("headers", []))):
            hop = _ip(raw)
            if hop is None:
                return str(current)  # garbage or "unknown": stop at what we know
            current = hop
            if not self._is_trusted(hop):
                return str(hop)
        return str(current)
