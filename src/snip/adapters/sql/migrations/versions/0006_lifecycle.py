"""link lifecycle: import keys (issue 5)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

links.import_key: set on links that `snip import` created from rows without a code, as
`<owner>:<the first 32 hex digits of the normalised URL's SHA-256>`. It is unique, so a re-run
of the same file inserts nothing twice (INSERT ... ON CONFLICT DO NOTHING); rows with a code are
kept unique by the code itself. NULL for links made any other way (NULLs never clash).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN and CREATE UNIQUE INDEX need no table rebuild on SQLite (no batch mode).
    op.add_column("links", sa.Column("import_key", sa.String(200), nullable=True))
    op.create_index("uq_links_import_key", "links", ["import_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_links_import_key", table_name="links")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("import_key")
