"""Incremental sync: apply a venue's changes since its stored feed position, then move the position on.

    sync_venue              one run: lock, check no full resync is active, read the feed, apply, record
    (sync_venues            the same for a batch of venues: `cloudsync.incremental_batch`)
    apply_changes           changed keys re-read from the source in batches, upserted; missing ones deleted
    position_for_resync     a full resync's starting position, taken before it reads anything
    resume_after_resync     a finished resync hands its position to incremental sync

Applying re-reads current rows, never replays values, so a batch applied twice or out of order
converges to the source's current state. A Redis lock (`cloudsync:incremental:lock:VENUE`) keeps two
runs of one venue apart; the same lock is taken while a resync records its position, so a run that
prunes the feed cannot overtake it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from redis.exceptions import LockError
from redis.lock import Lock

from cloudsync.checksums import normalise
from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.feeds_schema import feed_positions
from cloudsync.control.schema import JOB_ACTIVE_STATES, jobs, sync_runs, venues
from cloudsync.control.store import utcnow
from cloudsync.control.venues import Venue, get_venue, recorded_columns, resolve_tables
from cloudsync.errors import TerminalError, TransientError, UnknownVenue
from cloudsync.feeds import ChangeFeed, Changes, FeedNotReady, Position, open_feed
from cloudsync.keys import Key
from cloudsync.sources import Source, open_source

log = logging.getLogger(__name__)

LOCK_TTL_S = 120  # renewed between batches; a crashed holder frees the venue after this
RESYNC_LOCK_WAIT_S = 60
MAX_ROUNDS = 20  # feed reads per run; a bigger backlog continues in the next run
TABLES_TTL_S = 600.0  # a table added at the venue needs `venue changelog install` again anyway


class NoPosition(TerminalError):
    def __init__(self, venue: str, feed: str) -> None:
        super().__init__(f"venue {venue}: no {feed} position recorded yet: full resync required "
                         f"(`cloudsync resync start {venue}`)", venue=venue, feed=feed)


class IncrementalBusy(TransientError):
    def __init__(self, venue: str) -> None:
        super().__init__(f"venue {venue}: an incremental sync is already running", venue=venue)


@dataclass
class SyncResult:
    venue_id: str
    state: str  # applied | suspended | busy
    changed_keys: int = 0
    rows_upserted: int = 0
    rows_deleted: int = 0
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    duration_s: float = 0.0
    job_id: int | None = None  # the full resync that suspended this run
    error: str | None = None  # state "failed" (a batched run records the error and goes on)
    more: bool = False  # a batched run stopped at its share of keys: the rest needs a run of its own

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def finish(self, started: float) -> None:
        """The run is over (`started` from `time.monotonic()`): its duration and totals."""
        self.duration_s = time.monotonic() - started
        self.changed_keys = sum(t["keys"] for t in self.tables.values())
        self.rows_upserted = sum(t["upserted"] for t in self.tables.values())
        self.rows_deleted = sum(t["deleted"] for t in self.tables.values())

    def log_applied(self) -> None:
        if self.changed_keys:
            log.info("venue=%s incremental sync applied %d keys: %d upserted, %d deleted in %.2fs", self.venue_id,
                     self.changed_keys, self.rows_upserted, self.rows_deleted, self.duration_s)


# -- positions ----------------------------------------------------------------------------------

def get_position(control: sa.Engine, venue_id: str) -> tuple[str, Position] | None:
    with control.connect() as conn:
        row = conn.execute(sa.select(feed_positions.c.feed, feed_positions.c.position)
                           .where(feed_positions.c.venue_id == venue_id)).first()
    return (row.feed, row.position) if row else None


def save_position(control: sa.Engine, venue_id: str, feed: str, position: Position, job_id: int | None = None) -> None:
    values = dict(feed=feed, position=position, job_id=job_id, updated_at=utcnow())
    with control.begin() as conn:
        if not conn.execute(feed_positions.update().where(feed_positions.c.venue_id == venue_id)
                            .values(**values)).rowcount:
            conn.execute(feed_positions.insert().values(venue_id=venue_id, **values))


def clear_position(control: sa.Engine, venue_id: str) -> None:
    with control.begin() as conn:
        conn.execute(feed_positions.delete().where(feed_positions.c.venue_id == venue_id))


# -- feeds ---------------------------------------------------------------------------------------

_tables: dict[tuple[str, str], tuple[float, list[str]]] = {}


def synced_tables(venue: Venue, fresh: bool = False) -> list[str]:
    """The venue's synced tables, cached briefly: idle venues are polled every few seconds."""
    key = (venue.id, repr(venue.tables))
    hit = _tables.get(key)
    if hit and not fresh and time.monotonic() - hit[0] < TABLES_TTL_S:
        return hit[1]
    names, _ = resolve_tables(venue)
    _tables[key] = (time.monotonic(), names)
    return names


def venue_source(venue: Venue) -> Source:
    return open_source(venue.id, venue.source_dsn, venue.source_schema)


def feed_for(venue: Venue, fresh: bool = False) -> ChangeFeed:
    if not venue.feed:
        raise FeedNotReady(venue.id, "change", f"no change feed configured; choose one with "
                           f"`cloudsync venue feed {venue.id} changelog|cursor|change_tracking`")
    return open_feed(venue.feed, venue_source(venue), lambda: synced_tables(venue, fresh), venue.feed_options)


# -- locking -------------------------------------------------------------------------------------

def lock_name(venue_id: str) -> str:
    return f"cloudsync:incremental:lock:{venue_id}"


@contextmanager
def venue_lock(ctx: Context, venue_id: str, wait_s: float = 0) -> Iterator[Lock]:
    """Hold the venue's incremental lock (IncrementalBusy if another holder keeps it past `wait_s`)."""
    lock = ctx.redis.lock(lock_name(venue_id), timeout=LOCK_TTL_S, thread_local=False)
    if not lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s if wait_s > 0 else None):
        raise IncrementalBusy(venue_id)
    try:
        yield lock
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("venue=%s incremental lock expired before release", venue_id)


# -- handoff with full resync --------------------------------------------------------------------

def position_for_resync(ctx: Context, venue_id: str, job_id: int) -> dict[str, Any] | None:
    """The feed position a full resync starts from, recorded before it reads anything.

    Taken under the incremental lock, so a run that started before the resync finishes first (and
    does not prune past it); later runs see the active job and stand aside.
    """
    venue = get_venue(ctx.control, venue_id)
    if not venue.feed:
        return None
    with venue_lock(ctx, venue.id, wait_s=RESYNC_LOCK_WAIT_S):
        try:
            position = feed_for(venue, fresh=True).position()
        except FeedNotReady as err:
            jobrepo.log_event(ctx.control, venue.id, f"no feed position recorded: {err}", job_id=job_id,
                              level="WARNING")
            return None
    log.info("venue=%s job=%s %s position recorded before reading", venue.id, job_id, venue.feed)
    return {"feed": venue.feed, "position": position}


def resume_after_resync(ctx: Context, venue_id: str, job_id: int, recorded: dict[str, Any] | None) -> None:
    """The resync is done: incremental sync continues from the position recorded before it read."""
    if not recorded:
        return
    save_position(ctx.control, venue_id, recorded["feed"], recorded["position"], job_id=job_id)
    jobrepo.log_event(ctx.control, venue_id, "incremental sync resumes from the resync's starting position",
                      job_id=job_id)


# -- applying ------------------------------------------------------------------------------------

def _norm(key: Sequence[Any]) -> tuple[str, ...]:
    return tuple(normalise(v) for v in key)


def apply_changes(ctx: Context, venue: Venue, source: Source, changes: Changes,
                  heartbeat: Callable[[], object] = lambda: None) -> dict[str, dict[str, int]]:
    """Re-read each changed key, upsert the rows found and delete the keys the source no longer has."""
    target = ctx.target
    out: dict[str, dict[str, int]] = {}
    for name, keys in changes.keys.items():
        table = source.table(name)
        if [c.name for c in table.columns] != recorded_columns(ctx.control, venue.id, name):
            source.refresh()
            table = source.table(name)
            target.ensure_table(table)
        cloud = target.cloud_table(table)
        pk_idx = [i for i, c in enumerate(table.columns) if c.primary_key]
        unique = list({_norm(k): k for k in keys}.values())
        batch_keys = max(1, min(ctx.settings.read_batch_rows, 1000 // max(len(pk_idx), 1)))
        stats = out.setdefault(name, {"keys": 0, "upserted": 0, "deleted": 0})
        for i in range(0, len(unique), batch_keys):
            batch: list[Key] = unique[i:i + batch_keys]
            rows = source.read_keys(table, batch)
            found = {_norm([row[j] for j in pk_idx]) for row in rows}
            stats["upserted"] += target.upsert_rows(cloud, venue.id, rows)
            stats["deleted"] += target.delete_keys(cloud, venue.id, [k for k in batch if _norm(k) not in found])
            stats["keys"] += len(batch)
            heartbeat()
    return out


Loaded = tuple[Venue, int | None, tuple[str, Position] | None]


def _load_statement() -> sa.Select[Any]:
    active = (sa.select(jobs.c.venue_id, sa.func.max(jobs.c.id).label("job_id"))
              .where(jobs.c.venue_id.in_(sa.bindparam("ids", expanding=True)),
                     jobs.c.state.in_(JOB_ACTIVE_STATES))
              .group_by(jobs.c.venue_id).subquery("active"))
    return (sa.select(venues, feed_positions.c.feed.label("cs_feed"),
                      feed_positions.c.position.label("cs_position"), active.c.job_id.label("cs_job_id"))
            .select_from(venues.outerjoin(feed_positions, feed_positions.c.venue_id == venues.c.id)
                         .outerjoin(active, active.c.venue_id == venues.c.id))
            .where(venues.c.id.in_(sa.bindparam("ids", expanding=True))))


# built once: its cache key is memoized, so an idle venue's control read costs no SQL compilation
_LOAD = _load_statement()


def load_venues(ctx: Context, venue_ids: Sequence[str]) -> dict[str, Loaded]:
    """Each venue, its active job's id and its stored position, in one round trip for all of them
    (an idle venue is polled every interval, so this read is most of what it costs)."""
    if not venue_ids:
        return {}
    with ctx.control.connect() as conn:
        rows = conn.execute(_LOAD, {"ids": list(venue_ids)}).all()
    out: dict[str, Loaded] = {}
    for row in rows:
        m = row._mapping
        stored = (m["cs_feed"], m["cs_position"]) if m["cs_feed"] is not None else None
        out[m["id"]] = (Venue.from_row(row), m["cs_job_id"], stored)
    return out


def _load(ctx: Context, venue_id: str) -> Loaded:
    loaded = load_venues(ctx, [venue_id]).get(venue_id)
    if loaded is None:
        raise UnknownVenue(venue_id)
    return loaded


def sync_venue(ctx: Context, venue_id: str, *, wait_s: float = 0, limit_keys: int = 50_000) -> SyncResult:
    """One incremental sync of a venue; every run that reads the feed is recorded in `sync_runs`."""
    try:
        with venue_lock(ctx, venue_id, wait_s) as lock:
            venue, job_id, stored = _load(ctx, venue_id)
            if job_id is not None:
                log.info("venue=%s incremental sync suspended: job=%s is active", venue.id, job_id)
                return SyncResult(venue.id, "suspended", job_id=job_id)
            return _run(ctx, venue, stored, lock, limit_keys)
    except IncrementalBusy:
        log.info("venue=%s incremental sync skipped: another one is running", venue_id)
        return SyncResult(venue_id, "busy")


def open_at(venue: Venue, stored: tuple[str, Position] | None) -> tuple[ChangeFeed, Position]:
    """The venue's feed and the stored position to read from (NoPosition before a full resync)."""
    feed = feed_for(venue)
    if stored is None or stored[0] != feed.kind:
        raise NoPosition(venue.id, feed.kind)
    return feed, stored[1]


def apply_round(ctx: Context, venue: Venue, feed: ChangeFeed, position: Position, changes: Changes,
                lock: Lock, result: SyncResult) -> Position:
    """Apply one feed read, then move the stored position on (and let the feed prune behind it)."""
    applied = apply_changes(ctx, venue, feed.source, changes, heartbeat=lock.reacquire)
    for name, stats in applied.items():
        total = result.tables.setdefault(name, {"keys": 0, "upserted": 0, "deleted": 0})
        for k, v in stats.items():
            total[k] += v
    if changes.position != position:
        save_position(ctx.control, venue.id, feed.kind, changes.position)
        if changes.count:
            feed.acknowledge(changes.position)
    return changes.position


def _run(ctx: Context, venue: Venue, stored: tuple[str, Position] | None, lock: Lock, limit_keys: int) -> SyncResult:
    started_at, started = utcnow(), time.monotonic()
    result = SyncResult(venue.id, "applied")
    try:
        feed, position = open_at(venue, stored)
        for _ in range(MAX_ROUNDS):
            changes = feed.changes_since(position, limit_keys)
            position = apply_round(ctx, venue, feed, position, changes, lock, result)
            if not changes.more:
                break
            lock.reacquire()
    except Exception as err:
        result.finish(started)
        record_runs(ctx, [run_row(result, started_at, err)])
        log.error("venue=%s incremental sync failed: %s", venue.id, err)
        raise
    result.finish(started)
    record_runs(ctx, [run_row(result, started_at)])
    result.log_applied()
    return result


def run_row(result: SyncResult, started_at: Any, err: BaseException | None = None) -> dict[str, Any]:
    """The `sync_runs` row of a finished run (what `cloudsync status` shows)."""
    details: dict[str, Any] = {"tables": result.tables}
    if err is None:
        details["changed_keys"] = result.changed_keys
    return dict(venue_id=result.venue_id, kind="incremental", job_id=None, started_at=started_at,
                finished_at=utcnow(), ok=err is None, rows_applied=result.rows_upserted + result.rows_deleted,
                error=None if err is None else str(err), details=details)


def record_runs(ctx: Context, rows: list[dict[str, Any]]) -> None:
    """Record finished runs in `sync_runs`: one executemany for a whole batch."""
    if rows:
        with ctx.control.begin() as conn:
            conn.execute(sync_runs.insert(), rows)


# -- configuration -------------------------------------------------------------------------------

def configure_feed(ctx: Context, venue_id: str, kind: str, options: dict[str, Any] | None = None,
                   interval_s: int | None = None) -> Venue:
    """Choose the venue's change feed (checked before it is saved). A different feed kind forgets the
    stored position: the next full resync starts the new feed's."""
    venue = get_venue(ctx.control, venue_id)
    if interval_s is not None and interval_s < 1:
        raise TerminalError(f"venue {venue_id}: sync interval must be at least 1 s, got {interval_s}")
    feed = open_feed(kind, venue_source(venue), synced_tables(venue, fresh=True), options)
    feed.check()
    values: dict[str, Any] = dict(feed=kind, feed_options=dict(options or {}), updated_at=utcnow())
    if interval_s is not None:
        values["sync_interval_s"] = interval_s
    with ctx.control.begin() as conn:
        conn.execute(venues.update().where(venues.c.id == venue.id).values(**values))
    stored = get_position(ctx.control, venue.id)
    if stored is not None and (stored[0] != kind or (options or {}) != venue.feed_options):
        clear_position(ctx.control, venue.id)
    jobrepo.log_event(ctx.control, venue.id, f"change feed set to {kind} {options or ''}".strip())
    return get_venue(ctx.control, venue.id)


def install_changelog(ctx: Context, venue_id: str) -> list[str]:
    """Install the changelog table and triggers at the venue. Returns the tables it captures."""
    venue = get_venue(ctx.control, venue_id)
    tables = synced_tables(venue, fresh=True)
    open_feed("changelog", venue_source(venue), tables, venue.feed_options).install()
    jobrepo.log_event(ctx.control, venue.id, f"changelog installed on {len(tables)} tables")
    return tables


def remove_changelog(ctx: Context, venue_id: str) -> None:
    """Drop the changelog triggers and table; a changelog position is forgotten with them."""
    venue = get_venue(ctx.control, venue_id)
    open_feed("changelog", venue_source(venue), synced_tables(venue, fresh=True), venue.feed_options).remove()
    stored = get_position(ctx.control, venue.id)
    if stored is not None and stored[0] == "changelog":
        clear_position(ctx.control, venue.id)
    jobrepo.log_event(ctx.control, venue.id, "changelog removed")
