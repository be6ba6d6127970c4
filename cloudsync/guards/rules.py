"""Each venue's guard rules in the control database: trading hours, limits and maintenance windows.

The control database is the source of truth; every worker reads the rules when a chunk runs, so a
change made from the CLI applies from the next chunk on every machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.control.guards_schema import maintenance_windows, venue_hours, venue_hours_exceptions, venue_limits
from cloudsync.control.store import as_utc, utcnow
from cloudsync.control.venues import get_venue
from cloudsync.guards.errors import BadLimit
from cloudsync.guards.trading_hours import Schedule, parse_date, parse_periods, parse_schedule, parse_week

# Protective defaults: while a venue trades, a resync reads gently and one chunk at a time;
# outside trading hours it runs at full speed (None: no limit).
DEFAULT_TRADING_ROWS_PER_S = 500
DEFAULT_TRADING_CHUNKS = 1
DEFAULT_OFF_ROWS_PER_S: int | None = None
DEFAULT_OFF_CHUNKS: int | None = None


@dataclass(frozen=True)
class Limits:
    """Rows per second and concurrent chunks, for trading hours and outside them (None: unlimited)."""

    trading_rows_per_s: int | None = DEFAULT_TRADING_ROWS_PER_S
    trading_chunks: int | None = DEFAULT_TRADING_CHUNKS
    off_rows_per_s: int | None = DEFAULT_OFF_ROWS_PER_S
    off_chunks: int | None = DEFAULT_OFF_CHUNKS
    configured: bool = False

    def for_mode(self, trading: bool) -> tuple[int | None, int | None]:
        """(rows per second, concurrent chunks) that apply now."""
        if trading:
            return self.trading_rows_per_s, self.trading_chunks
        return self.off_rows_per_s, self.off_chunks


@dataclass(frozen=True)
class MaintenanceWindow:
    id: int
    venue_id: str
    reason: str
    started_by: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None


# -- trading hours ----------------------------------------------------------------------------------

def set_week(control: Engine, venue_id: str, text: str, by: str | None = None) -> Schedule:
    """Store a venue's weekly schedule after parsing it (BadHours names what is wrong)."""
    get_venue(control, venue_id)
    parse_week(text)
    now = utcnow()
    with control.begin() as conn:
        conn.execute(venue_hours.delete().where(venue_hours.c.venue_id == venue_id))
        conn.execute(venue_hours.insert().values(venue_id=venue_id, week=text.strip(), updated_at=now,
                                                 updated_by=by))
    schedule = load_schedule(control, venue_id)
    assert schedule is not None
    return schedule


def set_exception(control: Engine, venue_id: str, day_text: str, hours_text: str, note: str | None = None) -> None:
    """`2026-12-25` `closed` or `18:00-03:00`: that local date's own periods are replaced."""
    get_venue(control, venue_id)
    day = parse_date(day_text)
    parse_periods(hours_text)
    with control.begin() as conn:
        conn.execute(venue_hours_exceptions.delete().where(venue_hours_exceptions.c.venue_id == venue_id,
                                                           venue_hours_exceptions.c.day == day))
        conn.execute(venue_hours_exceptions.insert().values(venue_id=venue_id, day=day,
                                                            hours=hours_text.strip().lower(), note=note))


def clear_exception(control: Engine, venue_id: str, day_text: str) -> bool:
    day = parse_date(day_text)
    with control.begin() as conn:
        return bool(conn.execute(venue_hours_exceptions.delete().where(
            venue_hours_exceptions.c.venue_id == venue_id, venue_hours_exceptions.c.day == day)).rowcount)


def clear_hours(control: Engine, venue_id: str) -> None:
    with control.begin() as conn:
        conn.execute(venue_hours.delete().where(venue_hours.c.venue_id == venue_id))


def hours_text(control: Engine, venue_id: str) -> tuple[str | None, dict[str, str]]:
    """(weekly text or None, {YYYY-MM-DD: hours}) as stored."""
    with control.connect() as conn:
        week = conn.execute(sa.select(venue_hours.c.week).where(venue_hours.c.venue_id == venue_id)).scalar()
        rows = conn.execute(sa.select(venue_hours_exceptions.c.day, venue_hours_exceptions.c.hours)
                            .where(venue_hours_exceptions.c.venue_id == venue_id)
                            .order_by(venue_hours_exceptions.c.day)).all()
    return week, exceptions_by_day(rows)


def exceptions_by_day(rows: Iterable[Any]) -> dict[str, str]:
    """Stored (day, hours) exception rows as {YYYY-MM-DD: hours}."""
    return {_date(day).isoformat(): hours for day, hours in rows}


def load_schedule(control: Engine, venue_id: str) -> Schedule | None:
    """The venue's schedule, or None when it has no hours (such a venue never counts as trading)."""
    week, exceptions = hours_text(control, venue_id)
    if week is None and not exceptions:
        return None
    return parse_schedule(week, exceptions)


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


# -- limits -----------------------------------------------------------------------------------------

def get_limits(control: Engine, venue_id: str) -> Limits:
    with control.connect() as conn:
        row = conn.execute(sa.select(venue_limits).where(venue_limits.c.venue_id == venue_id)).first()
    return limits_from_mapping(row._mapping) if row is not None else Limits()


def limits_from_mapping(m: Mapping[Any, Any]) -> Limits:
    """A stored `venue_limits` row as Limits."""
    return Limits(m["trading_rows_per_s"], m["trading_chunks"], m["off_rows_per_s"], m["off_chunks"], True)



def set_limits(control: Engine, venue_id: str, **changes: int | None) -> Limits:
    """Change some limits (None: unlimited); the others keep their current (or default) values."""
    get_venue(control, venue_id)
    current = get_limits(control, venue_id)
    values = {name: getattr(current, name) for name in
              ("trading_rows_per_s", "trading_chunks", "off_rows_per_s", "off_chunks")}
    for name, value in changes.items():
        if name not in values:
            raise BadLimit(name, "unknown limit")
        if value is not None and value < 1:
            raise BadLimit(name, f"must be at least 1 (or unlimited), got {value}")
        values[name] = value
    with control.begin() as conn:
        conn.execute(venue_limits.delete().where(venue_limits.c.venue_id == venue_id))
        conn.execute(venue_limits.insert().values(venue_id=venue_id, updated_at=utcnow(), **values))
    return get_limits(control, venue_id)


# -- maintenance windows ----------------------------------------------------------------------------

def start_maintenance(control: Engine, venue_id: str, reason: str, by: str | None = None) -> MaintenanceWindow:
    """Open a declared maintenance window (an open one is returned as it is)."""
    get_venue(control, venue_id)
    if not reason.strip():
        raise BadLimit("reason", "say why (e.g. --reason 'weekly index rebuild')")
    existing = open_window(control, venue_id)
    if existing:
        return existing
    with control.begin() as conn:
        conn.execute(maintenance_windows.insert().values(venue_id=venue_id, reason=reason.strip(), started_by=by,
                                                         started_at=utcnow()))
    window = open_window(control, venue_id)
    assert window is not None
    return window


def stop_maintenance(control: Engine, venue_id: str, by: str | None = None) -> MaintenanceWindow | None:
    """Close the venue's open window; None when there was none."""
    get_venue(control, venue_id)
    window = open_window(control, venue_id)
    if window is None:
        return None
    with control.begin() as conn:
        conn.execute(maintenance_windows.update().where(maintenance_windows.c.id == window.id)
                     .values(ended_at=utcnow(), ended_by=by))
    return window


def open_window(control: Engine, venue_id: str) -> MaintenanceWindow | None:
    with control.connect() as conn:
        row = conn.execute(sa.select(maintenance_windows).where(
            maintenance_windows.c.venue_id == venue_id, maintenance_windows.c.ended_at.is_(None))
            .order_by(maintenance_windows.c.id)).first()
    return _window(row) if row else None


def list_windows(control: Engine, venue_id: str | None = None, open_only: bool = False,
                 limit: int = 50) -> list[MaintenanceWindow]:
    stmt = sa.select(maintenance_windows).order_by(maintenance_windows.c.id.desc()).limit(limit)
    if venue_id:
        stmt = stmt.where(maintenance_windows.c.venue_id == venue_id)
    if open_only:
        stmt = stmt.where(maintenance_windows.c.ended_at.is_(None))
    with control.connect() as conn:
        return [_window(r) for r in conn.execute(stmt)]


def _window(row: sa.Row) -> MaintenanceWindow:  # type: ignore[type-arg]
    return window_from_mapping(row._mapping)


def window_from_mapping(m: Mapping[Any, Any]) -> MaintenanceWindow:
    started = as_utc(m["started_at"])
    assert started is not None
    return MaintenanceWindow(m["id"], m["venue_id"], m["reason"], m["started_by"], started, as_utc(m["ended_at"]))
