"""Change-feed positions per venue, for incremental sync.

Revision ID: 0004_feeds
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_feeds"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_positions",
        sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("feed", sa.String(32), nullable=False),
        sa.Column("position", sa.JSON, nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feed_positions")
