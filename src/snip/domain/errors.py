"""Errors the domain and the service layer raise; the entrypoints map them to HTTP and CLI output."""

from __future__ import annotations


class SnipError(Exception):
    """Base class: every error snip raises on purpose carries a stable `kind` and a readable detail."""

    kind = "snip-error"
    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidURL(SnipError):
    """The destination URL cannot be shortened; `reason` says which rule it broke."""

    kind = "invalid-url"
    title = "Invalid URL"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class InvalidCode(SnipError):
    """A custom code breaks the alphabet, length or reserved-word rules."""

    kind = "invalid-code"
    title = "Invalid short code"


class InvalidLink(SnipError):
    """A link field other than the URL or code is out of bounds (status, max_visits, tags...)."""

    kind = "invalid-link"
    title = "Invalid link"


class CodeTaken(SnipError):
    """The custom code already belongs to another link."""

    kind = "code-taken"
    title = "Short code already taken"


class LinkNotFound(SnipError):
    """No link has this code."""

    kind = "not-found"
    title = "Link not found"


class CodeSpaceExhausted(SnipError):
    """Random codes kept colliding; the code length is too short for the number of links."""

    kind = "code-space-exhausted"
    title = "Could not allocate a short code"


class StorageUnavailable(SnipError):
    """The database cannot be reached now; the caller may retry later."""

    kind = "storage-unavailable"
    title = "Storage unavailable"


class Unauthorized(SnipError):
    """No valid API key was given where one is needed (missing, unknown, revoked or expired)."""

    kind = "unauthorized"
    title = "Authentication required"


class Forbidden(SnipError):
    """The key is valid but lacks the scope or role this action needs."""

    kind = "forbidden"
    title = "Not allowed"


class RateLimited(SnipError):
    """Too many requests from one key or client address; retry after `retry_after` seconds."""

    kind = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, limit: int, remaining: int, reset: int,
                 retry_after: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.retry_after = retry_after


class BlockedURL(SnipError):
    """A URL checker (the domain blocklist, or a plugged-in service) refused the destination."""

    kind = "blocked-url"
    title = "Destination not allowed"
