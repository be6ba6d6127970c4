"""Initial control plane: venues, their tables, jobs, chunks, sync runs, audit log, job events.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "venues",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source_dsn", sa.Text, nullable=False),
        sa.Column("source_schema", sa.String(128)),
        sa.Column("tables", sa.JSON),
        sa.Column("feed", sa.String(32)),
        sa.Column("feed_options", sa.JSON),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("pos_version", sa.String(32)),
        sa.Column("sync_interval_s", sa.Integer, nullable=False, server_default="60"),
        sa.Column("chunk_rows", sa.Integer),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "venue_tables",
        sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("key_columns", sa.JSON, nullable=False),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("last_full_sync_at", TZ),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.Text),
        sa.Column("requested_by", sa.String(64)),
        sa.Column("options", sa.JSON),
        sa.Column("grant", sa.Text),
        sa.Column("fence_token", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("feed_position", sa.JSON),
        sa.Column("rows_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("chunks_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("verification", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_jobs_venue_state", "jobs", ["venue_id", "state"])
    active = sa.text("state IN ('queued', 'planning', 'running', 'paused', 'finishing')")
    op.create_index("uq_jobs_one_active_per_venue", "jobs", ["venue_id"], unique=True,
                    sqlite_where=active, postgresql_where=active)
    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("lo", sa.JSON),
        sa.Column("hi", sa.JSON),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows_est", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_deleted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", TZ),
        sa.Column("fence_token", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("duration_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("job_id", "table_name", "seq", name="uq_chunks_job_table_seq"),
    )
    op.create_index("ix_chunks_job_state", "chunks", ["job_id", "state"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("staff", sa.String(64)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("venue_id", sa.String(64)),
        sa.Column("job_id", sa.Integer),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_audit_venue_at", "audit_log", ["venue_id", "at"])
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("venue_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("rows_applied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_sync_runs_venue_finished", "sync_runs", ["venue_id", "finished_at"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("venue_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("chunk_id", sa.Integer),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_venue_at", "job_events", ["venue_id", "at"])


def downgrade() -> None:
    for name in ("job_events", "sync_runs", "audit_log", "chunks", "jobs", "venue_tables", "venues"):
        op.drop_table(name)
