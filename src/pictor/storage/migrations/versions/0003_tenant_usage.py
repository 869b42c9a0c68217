"""A tenant's usage per UTC day (images and denoising steps), for quotas shared by every process; each image's
stored size (unknown, null, for images stored before).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("images", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("steps", sa.BigInteger(), nullable=False, server_default="0"),
    )
    with op.batch_alter_table("images") as table:
        table.add_column(sa.Column("size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as table:
        table.drop_column("size")
    op.drop_table("tenant_usage")
