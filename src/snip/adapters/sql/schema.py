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
HostKey = String(255).with_variant(String(255, collation="C"), "postgresql")

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
    # Abuse (issue 5): the host with labels reversed, so a domain's links are one index range;
    # and who blocked the link ('blocklist'), so unblocking a domain releases only its own.
    Column("host_key", HostKey, nullable=True, index=True),
    Column("blocked_by", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_links_created_at", "created_at"),
    # Lifecycle (issue 5): `snip import`'s key for rows without a code, so re-runs skip them.
    Column("import_key", String(200), nullable=True),
    Index("uq_links_import_key", "import_key", unique=True),
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

# -- accounts (issue 5) ------------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),  # owns links by this name
    Column("role", String(16), nullable=False),  # admin | user
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# An API key is stored as its SHA-256 digest only; `prefix` (its first characters) names it.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(100), nullable=True),
    Column("scopes", String(200), nullable=False),  # comma-separated
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Who did what to whom: key creation and revocation, user changes, admins' changes to others'
# links. Append-only; `details` is JSON.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(200), nullable=False),
    Column("details", Text, nullable=False, server_default=text("'{}'")),
    Index("ix_audit_log_at", "at"),
)

# -- abuse (issue 5) ---------------------------------------------------------------------------

# The domain blocklist. `source`: setting, file (synced at start from SNIP_BLOCKLIST and
# SNIP_BLOCKLIST_FILE) or admin (API and CLI).
blocked_domains = Table(
    "blocked_domains",
    metadata,
    Column("domain", HostKey, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("added_by", String(64), nullable=False, server_default=text("'-'")),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row (id 1): bumped with every blocklist change; each process polls it to reload its copy.
blocklist_state = Table(
    "blocklist_state",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False, server_default=text("0")),
)

# Reports of abusive links by anyone. `code` is not a foreign key: a report outlives its link.
reports = Table(
    "reports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("code", Code, nullable=False, index=True),
    Column("reason", String(16), nullable=False),  # phishing | malware | spam | other
    Column("comment", String(1000), nullable=True),
    Column("reporter", String(64), nullable=False, server_default=text("'-'")),
    Column("reporter_ip", String(45), nullable=True),  # anonymised (/24, /48)
    Column("status", String(16), nullable=False, server_default=text("'open'")),
    Column("action", String(16), nullable=True),  # dismiss | disable | block-domain
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_reports_status_created_at", "status", "created_at"),
)
