"""Control-plane table for incremental sync: where each venue's change feed was last applied up to.

One row per venue. A full resync that finishes writes the position it recorded before reading, so
the next incremental sync re-applies every change made while the resync ran.
"""

from __future__ import annotations

import sqlalchemy as sa

from cloudsync.control.schema import metadata

feed_positions = sa.Table(
    "feed_positions",
    metadata,
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("feed", sa.String(32), nullable=False),  # the feed kind the position belongs to
    sa.Column("position", sa.JSON, nullable=False),
    sa.Column("job_id", sa.Integer),  # the full resync that set it, if one did
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
