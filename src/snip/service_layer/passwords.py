"""Link passwords: argon2id hashing and verification, run in a bounded thread pool.

Hashing costs ~30 ms of CPU and 19 MiB of memory by design; argon2-cffi releases the GIL while
it works, so a small pool of threads keeps the event loop answering redirects meanwhile, and
bounds how many hashes run at once (memory) however many password attempts arrive.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from snip.domain.errors import InvalidLink

MIN_PASSWORD_LENGTH = 4
MAX_PASSWORD_LENGTH = 128
# OWASP's first argon2id configuration (RFC 9106 allows it): 19 MiB, 2 passes, 1 lane.
TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
HASH_PREFIXES = ("$argon2id$", "$argon2i$", "$argon2d$")


def validate_password(password: str) -> str:
    """Passwords are kept as given (no trimming); control characters and extremes are refused."""
    if not isinstance(password, str):
        raise InvalidLink("password must be a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidLink(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidLink(f"password must be at most {MAX_PASSWORD_LENGTH} characters long")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise InvalidLink("password must not contain control characters")
    return password


def looks_like_hash(value: str) -> bool:
    """Is `value` an argon2 hash in PHC form (as `snip export` writes it)?"""
    return value.startswith(HASH_PREFIXES) and len(value) <= 255


_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB,
                         parallelism=PARALLELISM)


def hash_password_sync(password: str) -> str:
    """Hash on the calling thread: for worker processes (`snip import`) and thread pools only."""
    return _hasher.hash(validate_password(password))


def verify_sync(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Passwords:
    """Hash and verify link passwords off the event loop, at most `threads` at a time."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="snip-argon2")
        return self._pool

    async def hash(self, password: str) -> str:
        validate_password(password)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), hash_password_sync, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            return False  # never spend a hash on what cannot match
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), verify_sync, password_hash, password)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
