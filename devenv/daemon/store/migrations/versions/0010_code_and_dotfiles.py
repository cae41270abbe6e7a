"""workspaces.code: where the project's code came from (an upload, by hash, or the repo); dotfiles: each
person's dotfiles repository

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("code", sa.JSON(), nullable=True))
    op.create_table(
        "dotfiles",
        sa.Column("person", sa.String(128), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("install", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dotfiles")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("code")
