"""Incremental sync of a batch of venues in one call: what the dispatcher sends instead of one
message per venue, because an idle venue's sync costs less than Celery's handling of a message.

    sync_venues     every venue of the batch synced with `sync_venue`'s guarantees (its own lock, never
                    during its full resync, its runs recorded), with the per-venue round trips shared:
                    one Redis round trip locks them all, one control query loads them, one insert
                    records the idle ones' runs; an idle venue then costs one feed read
    slow_venues     venues lately slow in a batch, which the dispatcher sends on their own

The locks are the ones `incremental.venue_lock` takes (same key, a token value, `SET NX PX`), so a
batch, a single-venue run and a full resync recording its position keep each other out.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.lock import Lock

from cloudsync import incremental as inc
from cloudsync.context import Context
from cloudsync.control.store import utcnow
from cloudsync.control.venues import Venue
from cloudsync.errors import UnknownVenue
from cloudsync.feeds import ChangeFeed, Changes, Position
from cloudsync.incremental import SyncResult, lock_name, save_position

log = logging.getLogger(__name__)

BATCH_ROUND_KEYS = 10_000  # keys a venue may apply inside a batch; a bigger backlog continues on its own
SLOW_VENUE_S = 2.0  # a venue whose run in a batch took longer is dispatched on its own from then on
SLOW_KEY = "cloudsync:incremental:slow"  # sorted set: venue id → when its last batched run was slow
SLOW_FORGET_S = 3600  # a slow venue is tried in a batch again after this long


# Release the locks still holding this batch's token (one round trip for the whole batch).
_RELEASE_MANY = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); n = n + 1 end
end
return n
"""


def _lock_many(ctx: Context, venue_ids: Sequence[str]) -> tuple[bytes, list[str]]:
    """Take the incremental locks of many venues in one round trip (`SET NX PX` each, the same key
    and value format as `venue_lock`). Returns the batch's token and the venues it holds."""
    token = uuid.uuid4().hex.encode()
    with ctx.redis.pipeline(transaction=False) as pipe:
        for venue_id in venue_ids:
            pipe.set(lock_name(venue_id), token, nx=True, px=inc.LOCK_TTL_S * 1000)
        taken = pipe.execute()
    return token, [v for v, ok in zip(venue_ids, taken, strict=True) if ok]


def _release_many(ctx: Context, token: bytes, venue_ids: Sequence[str]) -> None:
    if not venue_ids:
        return
    released = int(ctx.redis.eval(_RELEASE_MANY, len(venue_ids), *map(lock_name, venue_ids), token))
    if released < len(venue_ids):
        log.warning("venues=%s: %d incremental lock(s) expired before release", ",".join(venue_ids[:10]),
                    len(venue_ids) - released)


def _held_lock(ctx: Context, venue_id: str, token: bytes) -> Lock:
    """A `Lock` handle on a lock `_lock_many` took, for renewing it while changes are applied."""
    lock = ctx.redis.lock(lock_name(venue_id), timeout=inc.LOCK_TTL_S, thread_local=False)
    lock.local.token = token
    return lock


@dataclass
class _Pending:
    """A venue of a batch whose first feed read found changes: applied once every idle venue is done."""

    venue: Venue
    feed: ChangeFeed
    position: Position
    changes: Changes
    started_at: Any
    started: float
    read_s: float
    result: SyncResult


def sync_venues(ctx: Context, venue_ids: Sequence[str], *, limit_keys: int = BATCH_ROUND_KEYS) -> list[SyncResult]:
    """Incremental sync of a batch of venues, with the same guarantees as `sync_venue` for each one.

    One Redis round trip takes every venue's lock (a venue whose lock is held is "busy"), one control
    query loads them, their positions and active resyncs (such a venue is "suspended"), and each
    venue's feed is read once. Idle venues are recorded (one insert) and unlocked before any change
    is applied, so a venue with changes never holds idle ones up. Each venue with changes then gets
    one round of at most `limit_keys` keys here; a bigger backlog comes back with `more=True`, for
    the caller to continue in a run of its own. A failing venue is recorded as failed (its error
    in `sync_runs`, like `sync_venue`) and the others carry on.
    """
    ids = list(dict.fromkeys(venue_ids))
    token, held = _lock_many(ctx, ids)
    results = {v: SyncResult(v, "busy") for v in ids}
    own_s: dict[str, float] = {}  # each venue's own time (not its wait for others): slow ones go alone
    unlocked: set[str] = set()
    try:
        loaded = inc.load_venues(ctx, held)
        rows: list[dict[str, Any]] = []
        pending: list[_Pending] = []
        for venue_id in held:
            if venue_id not in loaded:
                results[venue_id] = SyncResult(venue_id, "failed", error=str(UnknownVenue(venue_id)))
                continue
            venue, job_id, stored = loaded[venue_id]
            if job_id is not None:
                log.info("venue=%s incremental sync suspended: job=%s is active", venue.id, job_id)
                results[venue_id] = SyncResult(venue.id, "suspended", job_id=job_id)
                continue
            item = _read_first(ctx, venue, stored, limit_keys, rows)
            if isinstance(item, _Pending):
                pending.append(item)
            else:
                results[venue_id], own_s[venue_id] = item, item.duration_s
        inc.record_runs(ctx, rows)
        idle = [v for v in held if v not in {p.venue.id for p in pending}]
        _release_many(ctx, token, idle)
        unlocked.update(idle)
        for item in pending:
            began = time.monotonic()
            results[item.venue.id] = _apply_pending(ctx, item, token)
            own_s[item.venue.id] = item.read_s + time.monotonic() - began
    finally:
        _release_many(ctx, token, [v for v in held if v not in unlocked])
    _note_slow(ctx, own_s)
    return [results[v] for v in ids]


def _read_first(ctx: Context, venue: Venue, stored: tuple[str, Position] | None, limit_keys: int,
                rows: list[dict[str, Any]]) -> SyncResult | _Pending:
    """A batched venue's first feed read: done here when idle (its run row added to `rows`)."""
    started_at, started = utcnow(), time.monotonic()
    result = SyncResult(venue.id, "applied")
    try:
        feed, position = inc.open_at(venue, stored)
        changes = feed.changes_since(position, limit_keys)
        if changes.count or changes.more:
            return _Pending(venue, feed, position, changes, started_at, started, time.monotonic() - started, result)
        if changes.position != position:  # e.g. a gap timed out: nothing to apply, the position moves
            save_position(ctx.control, venue.id, feed.kind, changes.position)
    except Exception as err:
        result.finish(started)
        result.state, result.error = "failed", str(err)
        rows.append(inc.run_row(result, started_at, err))
        log.error("venue=%s incremental sync failed: %s", venue.id, err)
        return result
    result.finish(started)
    rows.append(inc.run_row(result, started_at))
    return result


def _apply_pending(ctx: Context, item: _Pending, token: bytes) -> SyncResult:
    result = item.result
    try:
        lock = _held_lock(ctx, item.venue.id, token)
        lock.reacquire()  # still ours (LockNotOwnedError if it expired while the batch read): apply under it
        inc.apply_round(ctx, item.venue, item.feed, item.position, item.changes, lock, result)
    except Exception as err:
        result.finish(item.started)
        result.state, result.error = "failed", str(err)
        inc.record_runs(ctx, [inc.run_row(result, item.started_at, err)])
        log.error("venue=%s incremental sync failed: %s", item.venue.id, err)
        return result
    result.finish(item.started)
    result.more = item.changes.more
    inc.record_runs(ctx, [inc.run_row(result, item.started_at)])
    result.log_applied()
    return result


def _note_slow(ctx: Context, own_s: dict[str, float]) -> None:
    """Remember which venues were slow in a batch (the dispatcher sends those on their own)."""
    slow = {v: time.time() for v, s in own_s.items() if s > SLOW_VENUE_S}
    fast = [v for v, s in own_s.items() if s <= SLOW_VENUE_S]
    if not slow and not fast:
        return
    with ctx.redis.pipeline(transaction=False) as pipe:
        if slow:
            pipe.zadd(SLOW_KEY, slow)
            log.warning("venues=%s slow in a batched incremental sync (> %.0fs): sent on their own from now on",
                        ",".join(sorted(slow)), SLOW_VENUE_S)
        if fast:
            pipe.zrem(SLOW_KEY, *fast)
        pipe.execute()


def slow_venues(ctx: Context) -> set[str]:
    """Venues recently slow in a batch (see `SLOW_VENUE_S`), to be dispatched on their own."""
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(SLOW_KEY, "-inf", time.time() - SLOW_FORGET_S)
        pipe.zrange(SLOW_KEY, 0, -1)
        _, members = pipe.execute()
    return {v.decode() if isinstance(v, bytes) else str(v) for v in members}
