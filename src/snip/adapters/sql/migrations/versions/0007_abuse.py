"""domain blocklist and reports (issue 5)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

* links.host_key: the destination host with its labels reversed (com.example.www), indexed,
  so blocking a domain finds it and all its subdomains with one index range instead of
  parsing every stored URL; backfilled here for existing links.
* links.blocked_by: why a link is blocked ('blocklist'), so unblocking a domain releases only
  what the blocklist blocked.
* blocked_domains, blocklist_state (one row: a revision every process polls to reload its
  in-memory copy), reports.
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Code = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
# Compared by code point, so that one range holds a domain's subdomains ("." < "/").
HostKey = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 1000


def _host_key(url: str) -> str | None:
    """A frozen copy of snip.domain.checks.host_key(host_of(url)): migrations never change."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not host:
        return None
    if ":" in host or host.replace(".", "").isdigit():  # IPv6 or IPv4: kept as is
        return host
    return ".".join(reversed(host.split(".")))


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("host_key", HostKey, nullable=True))
        batch.add_column(sa.Column("blocked_by", sa.String(32), nullable=True))
        batch.create_index("ix_links_host_key", ["host_key"])

    links = sa.table("links", sa.column("id", sa.BigInteger), sa.column("url", sa.Text),
                     sa.column("host_key", sa.String))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(links.c.id, links.c.url).where(links.c.id > last)
            .order_by(links.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            sa.update(links).where(links.c.id == sa.bindparam("b_id"))
            .values(host_key=sa.bindparam("b_key")),
            [{"b_id": r.id, "b_key": _host_key(r.url)} for r in rows],
        )
        last = rows[-1].id

    op.create_table(
        "blocked_domains",
        sa.Column("domain", HostKey, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("added_by", sa.String(64), nullable=False, server_default=sa.text("'-'")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", name="pk_blocked_domains"),
    )
    op.create_table(
        "blocklist_state",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist_state"),
    )
    op.execute(sa.text("INSERT INTO blocklist_state (id, revision) VALUES (1, 0)"))
    op.create_table(
        "reports",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("code", Code, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("comment", sa.String(1000), nullable=True),
        sa.Column("reporter", sa.String(64), nullable=False, server_default=sa.text("'-'")),
        sa.Column("reporter_ip", sa.String(45), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'open'")),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
    )
    op.create_index("ix_reports_status_created_at", "reports", ["status", "created_at"])
    op.create_index("ix_reports_code", "reports", ["code"])


def downgrade() -> None:
    op.drop_table("reports")
    op.drop_table("blocklist_state")
    op.drop_table("blocked_domains")
    with op.batch_alter_table("links") as batch:
        batch.drop_index("ix_links_host_key")
        batch.drop_column("blocked_by")
        batch.drop_column("host_key")
