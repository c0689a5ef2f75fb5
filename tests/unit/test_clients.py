"""The client address: the socket peer, or proxy headers only from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from snip.entrypoints.clients import ClientAddresses, parse_networks

PROXIES = ClientAddresses(parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48", "127.0.0.1"]))


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"client": (peer, 50000) if peer else None,
            "headers": [(k.encode(), v.encode()) for k, v in headers]}


def test_without_trusted_proxies_the_socket_peer_is_the_client() -> None:
    plain = ClientAddresses()
    assert plain.of(scope("198.51.100.1", ("x-forwarded-for", "203.0.113.9"))) == "198.51.100.1"


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    spoofed = scope("198.51.100.1", ("x-forwarded-for", "203.0.113.9"),
                    ("forwarded", "for=203.0.113.10"))
    assert PROXIES.of(spoofed) == "198.51.100.1"


def test_a_trusted_proxy_names_the_client() -> None:
    assert PROXIES.of(scope("10.1.2.3", ("x-forwarded-for", "203.0.113.9"))) == "203.0.113.9"


def test_chain_through_trusted_proxies_stops_at_the_first_untrusted_hop() -> None:
    # The client wrote "1.2.3.4" itself; 203.0.113.9 reached our first proxy (10.9.9.9).
    header = ("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.9.9.9")
    assert PROXIES.of(scope("10.1.2.3", header)) == "203.0.113.9"
    split = scope("10.1.2.3", ("x-forwarded-for", "1.2.3.4, 203.0.113.9"),
                  ("x-forwarded-for", "10.9.9.9"))
    assert PROXIES.of(split) == "203.0.113.9"  # several header lines are one list


def test_all_hops_trusted_gives_the_farthest() -> None:
    assert PROXIES.of(scope("10.1.2.3", ("x-forwarded-for", "10.5.5.5, 10.9.9.9"))) == "10.5.5.5"


def test_forwarded_header_rfc_7239() -> None:
    header = ("forwarded", 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"')
    assert PROXIES.of(scope("127.0.0.1", header)) == "2001:db8:cafe::17"
    assert PROXIES.of(scope("127.0.0.1", ("forwarded", "for=192.0.2.60:8080"))) == "192.0.2.60"


def test_forwarded_wins_over_x_forwarded_for() -> None:
    both = scope("10.1.2.3", ("x-forwarded-for", "203.0.113.1"), ("forwarded", "for=203.0.113.2"))
    assert PROXIES.of(both) == "203.0.113.2"


@pytest.mark.parametrize(("peer", "header", "client"), [
    ("2001:db8:ffff::1", "2001:db8:1::5", "2001:db8:1::5"),  # IPv6 proxy, IPv6 client
    ("2001:db8:ffff::1", "203.0.113.5", "203.0.113.5"),  # IPv6 proxy, IPv4 client
    ("::ffff:10.0.0.1", "203.0.113.5", "203.0.113.5"),  # IPv4-mapped peer is the IPv4 proxy
    ("2001:db8:aaaa::1", "203.0.113.5", "2001:db8:aaaa::1"),  # untrusted IPv6 peer
])
def test_ipv6(peer: str, header: str, client: str) -> None:
    assert PROXIES.of(scope(peer, ("x-forwarded-for", header))) == client


def test_garbage_in_the_chain_stops_at_what_is_known() -> None:
    assert PROXIES.of(scope("10.1.2.3", ("x-forwarded-for", "unknown"))) == "10.1.2.3"
    assert PROXIES.of(scope("10.1.2.3", ("x-forwarded-for", "203.0.113.9, junk"))) == "10.1.2.3"


def test_no_client_and_bad_settings() -> None:
    assert PROXIES.of(scope(None)) is None
    with pytest.raises(ValueError, match="not an address"):
        parse_networks(["10.0.0.0/8", "nope"])
