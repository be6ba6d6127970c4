"""Guards: venue trading hours and their exceptions, rate limits, declared maintenance windows.

Revision ID: 0002_guards
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_guards"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _venue_fk() -> sa.ForeignKey:
    return sa.ForeignKey("venues.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "venue_hours",
        sa.Column("venue_id", sa.String(64), _venue_fk(), primary_key=True),
        sa.Column("week", sa.Text, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by", sa.String(64)),
    )
    op.create_table(
        "venue_hours_exceptions",
        sa.Column("venue_id", sa.String(64), _venue_fk(), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("hours", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "venue_limits",
        sa.Column("venue_id", sa.String(64), _venue_fk(), primary_key=True),
        sa.Column("trading_rows_per_s", sa.Integer),
        sa.Column("trading_chunks", sa.Integer),
        sa.Column("off_rows_per_s", sa.Integer),
        sa.Column("off_chunks", sa.Integer),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("venue_id", sa.String(64), _venue_fk(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("started_by", sa.String(64)),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ),
        sa.Column("ended_by", sa.String(64)),
    )
    op.create_index("ix_maintenance_venue_open", "maintenance_windows", ["venue_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_maintenance_venue_open", table_name="maintenance_windows")
    for name in ("maintenance_windows", "venue_limits", "venue_hours_exceptions", "venue_hours"):
        op.drop_table(name)
