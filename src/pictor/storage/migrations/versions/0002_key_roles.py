"""API keys get a role (existing keys become members: they keep generating and reading) and an expiry.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pictor.storage.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="member"))
        table.add_column(sa.Column("expires", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("expires")
        table.drop_column("role")
