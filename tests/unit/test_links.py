"""Links: when one may be followed, and the bounds on its other fields."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from snip.domain.errors import InvalidLink
from snip.domain.links import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    Link,
    LinkQuery,
    RedirectTarget,
    Verdict,
    is_reusable,
    reuse_key,
    url_digest,
    validate_expires_at,
    validate_max_visits,
    validate_redirect_status,
    validate_tags,
    validate_title,
    verdict,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
T = NOW.timestamp()


def make_link(**changes: object) -> Link:
    link = Link(code="abc1234", url="https://example.com/", created_at=NOW, updated_at=NOW)
    return dataclasses.replace(link, **changes)


# --- verdict -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disabled", "expires_at", "max_visits", "visits", "expected"),
    [
        (False, None, None, 0, Verdict.FOLLOW),
        (False, None, None, 10**9, Verdict.FOLLOW),
        (False, T + 1, 5, 4, Verdict.FOLLOW),
        # disabled beats expired beats exhausted
        (True, T - 1, 5, 5, Verdict.DISABLED),
        (True, None, None, 0, Verdict.DISABLED),
        (False, T - 1, 5, 5, Verdict.EXPIRED),
        (False, T + 1, 5, 5, Verdict.EXHAUSTED),
        # the boundaries: at the expiry instant it is expired; at max_visits it is exhausted
        (False, T, None, 0, Verdict.EXPIRED),
        (False, T + 0.001, None, 0, Verdict.FOLLOW),
        (False, None, 3, 3, Verdict.EXHAUSTED),
        (False, None, 3, 2, Verdict.FOLLOW),
        (False, None, 1, 0, Verdict.FOLLOW),
    ],
)
def test_verdict(
    disabled: bool, expires_at: float | None, max_visits: int | None, visits: int, expected: Verdict
) -> None:
    got = verdict(disabled=disabled, expires_at=expires_at, max_visits=max_visits, visits=visits, now=T)
    assert got is expected
    assert got.gone is (expected is not Verdict.FOLLOW)


def test_link_verdict_uses_its_own_fields_and_an_optional_visit_count() -> None:
    assert make_link().verdict(NOW) is Verdict.FOLLOW
    assert make_link(disabled=True).verdict(NOW) is Verdict.DISABLED
    assert make_link(expires_at=NOW).verdict(NOW) is Verdict.EXPIRED
    assert make_link(expires_at=NOW).verdict(NOW - timedelta(seconds=1)) is Verdict.FOLLOW
    limited = make_link(max_visits=2, visits=2)
    assert limited.verdict(NOW) is Verdict.EXHAUSTED
    assert limited.verdict(NOW, visits=1) is Verdict.FOLLOW


def test_link_verdict_compares_instants_across_time_zones() -> None:
    expires = datetime(2030, 1, 2, 4, 0, tzinfo=timezone(timedelta(hours=1)))  # 03:00 UTC
    link = make_link(expires_at=expires)
    assert link.verdict(datetime(2030, 1, 2, 2, 59, tzinfo=UTC)) is Verdict.FOLLOW
    assert link.verdict(datetime(2030, 1, 2, 3, 0, tzinfo=UTC)) is Verdict.EXPIRED


def test_redirect_target_of_a_link() -> None:
    link = make_link(
        redirect_status=301, expires_at=NOW + timedelta(hours=1), max_visits=7, visits=3, title="x"
    )
    target = RedirectTarget.of(link)
    assert target == RedirectTarget(
        code="abc1234",
        location="https://example.com/",
        status=301,
        expires_at=T + 3600,
        max_visits=7,
        disabled=False,
    )
    assert target.verdict(T, visits=6) is Verdict.FOLLOW
    assert target.verdict(T, visits=7) is Verdict.EXHAUSTED
    assert target.verdict(T + 3600) is Verdict.EXPIRED


def test_redirect_target_of_a_plain_link_has_no_limits() -> None:
    target = RedirectTarget.of(make_link(disabled=True))
    assert target.expires_at is None and target.max_visits is None
    assert target.status == 302
    assert target.verdict(T) is Verdict.DISABLED


# --- digests and reuse ----------------------------------------------------------------------------


def test_url_digest_is_stable_and_distinguishes_urls() -> None:
    url = "https://example.com/"
    # the digest is stored and indexed; its definition must not drift
    assert url_digest(url) == hashlib.sha256(url.encode()).hexdigest()
    assert url_digest(url) == url_digest("https://example.com/")
    assert url_digest(url) != url_digest("https://example.com/x")
    assert url_digest("https://example.com/?a=1") != url_digest("https://example.com/?a=2")
    assert len(url_digest(url)) == 64


def test_reuse_key_is_per_owner() -> None:
    digest = url_digest("https://example.com/")
    assert reuse_key("alice", digest) != reuse_key("bob", digest)
    assert reuse_key("alice", digest) == reuse_key("alice", digest)


def test_only_plain_links_are_reusable() -> None:
    assert is_reusable(expires_at=None, max_visits=None, disabled=False)
    assert not is_reusable(expires_at=NOW, max_visits=None, disabled=False)
    assert not is_reusable(expires_at=None, max_visits=1, disabled=False)
    assert not is_reusable(expires_at=None, max_visits=None, disabled=True)


# --- field validation -----------------------------------------------------------------------------


def test_tags_are_trimmed_lower_cased_and_deduplicated_in_order() -> None:
    assert validate_tags([" Foo ", "bar", "FOO", "Bar ", "baz"]) == ("foo", "bar", "baz")
    assert validate_tags(None) == ()
    assert validate_tags([]) == ()
    assert validate_tags(iter(["a", "b"])) == ("a", "b")


@pytest.mark.parametrize(
    "tags",
    [[""], ["  "], ["a,b"], ["tab\there"], ["nul\x00"], ["x" * (MAX_TAG_LENGTH + 1)], "news", [1]],
)
def test_bad_tags_are_refused(tags: object) -> None:
    with pytest.raises(InvalidLink):
        validate_tags(tags)  # type: ignore[arg-type]


def test_tag_limits() -> None:
    assert validate_tags(["x" * MAX_TAG_LENGTH]) == ("x" * MAX_TAG_LENGTH,)
    many = [f"t{i}" for i in range(MAX_TAGS)]
    assert validate_tags(many) == tuple(many)
    with pytest.raises(InvalidLink):
        validate_tags([*many, "one-more"])
    # duplicates do not count against the limit
    assert len(validate_tags([*many, *(t.upper() for t in many)])) == MAX_TAGS


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_statuses_accepted(status: int) -> None:
    assert validate_redirect_status(status) == status


@pytest.mark.parametrize("status", [0, 200, 300, 303, 304, 305, 309, 404])
def test_other_statuses_refused(status: int) -> None:
    with pytest.raises(InvalidLink):
        validate_redirect_status(status)


def test_expiry_must_lie_in_the_future() -> None:
    assert validate_expires_at(None, NOW) is None
    with pytest.raises(InvalidLink):
        validate_expires_at(NOW - timedelta(seconds=1), NOW)
    with pytest.raises(InvalidLink):
        validate_expires_at(NOW, NOW)
    later = NOW + timedelta(seconds=1)
    assert validate_expires_at(later, NOW) == later


def test_naive_expiry_is_taken_as_utc() -> None:
    got = validate_expires_at(datetime(2030, 1, 2, 5, 0), NOW)
    assert got == datetime(2030, 1, 2, 5, 0, tzinfo=UTC)
    assert got is not None and got.utcoffset() == timedelta(0)
    # naive and in the past (as UTC) is refused
    with pytest.raises(InvalidLink):
        validate_expires_at(datetime(2030, 1, 2, 3, 0), NOW)


def test_expiry_in_another_zone_is_converted_to_utc() -> None:
    zoned = datetime(2030, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    got = validate_expires_at(zoned, NOW)
    assert got == zoned
    assert got is not None and got.tzinfo == UTC and got.hour == 7


def test_title() -> None:
    assert validate_title(None) is None
    assert validate_title("  Hello  ") == "Hello"
    assert validate_title("   ") is None
    assert validate_title("x" * MAX_TITLE_LENGTH) == "x" * MAX_TITLE_LENGTH


@pytest.mark.parametrize("title", ["x" * (MAX_TITLE_LENGTH + 1), "a\x00b", "a\tb", "bell\x07", "a\x7fb"])
def test_bad_titles_are_refused(title: str) -> None:
    with pytest.raises(InvalidLink):
        validate_title(title)


def test_max_visits() -> None:
    assert validate_max_visits(None) is None
    assert validate_max_visits(1) == 1
    assert validate_max_visits(2**62) == 2**62
    for bad in (0, -1, 2**62 + 1):
        with pytest.raises(InvalidLink):
            validate_max_visits(bad)


# --- listing --------------------------------------------------------------------------------------


def test_link_query_defaults_and_bounds() -> None:
    query = LinkQuery()
    assert (query.order_by, query.descending, query.limit, query.offset) == ("created_at", True, 50, 0)
    assert LinkQuery(limit=1).limit == 1
    assert LinkQuery(limit=1000).limit == 1000
    for order_by in sorted(LinkQuery.ORDER_FIELDS):
        assert LinkQuery(order_by=order_by).order_by == order_by


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order_by": "password"},
        {"order_by": "created_at; DROP TABLE links"},
        {"order_by": "CODE"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
    ],
)
def test_link_query_refuses_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidLink):
        LinkQuery(**kwargs)  # type: ignore[arg-type]


def test_link_query_order_fields_cannot_be_widened_by_a_caller() -> None:
    assert "code" in LinkQuery.ORDER_FIELDS
    with pytest.raises(TypeError):
        LinkQuery(order_by="password", ORDER_FIELDS=frozenset({"password"}))  # type: ignore[call-arg]
