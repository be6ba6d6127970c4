"""Jobs: a claim on finishing, so exactly one finisher verifies and closes a job.

Revision ID: 0005_finish_claim
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_finish_claim"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("finisher", sa.String(64)))
        batch.add_column(sa.Column("finish_claimed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("finish_claimed_at")
        batch.drop_column("finisher")
