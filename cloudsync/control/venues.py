"""Venues in the control database: registration, lookup and the tables each one syncs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.control.schema import venue_tables, venues
from cloudsync.control.store import Bind, reading, utcnow
from cloudsync.dsn import mask_dsn, parse_dsn
from cloudsync.errors import ConfigError, NoPrimaryKey, TerminalError, UnknownTable, UnknownVenue
from cloudsync.sources import open_source

VENUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Venue:
    id: str
    name: str
    source_dsn: str
    source_schema: str | None
    tables: list[str] | None
    feed: str | None
    feed_options: dict[str, Any]
    timezone: str
    pos_version: str | None
    sync_interval_s: int
    chunk_rows: int | None
    active: bool

    @property
    def masked_dsn(self) -> str:
        return mask_dsn(self.source_dsn)

    @classmethod
    def from_row(cls, row: Any) -> Venue:
        m = row._mapping
        return cls(
            id=m["id"], name=m["name"], source_dsn=m["source_dsn"], source_schema=m["source_schema"],
            tables=m["tables"], feed=m["feed"], feed_options=m["feed_options"] or {}, timezone=m["timezone"],
            pos_version=m["pos_version"], sync_interval_s=m["sync_interval_s"], chunk_rows=m["chunk_rows"],
            active=bool(m["active"]),
        )


def get_venue(control: Bind, venue_id: str) -> Venue:
    with reading(control) as conn:
        row = conn.execute(sa.select(venues).where(venues.c.id == venue_id)).first()
    if row is None:
        raise UnknownVenue(venue_id)
    return Venue.from_row(row)


def list_venues(control: Engine) -> list[Venue]:
    with control.connect() as conn:
        return [Venue.from_row(r) for r in conn.execute(sa.select(venues).order_by(venues.c.id))]


def resolve_tables(venue: Venue) -> tuple[list[str], list[str]]:
    """(tables to sync, tables skipped for lack of a primary key); explicit names are checked hard."""
    source = open_source(venue.id, venue.source_dsn, venue.source_schema)
    if venue.tables:
        known = set(source.table_names())
        for name in venue.tables:
            if name not in known:
                raise UnknownTable(venue.id, name)
            source.table(name)  # raises NoPrimaryKey
        return list(venue.tables), []
    return source.syncable_tables()


def add_venue(
    control: Engine,
    venue_id: str,
    source_dsn: str,
    *,
    name: str | None = None,
    schema: str | None = None,
    tables: list[str] | None = None,
    timezone: str = "UTC",
    pos_version: str | None = None,
    chunk_rows: int | None = None,
    feed: str | None = None,
    replace: bool = False,
) -> tuple[Venue, list[str]]:
    """Register a venue after checking its DSN, connection and tables. Returns it and skipped tables."""
    if not VENUE_ID.match(venue_id):
        raise ConfigError("venue id", f"{venue_id!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    parse_dsn(source_dsn, "s")
    _check_timezone(timezone)
    now = utcnow()
    venue = Venue(venue_id, name or venue_id, source_dsn, schema, tables or None, feed, {}, timezone,
                  pos_version, 60, chunk_rows, True)
    synced, skipped = resolve_tables(venue)
    if not synced:
        raise NoPrimaryKey(venue_id, "(every table)") if skipped else TerminalError(
            f"venue {venue_id}: the source has no tables to sync")
    values: dict[str, Any] = dict(
        id=venue_id, name=venue.name, source_dsn=source_dsn, source_schema=schema, tables=venue.tables,
        feed=feed, feed_options={}, timezone=timezone, pos_version=pos_version, chunk_rows=chunk_rows,
        active=True, updated_at=now,
    )
    with control.begin() as conn:
        exists = conn.execute(sa.select(venues.c.id).where(venues.c.id == venue_id)).first()
        if exists and not replace:
            raise TerminalError(f"venue {venue_id} already exists (use --replace to change it)")
        if exists:
            conn.execute(venues.update().where(venues.c.id == venue_id).values(**values))
        else:
            conn.execute(venues.insert().values(created_at=now, **values))
    return get_venue(control, venue_id), skipped


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"unknown time zone {name!r} (e.g. Australia/Sydney)") from None


def record_table(control: Engine, venue_id: str, name: str, key_columns: list[str],
                 columns: list[list[str]], row_count: int) -> None:
    with control.begin() as conn:
        conn.execute(venue_tables.delete().where(venue_tables.c.venue_id == venue_id, venue_tables.c.name == name))
        conn.execute(venue_tables.insert().values(venue_id=venue_id, name=name, key_columns=key_columns,
                                                  columns=columns, row_count=row_count))


def recorded_columns(control: Engine, venue_id: str, name: str) -> list[str] | None:
    """The column names planning last saw for a venue's table."""
    with control.connect() as conn:
        cols = conn.execute(sa.select(venue_tables.c.columns).where(
            venue_tables.c.venue_id == venue_id, venue_tables.c.name == name)).scalar_one_or_none()
    return None if cols is None else [c[0] for c in cols]
