"""Everything one chunk needs from the control database, read in one connection checkout.

A chunk used to ask for its job, chunk, venue, maintenance window, trading hours, limits and recorded
columns one query (and one pooled checkout with its ping) at a time: a dozen round trips before a
row moved. Here it is one join for the single-valued facts, and a second statement for the venue's
dated exceptions only when it has any. Nothing is cached: every chunk still sees the world as it is when it starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudsync.control.guards_schema import maintenance_windows, venue_hours, venue_hours_exceptions, venue_limits
from cloudsync.control.jobs import Chunk, Job
from cloudsync.control.schema import chunks, jobs, venue_tables, venues
from cloudsync.control.store import reading
from cloudsync.control.venues import Venue
from cloudsync.errors import UnknownJob
from cloudsync.guards.rules import (
    Limits,
    MaintenanceWindow,
    exceptions_by_day,
    limits_from_mapping,
    window_from_mapping,
)
from cloudsync.guards.trading_hours import Schedule, parse_schedule


@dataclass(frozen=True)
class ChunkRun:
    job: Job
    chunk: Chunk
    venue: Venue
    window: MaintenanceWindow | None  # the venue's open maintenance window
    schedule: Schedule | None  # None: no trading hours (never counts as trading)
    limits: Limits
    columns: list[str] | None  # the chunk's table's column names as planning last saw them


class _Part:
    """One table's columns out of a joined row, shaped like a row for the `from_row` constructors."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping


def _fields(m: Any, table: sa.Table, prefix: str) -> dict[str, Any]:
    """One table's columns out of a joined row, by their own names."""
    return {c.name: m[f"{prefix}{c.name}"] for c in table.columns}


def _part(m: Any, table: sa.Table, prefix: str) -> _Part:
    return _Part(_fields(m, table, prefix))


def _labelled(table: sa.FromClause, prefix: str) -> list[sa.Label[Any]]:
    return [c.label(f"{prefix}{c.name}") for c in table.columns]


@functools.cache
def _statement() -> sa.Select[Any]:
    """Built once per process: constructing this join costs more than running it."""
    open_window = (sa.select(sa.func.min(maintenance_windows.c.id))
                   .where(maintenance_windows.c.venue_id == venues.c.id, maintenance_windows.c.ended_at.is_(None))
                   .scalar_subquery())
    mw = maintenance_windows.alias("mw")
    return (sa.select(*_labelled(jobs, "j_"), *_labelled(chunks, "c_"), *_labelled(venues, "v_"),
                      *_labelled(mw, "w_"), venue_hours.c.week.label("h_week"),
                      *_labelled(venue_limits, "l_"), venue_tables.c.columns.label("t_columns"),
                      sa.exists().where(venue_hours_exceptions.c.venue_id == venues.c.id).label("x_dated"))
            .select_from(jobs.join(chunks, chunks.c.job_id == jobs.c.id)
                         .join(venues, venues.c.id == jobs.c.venue_id)
                         .outerjoin(mw, mw.c.id == open_window)
                         .outerjoin(venue_hours, venue_hours.c.venue_id == venues.c.id)
                         .outerjoin(venue_limits, venue_limits.c.venue_id == venues.c.id)
                         .outerjoin(venue_tables, sa.and_(venue_tables.c.venue_id == venues.c.id,
                                                          venue_tables.c.name == chunks.c.table_name)))
            .where(jobs.c.id == sa.bindparam("job_id"), chunks.c.id == sa.bindparam("chunk_id")))


_EXCEPTIONS = (sa.select(venue_hours_exceptions.c.day, venue_hours_exceptions.c.hours)
               .where(venue_hours_exceptions.c.venue_id == sa.bindparam("venue_id"))
               .order_by(venue_hours_exceptions.c.day))


def load(control: Engine | Connection, job_id: int, chunk_id: int) -> ChunkRun:
    """The chunk's run state (UnknownJob if the job or the chunk is gone); `control` may be the chunk's
    session (`cloudsync.control.store.chunk_session`)."""
    with reading(control) as conn:
        row = conn.execute(_statement(), {"job_id": job_id, "chunk_id": chunk_id}).first()
        if row is None:
            raise UnknownJob(f"job {job_id} chunk {chunk_id}")
        m = row._mapping
        exceptions = conn.execute(_EXCEPTIONS, {"venue_id": m["v_id"]}).all() if m["x_dated"] else []
    days = exceptions_by_day(exceptions)
    week = m["h_week"]
    limits = limits_from_mapping(_fields(m, venue_limits, "l_")) if m["l_venue_id"] is not None else Limits()
    columns = m["t_columns"]
    return ChunkRun(
        job=Job.from_row(_part(m, jobs, "j_")),
        chunk=Chunk.from_row(_part(m, chunks, "c_")),
        venue=Venue.from_row(_part(m, venues, "v_")),
        window=window_from_mapping(_fields(m, maintenance_windows, "w_")) if m["w_id"] is not None else None,
        schedule=parse_schedule(week, days) if week is not None or days else None,
        limits=limits,
        columns=None if columns is None else [c[0] for c in columns],
    )
