"""The blocks `mamori watch --block` made (issue 15): one row per blocked address, with why,
the incident and until when, so that `mamori watch blocked` can list them, `mamori watch
unblock` lift one, and a restarted watch put them back into the nftables sets.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "watch_blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_blocks")),
        sa.UniqueConstraint("address", name=op.f("uq_watch_blocks_address")),
    )


def downgrade() -> None:
    op.drop_table("watch_blocks")
