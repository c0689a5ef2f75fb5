"""links and link_tags

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_digest", sa.String(64), nullable=False),
        sa.Column("reuse_key", sa.String(160), nullable=True),
        sa.Column("owner", sa.String(64), nullable=False, server_default=sa.text("'-'")),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("redirect_status", sa.SmallInteger(), nullable=False,
                  server_default=sa.text("302")),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_visits", sa.BigInteger(), nullable=True),
        sa.Column("visits", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        sa.UniqueConstraint("code", name="uq_links_code"),
        sa.UniqueConstraint("reuse_key", name="uq_links_reuse_key"),
    )
    op.create_index("ix_links_url_digest", "links", ["url_digest"])
    op.create_index("ix_links_created_at", "links", ["created_at"])
    op.create_table(
        "link_tags",
        sa.Column("link_id", Id, nullable=False),
        sa.Column("tag", sa.String(50), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["links.id"], ondelete="CASCADE",
                                name="fk_link_tags_link_id_links"),
        sa.PrimaryKeyConstraint("link_id", "tag", name="pk_link_tags"),
    )
    op.create_index("ix_link_tags_tag", "link_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_link_tags_tag", table_name="link_tags")
    op.drop_table("link_tags")
    op.drop_index("ix_links_created_at", table_name="links")
    op.drop_index("ix_links_url_digest", table_name="links")
    op.drop_table("links")
