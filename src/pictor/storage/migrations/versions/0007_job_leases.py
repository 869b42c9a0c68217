"""Jobs are claimed with a lease: the process running a job (`claimed_by`) and until when its claim holds.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pictor.storage.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image_jobs") as table:
        table.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=True))
        table.add_column(sa.Column("lease_expires", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_jobs") as table:
        table.drop_column("lease_expires")
        table.drop_column("claimed_by")
