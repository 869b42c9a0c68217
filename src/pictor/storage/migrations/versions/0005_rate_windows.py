"""Work charged per minute to tenants and keys, for rate limits shared by every process.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("subject", sa.String(48), primary_key=True),
        sa.Column("minute", sa.BigInteger(), primary_key=True),
        sa.Column("work", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
