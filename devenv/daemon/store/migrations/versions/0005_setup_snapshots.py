"""workspaces: what their setup steps found (clone, data, secrets) and what they are pinned to
(a snapshot's commit); snapshots: reproducibility records

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("setup", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pins", sa.JSON(), nullable=True))
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("workspace", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("made_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_hash", sa.String(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
    )
    op.create_index("ix_snapshots_workspace", "snapshots", ["workspace"])
    op.create_index("ix_snapshots_owner", "snapshots", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_owner", table_name="snapshots")
    op.drop_index("ix_snapshots_workspace", table_name="snapshots")
    op.drop_table("snapshots")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("pins")
        batch_op.drop_column("setup")
