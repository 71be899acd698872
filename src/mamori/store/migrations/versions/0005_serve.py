"""mamori serve: the checks visitors ask for, and the networks the admin blocked.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "web_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("active_key", sa.String(length=64), nullable=True),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("tcp_ports", sa.JSON(), nullable=False),
        sa.Column("udp_ports", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("owner_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_web_checks_scan_id_scans"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_checks")),
        sa.UniqueConstraint("token", name=op.f("uq_web_checks_token")),
        # One queued or running check per address, across every web process.
        sa.UniqueConstraint("active_key", name=op.f("uq_web_checks_active_key")),
    )
    op.create_index("ix_web_checks_status", "web_checks", ["status"])
    op.create_index("ix_web_checks_peer", "web_checks", ["peer"])
    op.create_index("ix_web_checks_created_at", "web_checks", ["created_at"])
    op.create_index("ix_web_checks_expires_at", "web_checks", ["expires_at"])
    op.create_table(
        "serve_blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serve_blocks")),
        sa.UniqueConstraint("network", name=op.f("uq_serve_blocks_network")),
    )


def downgrade() -> None:
    op.drop_table("serve_blocks")
    op.drop_index("ix_web_checks_expires_at", table_name="web_checks")
    op.drop_index("ix_web_checks_created_at", table_name="web_checks")
    op.drop_index("ix_web_checks_peer", table_name="web_checks")
    op.drop_index("ix_web_checks_status", table_name="web_checks")
    op.drop_table("web_checks")
