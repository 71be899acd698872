"""Check results carry their text in every language and, for `mamori check` findings, the
exposure that graded them: reports render the stored record, never the catalogs.

Rows stored before have NULL in both; reports then fall back to the English columns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable columns: added in place on SQLite and PostgreSQL alike (no table rebuild).
    op.add_column("check_results", sa.Column("texts", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("check_results",
                  sa.Column("exposure", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("check_results") as batch:
        batch.drop_column("exposure")
        batch.drop_column("texts")
