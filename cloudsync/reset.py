"""`cloudsync reset VENUE`: clear a venue's sync state so its next full resync rebuilds it from scratch.

Cleared: the venue's change-feed positions (its rows in `feed_positions`/`feeds`, where they exist), the
chunk checkpoints of its jobs (a failed or cancelled job resumed afterwards plans again), and the
tables recorded for it (`venue_tables`, so drift detection starts afresh). With `purge`, its rows in
every cloud table are deleted too. Refused while a job of the venue is active: the running resync
would write over the reset. Job and run history stays, for the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa

from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks, jobs, venue_tables
from cloudsync.control.store import utcnow
from cloudsync.control.venues import get_venue
from cloudsync.errors import TerminalError
from cloudsync.services_state import publish as publish_services
from cloudsync.targets.base import VENUE_COLUMN

log = logging.getLogger(__name__)

# control tables holding a venue's change-feed positions (created by the incremental-sync migrations;
# whichever exist are cleared)
FEED_TABLES = ("feed_positions", "feeds")


class ResetRefused(TerminalError):
    def __init__(self, venue: str, job_id: int, state: str) -> None:
        super().__init__(f"venue {venue}: job {job_id} is {state}; cancel it (cloudsync resync cancel {job_id}) "
                         "before resetting", venue=venue, job_id=job_id, state=state)


@dataclass
class ResetResult:
    venue_id: str
    feed_rows: int = 0
    chunks: int = 0
    jobs: int = 0
    tables: int = 0
    cloud_rows: dict[str, int] = field(default_factory=dict)


def reset_venue(ctx: Context, venue_id: str, *, purge: bool = False, by: str | None = None) -> ResetResult:
    """Clear the venue's sync state (and with `purge` its cloud rows); refused while it has an active job."""
    venue = get_venue(ctx.control, venue_id)
    running = jobrepo.active_job(ctx.control, venue.id)
    if running is not None:
        raise ResetRefused(venue.id, running.id, running.state)
    result = ResetResult(venue.id)
    with ctx.control.begin() as conn:
        for name in FEED_TABLES:
            result.feed_rows += _clear_feed_table(conn, name, venue.id)
        job_ids = [int(i) for i in conn.execute(sa.select(jobs.c.id).where(jobs.c.venue_id == venue.id)).scalars()]
        if job_ids:
            result.chunks = conn.execute(chunks.delete().where(chunks.c.job_id.in_(job_ids))).rowcount or 0
            # unfinished jobs lose their checkpoints: resuming one plans it again from nothing
            result.jobs = conn.execute(jobs.update().where(
                jobs.c.id.in_(job_ids), jobs.c.state.in_(("failed", "cancelled"))
            ).values(chunks_total=0, chunks_done=0, rows_total=0, rows_done=0, feed_position=None,
                     updated_at=utcnow())).rowcount or 0
        result.tables = conn.execute(venue_tables.delete().where(venue_tables.c.venue_id == venue.id)).rowcount or 0
    if purge:
        result.cloud_rows = purge_cloud_rows(ctx, venue.id)
    purged = f", {sum(result.cloud_rows.values())} cloud rows purged" if purge else ""
    jobrepo.log_event(ctx.control, venue.id, f"sync state reset by {by or 'operator'}: {result.feed_rows} feed "
                      f"positions, {result.chunks} chunk checkpoints, {result.tables} tables{purged}",
                      level="WARNING")
    log.warning("venue=%s sync state reset by %s%s", venue.id, by or "operator", purged)
    publish_services(ctx, venue.id)
    return result


def _clear_feed_table(conn: sa.Connection, name: str, venue_id: str) -> int:
    if not sa.inspect(conn).has_table(name):
        return 0
    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
    if "venue_id" not in table.c:
        return 0
    return conn.execute(table.delete().where(table.c.venue_id == venue_id)).rowcount or 0


def purge_cloud_rows(ctx: Context, venue_id: str) -> dict[str, int]:
    """Delete the venue's rows from every cloud table (every table keyed by `venue_id`)."""
    target = ctx.target
    counts: dict[str, int] = {}
    names = sa.inspect(target.engine).get_table_names(schema=target.schema)
    for name in sorted(names):
        table = sa.Table(name, sa.MetaData(schema=target.schema), autoload_with=target.engine)
        if VENUE_COLUMN not in table.primary_key.columns.keys():
            continue
        counts[name] = target.purge_venue(table, venue_id)
    return counts
