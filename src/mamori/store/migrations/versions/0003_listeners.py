"""The inside view: the sockets listening on the audited machine (``mamori check``).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "listeners",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("proto", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process", sa.Text(), nullable=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("exe", sa.Text(), nullable=True),
        sa.Column("firewall", sa.String(length=16), nullable=True),
        sa.Column("firewall_backend", sa.String(length=32), nullable=False),
        sa.Column("firewall_reason", sa.Text(), nullable=False),
        sa.Column("firewall_rule", sa.Text(), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("probe_address", sa.String(length=128), nullable=True),
        sa.Column("not_probed", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_listeners_scan_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listeners")),
        # Leads with scan_id: also the index for "all listeners of one scan".
        sa.UniqueConstraint(
            "scan_id",
            "proto",
            "address",
            "port",
            name=op.f("uq_listeners_scan_id_proto_address_port"),
        ),
    )


def downgrade() -> None:
    op.drop_table("listeners")
