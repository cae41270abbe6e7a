"""events.owner: the workspace's owner when the event happened, so a member sees only their own

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
    # events recorded before: their workspace's owner now, where it still exists
    op.execute(
        "UPDATE events SET owner = (SELECT workspaces.owner FROM workspaces "
        "WHERE workspaces.name = events.workspace) WHERE workspace IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("owner")
