"""links.code sorts by code point on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Codes are case-sensitive identifiers. With the database's default collation, a PostgreSQL
server whose locale is en_US.UTF-8 sorts `order=code` as a, A, b, B where SQLite (and
Python) sort A, B, a, b. The "C" collation compares code points on every server.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("links", "code", type_=sa.String(64, collation="C"),
                        existing_type=sa.String(64), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("links", "code", type_=sa.String(64),
                        existing_type=sa.String(64, collation="C"), existing_nullable=False)
