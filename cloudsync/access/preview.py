"""What a full resync is about to do, shown to the staff member before they confirm it.

Tables and rows (the counts planning last recorded, or a count at the source), an estimated duration
from the throughput of earlier finished jobs (rows done / elapsed), the cloud services degraded while
it runs, and whether the venue is trading now (when the trading-hours guard is available).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.context import Context
from cloudsync.control.jobs import Job
from cloudsync.control.schema import jobs, venue_tables
from cloudsync.control.venues import Venue, get_venue, resolve_tables
from cloudsync.errors import CloudSyncError
from cloudsync.sources import open_source

log = logging.getLogger(__name__)

DEGRADED_SERVICES = ("online ordering", "handheld ordering", "cloud back-office analytics", "loyalty integrations")
HISTORY_JOBS = 10


@dataclass(frozen=True)
class TableRows:
    name: str
    rows: int
    counted: bool  # True: counted at the source now; False: as recorded by the last planning


@dataclass(frozen=True)
class ResyncPreview:
    venue: Venue
    tables: list[TableRows]
    rows_per_s: float | None  # None: no earlier finished job to learn from
    trading: bool | None  # None: the trading-hours guard is not available

    @property
    def rows_total(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def estimate_s(self) -> float | None:
        return self.rows_total / self.rows_per_s if self.rows_per_s else None


def past_throughput(control: Engine, venue_id: str) -> float | None:
    """Rows per second of the latest finished jobs: this venue's if it has any, otherwise every venue's."""
    for where in (jobs.c.venue_id == venue_id, sa.true()):
        stmt = (sa.select(jobs).where(where, jobs.c.state == "done", jobs.c.started_at.is_not(None),
                                      jobs.c.finished_at.is_not(None), jobs.c.rows_done > 0)
                .order_by(jobs.c.id.desc()).limit(HISTORY_JOBS))
        with control.connect() as conn:
            done = [Job.from_row(r) for r in conn.execute(stmt)]
        elapsed_s = sum(j.elapsed_s for j in done)
        if done and elapsed_s > 0:
            return sum(j.rows_done for j in done) / elapsed_s
    return None


def trading_now(ctx: Context, venue: Venue) -> bool | None:
    """Whether the venue is in its trading hours, if the trading-hours guard provides the answer."""
    try:
        from cloudsync.guards import trading_now as guard  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return bool(guard(ctx, venue.id))
    except CloudSyncError as err:
        log.warning("venue=%s trading hours unknown: %s", venue.id, err)
        return None


def preview_full_resync(ctx: Context, venue_id: str, tables: list[str] | None = None) -> ResyncPreview:
    venue = get_venue(ctx.control, venue_id)
    names = tables or resolve_tables(venue)[0]
    with ctx.control.connect() as conn:
        recorded = dict(conn.execute(sa.select(venue_tables.c.name, venue_tables.c.row_count).where(
            venue_tables.c.venue_id == venue.id)).all())
    source = open_source(venue.id, venue.source_dsn, venue.source_schema)
    rows = []
    for name in names:
        if recorded.get(name) is not None:
            rows.append(TableRows(name, int(recorded[name]), counted=False))
        else:
            rows.append(TableRows(name, source.count(source.table(name)), counted=True))
    return ResyncPreview(venue, rows, past_throughput(ctx.control, venue.id), trading_now(ctx, venue))
