"""Who is asking: the actor behind a request, its role and scopes. Plain Python.

`Actor.system()` is the CLI and internal jobs (may do everything); `Actor.anonymous()` is a
request without an API key. The accounts service turns an API key into an `Actor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

Role = Literal["admin", "user", "anonymous", "system"]

LINKS_READ: Final = "links:read"
LINKS_WRITE: Final = "links:write"
STATS_READ: Final = "stats:read"
ADMIN: Final = "admin"
SCOPES: Final = (LINKS_READ, LINKS_WRITE, STATS_READ, ADMIN)
ANONYMOUS_NAME: Final = "-"  # the owner of links created without a key


@dataclass(frozen=True, slots=True)
class Actor:
    """The user (by name) a request acts for, with the scopes its key grants."""

    name: str
    role: Role
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "system", frozenset(SCOPES))

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(ANONYMOUS_NAME, "anonymous", frozenset())

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "system") and (self.role == "system" or ADMIN in self.scopes)

    @property
    def is_anonymous(self) -> bool:
        return self.role == "anonymous"

    def can(self, scope: str) -> bool:
        return self.role == "system" or scope in self.scopes or ADMIN in self.scopes

    def sees(self, owner: str) -> bool:
        """May this actor read or change a link owned by `owner`?"""
        return self.is_admin or (not self.is_anonymous and owner == self.name)
