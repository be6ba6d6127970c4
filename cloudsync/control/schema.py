"""Control-plane tables: the source of truth for venues, jobs, chunks and the audit log.

Redis only carries messages and leases; anything lost there is rebuilt from these rows. The tables are
created and changed by the Alembic migrations in `cloudsync/control/migrations`; the definitions here
are what the engine reads and writes through SQLAlchemy Core.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
JOB_ACTIVE_STATES = ("queued", "planning", "running", "paused", "finishing")
ACTIVE_SQL = "state IN ('queued', 'planning', 'running', 'paused', 'finishing')"

venues = sa.Table(
    "venues",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source_dsn", sa.Text, nullable=False),
    sa.Column("source_schema", sa.String(128)),
    sa.Column("tables", sa.JSON),  # list of table names; NULL means every table with a primary key
    sa.Column("feed", sa.String(32)),  # change feed kind: changelog | cursor | change_tracking
    sa.Column("feed_options", sa.JSON),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("pos_version", sa.String(32)),
    sa.Column("sync_interval_s", sa.Integer, nullable=False, server_default="60"),
    sa.Column("chunk_rows", sa.Integer),  # NULL: the global setting
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

venue_tables = sa.Table(
    "venue_tables",
    metadata,
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("key_columns", sa.JSON, nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),  # [[name, type], ...] as last seen, for drift detection
    sa.Column("row_count", sa.BigInteger),
    sa.Column("last_full_sync_at", sa.DateTime(timezone=True)),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # full | repair
    # queued → planning → running ⇄ paused → finishing → done | failed;  any → cancelled
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("pause_reason", sa.Text),
    sa.Column("requested_by", sa.String(64)),
    sa.Column("options", sa.JSON),
    sa.Column("grant", sa.Text),
    sa.Column("fence_token", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("finisher", sa.String(64)),  # who holds the claim on finishing (migration 0005)
    sa.Column("finish_claimed_at", sa.DateTime(timezone=True)),
    sa.Column("feed_position", sa.JSON),
    sa.Column("rows_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("chunks_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("verification", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_jobs_venue_state", "venue_id", "state"),
    # the database itself refuses a second active resync of a venue, however the race is run
    sa.Index("uq_jobs_one_active_per_venue", "venue_id", unique=True,
             sqlite_where=sa.text(ACTIVE_SQL), postgresql_where=sa.text(ACTIVE_SQL)),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("lo", sa.JSON),  # exclusive lower key bound (encoded); NULL: from the first key
    sa.Column("hi", sa.JSON),  # inclusive upper key bound (encoded); NULL: to the last key
    # pending → running → done | failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rows_est", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_deleted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("fence_token", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("job_id", "table_name", "seq", name="uq_chunks_job_table_seq"),
    sa.Index("ix_chunks_job_state", "job_id", "state"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("staff", sa.String(64)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("venue_id", sa.String(64)),
    sa.Column("job_id", sa.Integer),
    sa.Column("outcome", sa.String(16), nullable=False),  # allowed | refused | error
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.JSON),
    sa.Index("ix_audit_venue_at", "venue_id", "at"),
)

# Every sync of a venue (incremental, full, verify, repair), finished or failed: what `status` reads.
sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # incremental | full | verify | repair
    sa.Column("job_id", sa.Integer),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("rows_applied", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("details", sa.JSON),
    sa.Index("ix_sync_runs_venue_finished", "venue_id", "finished_at"),
)

# Lines of a venue's sync work (job, chunk, worker), kept so `cloudsync logs VENUE` can collect them.
job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("job_id", sa.Integer),
    sa.Column("chunk_id", sa.Integer),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_job_events_venue_at", "venue_id", "at"),
)
