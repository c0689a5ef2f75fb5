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

# -- clicks (issue 4) ------------------------------------------------------------------------

# One row per recorded click. `id` is a UUIDv7 made when the click happened, so a batch that
# is written twice (a redelivered stream entry, a retried flush) inserts nothing the second time.
# No foreign key to links: clicks outlive a deleted link's row until retention purges them.
clicks = Table(
    "clicks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("code", Code, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("referrer_host", String(255), nullable=True),
    Column("referrer", String(500), nullable=True),
    Column("user_agent", String(500), nullable=True),
    Column("browser", String(64), nullable=True),
    Column("os", String(64), nullable=True),
    Column("device", String(16), nullable=True),  # desktop, mobile, tablet, bot, other
    Column("is_bot", Boolean, nullable=False, server_default=false()),
    Column("bot_reason", String(32), nullable=True),  # user-agent, head, prefetch
    Column("ip", String(45), nullable=True),  # per SNIP_IP_TRACKING: none, /24-/48, or full
    Column("country", String(2), nullable=True),  # ISO 3166 alpha-2, with SNIP_GEOIP_DB
    Index("ix_clicks_code_ts", "code", "ts"),
    Index("ix_clicks_ts", "ts"),
)

# Visit counters for links without a limit, spread over shards so that concurrent writers
# (processes, hosts) do not queue on one hot row. A link's visits = links.visits + sum(clicks).
link_counters = Table(
    "link_counters",
    metadata,
    Column("code", Code, primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("clicks", BigInteger, nullable=False, server_default=text("0")),
)

# Daily rollups, written when raw clicks are purged, so stats stay right after retention.
# dimension: total, referrer, browser, os, device, country; value '' for total.
click_daily = Table(
    "click_daily",
    metadata,
    Column("code", Code, primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("dimension", String(16), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("humans", BigInteger, nullable=False, server_default=text("0")),
    Column("bots", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_click_daily_day", "day"),
)
