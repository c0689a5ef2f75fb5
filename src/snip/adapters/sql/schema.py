"""The SQL schema, shared by the repository and by Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    text,
)

# Names for constraints, so migrations are the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

Code = String(64).with_variant(String(64, collation="C"), "postgresql")

links = Table(
    "links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Codes are case-sensitive identifiers: PostgreSQL must compare and sort them by code
    # point ("C"), as SQLite does, not by the server's locale (where a, A, b, B interleave).
    Column("code", Code, nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("url_digest", String(64), nullable=False, index=True),
    Column("reuse_key", String(160), nullable=True, unique=True),
    Column("owner", String(64), nullable=False, server_default=text("'-'")),
    Column("title", String(500), nullable=True),
    Column("redirect_status", SmallInteger, nullable=False, server_default=text("302")),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("max_visits", BigInteger, nullable=True),
    Column("visits", BigInteger, nullable=False, server_default=text("0")),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("password_hash", String(255), nullable=True),
    Column("blocked", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_links_created_at", "created_at"),
)

link_tags = Table(
    "link_tags",
    metadata,
    Column(
        "link_id",
        Id,
        ForeignKey("links.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tag", String(50), primary_key=True),
    Index("ix_link_tags_tag", "tag"),
)
