"""The account rules: actors, key format and digest, user names, scopes and key expiry."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from snip.domain.accounts import (
    ADMIN,
    LINKS_READ,
    LINKS_WRITE,
    STATS_READ,
    Actor,
    ApiKey,
    InvalidAccount,
    key_digest,
    new_key,
    parse_expiry,
    parse_scopes,
    plausible_key,
    shown_prefix,
    validate_given_key,
    validate_user_name,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_keys_are_prefixed_random_and_256_bits() -> None:
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert key.startswith("snip_") and len(key) == 5 + 43 and plausible_key(key)
    assert shown_prefix("snip_abcdefghijk") == "snip_abcdefg"


def test_the_digest_is_sha256_hex() -> None:
    assert key_digest("snip_x") == hashlib.sha256(b"snip_x").hexdigest()


@pytest.mark.parametrize("key", ["", "a b", "x" * 201, "snip_\u00e9", "snip_\n"])
def test_implausible_keys_are_refused_before_any_lookup(key: str) -> None:
    assert not plausible_key(key)


def test_a_configured_key_must_be_long_enough() -> None:
    with pytest.raises(InvalidAccount, match="32–200 characters"):
        validate_given_key("snip_short")
    assert validate_given_key(" snip_" + "a" * 40 + " ") == "snip_" + "a" * 40


@pytest.mark.parametrize("name", ["-", "system", "System", "anonymous", "", "a b", "-bob",
                                  "x" * 65, "bob/eve"])
def test_bad_or_reserved_user_names(name: str) -> None:
    with pytest.raises(InvalidAccount):
        validate_user_name(name)


def test_good_user_names() -> None:
    for name in ("bob", "alice.smith", "ops@example.com", "a" * 64, "team_1-x"):
        assert validate_user_name(name) == name


def test_scopes_default_by_role_and_admin_only_for_admins() -> None:
    assert parse_scopes(None, "user") == {LINKS_READ, LINKS_WRITE, STATS_READ}
    assert parse_scopes(None, "admin") == {LINKS_READ, LINKS_WRITE, STATS_READ, ADMIN}
    assert parse_scopes("links:read, stats:read", "user") == {LINKS_READ, STATS_READ}
    with pytest.raises(InvalidAccount, match="only an admin"):
        parse_scopes("admin", "user")
    with pytest.raises(InvalidAccount, match="unknown scope"):
        parse_scopes("links:read,links:everything", "admin")
    with pytest.raises(InvalidAccount):
        parse_scopes(" , ", "admin")


def test_expiry_as_duration_or_date() -> None:
    assert parse_expiry("30d", NOW) == NOW + timedelta(days=30)
    assert parse_expiry("12h", NOW) == NOW + timedelta(hours=12)
    assert parse_expiry("2027-01-01", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_expiry(None, NOW) is None
    for bad in ("yesterday", "2020-01-01", "0d", "-3d"):
        with pytest.raises(InvalidAccount):
            parse_expiry(bad, NOW)


def test_key_state() -> None:
    key = ApiKey(1, "bob", "snip_abc", frozenset(), NOW, expires_at=NOW + timedelta(days=1))
    assert key.state(NOW) == "active"
    assert key.state(NOW + timedelta(days=1)) == "expired"
    assert ApiKey(1, "bob", "p", frozenset(), NOW, revoked_at=NOW).state(NOW) == "revoked"


def test_who_sees_what() -> None:
    admin = Actor("root", "admin", frozenset({ADMIN}))
    admin_without_scope = Actor("root", "admin", frozenset({LINKS_READ}))
    bob = Actor("bob", "user", frozenset({LINKS_READ}))
    anonymous = Actor.anonymous()
    assert admin.sees("bob") and admin.sees("-") and Actor.system().sees("bob")
    assert not admin_without_scope.sees("bob") and admin_without_scope.sees("root")
    assert bob.sees("bob") and not bob.sees("alice") and not bob.sees("-")
    assert not anonymous.sees("-") and not anonymous.can(LINKS_READ)
    assert bob.can(LINKS_READ) and not bob.can(LINKS_WRITE)
