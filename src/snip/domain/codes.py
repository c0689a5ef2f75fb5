"""The code generator: random base62 short codes from a CSPRNG, and the rules for custom codes.

Random codes are drawn with `secrets`; uniqueness is enforced by the storage's unique
constraint and a retry in the service layer, never by checking first and inserting later.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable

from snip.domain.errors import InvalidCode

ALPHABET = string.digits + string.ascii_letters  # base62: 0-9 A-Z a-z
CUSTOM_ALPHABET = frozenset(ALPHABET + "-_")

MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 32
MAX_CUSTOM_CODE_LENGTH = 64

# Every first path segment snip serves, or may serve, itself. A custom code equal to one of
# these (in any case) would shadow a route, so it is refused.
RESERVED_WORDS = frozenset(
    {
        "api",
        "docs",
        "redoc",
        "openapi",
        "static",
        "metrics",
        "healthz",
        "readyz",
        "livez",
        "health",
        "shorten",
        "r",
        "problems",
        "admin",
        "login",
        "logout",
        "favicon",
        "robots",
        "assets",
        "new",
        "www",
    }
)


def generate_code(length: int) -> str:
    """Return a random base62 code of `length` characters, drawn from `secrets`."""
    if not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
        raise ValueError(f"code length must be {MIN_CODE_LENGTH}..{MAX_CODE_LENGTH}, not {length}")
    space = len(ALPHABET) ** length
    while True:
        # A code spelling one of snip's own routes (say "docs" at length 4) would be shadowed
        # by that route; such a draw is simply thrown away.
        # One draw of the whole number, written in base62: uniform, and 3.5 times cheaper than
        # a `secrets.choice` per character (bench/hashes.py, table 3.1).
        n = secrets.randbelow(space)
        chars = []
        for _ in range(length):
            n, digit = divmod(n, 62)
            chars.append(ALPHABET[digit])
        code = "".join(chars)
        if not is_reserved(code):
            return code


def is_reserved(code: str, extra: Iterable[str] = ()) -> bool:
    """True when `code` names one of snip's own routes (compared without case)."""
    folded = code.casefold()
    return folded in RESERVED_WORDS or folded in {w.casefold() for w in extra}


def validate_custom_code(code: str, *, max_length: int = MAX_CUSTOM_CODE_LENGTH) -> str:
    """Return `code` if it may be used as a custom code, else raise `InvalidCode` saying why."""
    if not isinstance(code, str):
        raise InvalidCode(f"the code must be text, not {type(code).__name__}")
    if not code:
        raise InvalidCode("the code is empty")
    if len(code) > max_length:
        raise InvalidCode(f"the code is {len(code)} characters long; the limit is {max_length}")
    bad = sorted({c for c in code if c not in CUSTOM_ALPHABET})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise InvalidCode(
            f"the code may hold only letters, digits, '-' and '_'; it contains {shown}"
        )
    if is_reserved(code):
        raise InvalidCode(f"'{code}' is reserved for snip's own routes")
    return code


def looks_like_code(segment: str) -> bool:
    """Cheap test used by the redirect hot path: could `segment` be a stored code at all?

    `str` methods rather than a loop or a regex: this runs on every redirect.
    """
    return (
        0 < len(segment) <= MAX_CUSTOM_CODE_LENGTH
        and segment.isascii()
        and (segment.isalnum() or CUSTOM_ALPHABET.issuperset(segment))
    )
