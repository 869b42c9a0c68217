"""Images can be deleted (by request or by the tenant's retention period): the record stays as a tombstone.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pictor.storage.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as table:
        table.add_column(sa.Column("deleted", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as table:
        table.drop_column("deleted")
