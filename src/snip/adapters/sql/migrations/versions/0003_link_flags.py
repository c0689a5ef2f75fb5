"""links.password_hash and links.blocked

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

A password-protected link keeps only a hash of its password; a link whose destination a URL
checker (the domain blocklist) refuses is marked blocked and shows a warning page.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("blocked", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("blocked")
        batch.drop_column("password_hash")
