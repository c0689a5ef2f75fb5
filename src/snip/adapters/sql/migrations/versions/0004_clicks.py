"""clicks, link counters and daily rollups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Raw clicks (idempotent by UUIDv7 id), sharded per-link visit counters so hot links do not
serialise writers on one row, and daily rollups that keep stats right after raw clicks are
purged. Visits already counted in links.visits stay there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Code = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("code", Code, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("referrer_host", sa.String(255), nullable=True),
        sa.Column("referrer", sa.String(500), nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        sa.Column("browser", sa.String(64), nullable=True),
        sa.Column("os", sa.String(64), nullable=True),
        sa.Column("device", sa.String(16), nullable=True),
        sa.Column("is_bot", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("bot_reason", sa.String(32), nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_clicks"),
    )
    op.create_index("ix_clicks_code_ts", "clicks", ["code", "ts"])
    op.create_index("ix_clicks_ts", "clicks", ["ts"])
    op.create_table(
        "link_counters",
        sa.Column("code", Code, nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("code", "shard", name="pk_link_counters"),
    )
    op.create_table(
        "click_daily",
        sa.Column("code", Code, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("humans", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("bots", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("code", "day", "dimension", "value", name="pk_click_daily"),
    )
    op.create_index("ix_click_daily_day", "click_daily", ["day"])


def downgrade() -> None:
    op.drop_table("click_daily")
    op.drop_table("link_counters")
    op.drop_table("clicks")
