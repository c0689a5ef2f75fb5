"""Short codes: random codes from the base62 alphabet, and the rules for custom codes."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snip.domain import codes
from snip.domain.codes import (
    ALPHABET,
    MAX_CODE_LENGTH,
    MAX_CUSTOM_CODE_LENGTH,
    MIN_CODE_LENGTH,
    generate_code,
    is_reserved,
    looks_like_code,
    validate_custom_code,
)
from snip.domain.errors import InvalidCode


def test_alphabet_is_base62() -> None:
    assert sorted(ALPHABET) == sorted(string.digits + string.ascii_letters)
    assert len(set(ALPHABET)) == 62


@settings(max_examples=100)
@given(st.integers(MIN_CODE_LENGTH, MAX_CODE_LENGTH))
def test_generated_codes_have_the_length_and_alphabet(length: int) -> None:
    code = generate_code(length)
    assert len(code) == length
    assert set(code) <= set(ALPHABET)
    assert looks_like_code(code)
    assert not is_reserved(code)


def test_generated_codes_do_not_repeat_and_use_the_whole_alphabet() -> None:
    sample = [generate_code(7) for _ in range(10_000)]
    assert len(set(sample)) == len(sample)
    # 70,000 characters: every one of the 62 must show up, or the draw is biased
    assert set("".join(sample)) == set(ALPHABET)


@pytest.mark.parametrize("length", [-1, 0, 1, MIN_CODE_LENGTH - 1, MAX_CODE_LENGTH + 1, 1000])
def test_generate_code_refuses_lengths_out_of_bounds(length: int) -> None:
    with pytest.raises(ValueError):
        generate_code(length)


def test_generate_code_never_returns_a_reserved_word(monkeypatch: pytest.MonkeyPatch) -> None:
    # the first draw spells "docs", which /docs would shadow; the next one is kept
    def number(code: str) -> int:  # the draw that generate_code writes out as `code`
        return sum(ALPHABET.index(c) * 62**i for i, c in enumerate(code))

    draws = iter([number("docs"), number("Ab12")])
    monkeypatch.setattr(codes.secrets, "randbelow", lambda _space: next(draws))
    assert generate_code(4) == "Ab12"


@pytest.mark.parametrize(
    "code",
    [
        "abc",
        "A",
        "my-link_2",
        "UPPER",
        "0",
        "-",
        "_x_",
        "a" * MAX_CUSTOM_CODE_LENGTH,
        "apis",
        "docs2",
        "api-v1",
    ],
)
def test_valid_custom_codes_are_returned_unchanged(code: str) -> None:
    assert validate_custom_code(code) == code


@pytest.mark.parametrize(
    "code",
    ["has space", "slash/", "dot.dot", "%41", "ünï", "emoji😀", "tab\t", "q?", "h#sh", "a+b", "\u200b"],
)
def test_custom_codes_outside_the_alphabet_are_refused(code: str) -> None:
    with pytest.raises(InvalidCode) as caught:
        validate_custom_code(code)
    assert "letters, digits" in caught.value.detail


@pytest.mark.parametrize(
    "code", ["api", "API", "Docs", "healthz", "HEALTHZ", "r", "R", "favicon", "Static", "openapi", "metrics"]
)
def test_reserved_words_are_refused_in_any_case(code: str) -> None:
    with pytest.raises(InvalidCode) as caught:
        validate_custom_code(code)
    assert "reserved" in caught.value.detail


def test_too_long_custom_code_is_refused() -> None:
    with pytest.raises(InvalidCode):
        validate_custom_code("a" * (MAX_CUSTOM_CODE_LENGTH + 1))
    with pytest.raises(InvalidCode):
        validate_custom_code("abcdef", max_length=5)
    assert validate_custom_code("abcde", max_length=5) == "abcde"


@pytest.mark.parametrize("code", ["", None, 123])
def test_empty_or_non_text_custom_code_is_refused(code: object) -> None:
    with pytest.raises(InvalidCode):
        validate_custom_code(code)  # type: ignore[arg-type]


def test_extra_reserved_words() -> None:
    assert is_reserved("Dashboard", extra=["dashboard"])
    assert is_reserved("DASHBOARD", extra=["Dashboard"])
    assert not is_reserved("dashboard")


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("abc123", True),
        ("my-link_2", True),
        ("a" * MAX_CUSTOM_CODE_LENGTH, True),
        ("", False),
        ("a" * (MAX_CUSTOM_CODE_LENGTH + 1), False),
        ("a/b", False),
        ("favicon.ico", False),
        ("ä", False),
        ("%20", False),
    ],
)
def test_looks_like_code(segment: str, expected: bool) -> None:
    assert looks_like_code(segment) is expected


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=70), st.text(alphabet=ALPHABET + "-_.", max_size=70)))
def test_every_accepted_custom_code_can_be_looked_up(code: str) -> None:
    try:
        accepted = validate_custom_code(code)
    except InvalidCode:
        assert not looks_like_code(code) or is_reserved(code)
        return
    assert looks_like_code(accepted)
    assert not is_reserved(accepted)


def test_every_character_appears_in_every_position() -> None:
    # A biased writer of the random number (say, zero padding) would starve some positions.
    drawn = [generate_code(7) for _ in range(6200)]
    for position in range(7):
        assert {code[position] for code in drawn} == set(ALPHABET)
