"""Control-plane tables of the guards: trading hours, their exceptions, limits and maintenance windows.

Created by migration `0002_guards`. A venue without a `venue_hours` row never counts as trading; a
venue without a `venue_limits` row gets the protective defaults in `cloudsync.guards.limits`.
"""

from __future__ import annotations

import sqlalchemy as sa

from cloudsync.control.schema import metadata

venue_hours = sa.Table(
    "venue_hours",
    metadata,
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("week", sa.Text, nullable=False),  # "mon-fri 07:00-23:30; sat 10:00-02:00; sun closed"
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64)),
)

venue_hours_exceptions = sa.Table(
    "venue_hours_exceptions",
    metadata,
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),  # the local date whose own periods this replaces
    sa.Column("hours", sa.Text, nullable=False),  # "closed" or "18:00-03:00" (several: comma-separated)
    sa.Column("note", sa.Text),
)

# NULL in a column means "no limit" for that setting (the table's defaults apply only when no row exists).
venue_limits = sa.Table(
    "venue_limits",
    metadata,
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("trading_rows_per_s", sa.Integer),
    sa.Column("trading_chunks", sa.Integer),
    sa.Column("off_rows_per_s", sa.Integer),
    sa.Column("off_chunks", sa.Integer),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("started_by", sa.String(64)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),  # NULL while the window is open
    sa.Column("ended_by", sa.String(64)),
    sa.Index("ix_maintenance_venue_open", "venue_id", "ended_at"),
)
