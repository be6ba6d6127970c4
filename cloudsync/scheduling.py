"""What the scheduler decides, without Celery: which venues are due an incremental sync, and which
resync work was lost and must be sent again.

    due_venues    active venues with a change feed whose interval has elapsed (a Redis sorted set of
                  next-due times; a Lua script takes the due ones and moves them on, atomically)
    batches       the due venues grouped for `incremental_batch.sync_venues`: one message per batch, not
                  per venue (an idle venue's sync costs less than Celery's handling of a message);
                  a venue lately slow in a batch goes on its own, so it holds no other venue up
    stalled_work  chunks whose lease expired, or pending chunks of a running job that has made no
                  progress for a while (their messages were lost), plus plans and finishes never run

Both are safe to run from more than one place: a claimed slot or a re-sent chunk is deduplicated by
Redis (the atomic claim, `SET NX`) and by the chunk's own lease in the control database.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cloudsync.context import Context
from cloudsync.control.schema import chunks, jobs, venues
from cloudsync.control.store import utcnow
from cloudsync.incremental_batch import slow_venues

log = logging.getLogger(__name__)

DUE_KEY = "cloudsync:incremental:due"  # sorted set: venue id → when it is next due (epoch seconds)
INTERVALS_KEY = "cloudsync:incremental:interval_s"  # hash: venue id → its interval
REAPED_PREFIX = "cloudsync:reaper:"
VENUES_TTL_S = 5.0  # the venue list is re-read (and the schedule refreshed) this often, not every tick
MAX_DUE_PER_TICK = 1000
BATCH_VENUES = 25  # venues per batched sync: an idle one costs a few ms, so a batch takes well under 1 s

# Atomically: the venues due by ARGV[1], each moved on by its interval from ARGV[3] (now), so two
# dispatchers never both take one. Cost is O(due), not O(venues): an idle tick reads nothing.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local iv = tonumber(redis.call('HGET', KEYS[2], id) or '60')
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + iv, id)
end
return due
"""

_refreshed: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}


def _refresh_schedule(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every few seconds: venues with a feed join the schedule (due now), others leave it.

    When the venues are the ones this process scheduled last time and Redis still holds a schedule
    of that size, nothing is written (one round trip instead of rewriting every venue's entry)."""
    key = ctx.settings.control_dsn + "|" + ctx.redis_url
    hit = _refreshed.get(key)
    if hit and time.monotonic() - hit[0] < VENUES_TTL_S:
        return hit[1]
    v = venues.c
    with ctx.control.connect() as conn:
        rows = {r.id: dict(r._mapping) for r in conn.execute(
            sa.select(v.id, v.sync_interval_s, v.feed_options).where(v.active == sa.true(), v.feed.is_not(None)))}
    r = ctx.redis
    if hit and hit[1] == rows:
        with r.pipeline(transaction=False) as pipe:
            pipe.zcard(DUE_KEY)
            pipe.hlen(INTERVALS_KEY)
            sizes = pipe.execute()
        if sizes == [len(rows), len(rows)]:
            _refreshed[key] = (time.monotonic(), rows)
            return rows
    scheduled = {_text(m) for m in r.zrange(DUE_KEY, 0, -1)}
    with r.pipeline(transaction=False) as pipe:
        if rows:
            pipe.hset(INTERVALS_KEY, mapping={i: int(row["sync_interval_s"] or 60) for i, row in rows.items()})
            pipe.zadd(DUE_KEY, dict.fromkeys(rows, 0), nx=True)
        gone = scheduled - set(rows)
        if gone:
            pipe.zrem(DUE_KEY, *gone)
            pipe.hdel(INTERVALS_KEY, *gone)
        pipe.execute()
    _refreshed[key] = (time.monotonic(), rows)
    return rows


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _trading_now() -> Any:
    """`cloudsync.guards.trading_now` when the guards are installed, else None."""
    try:
        return getattr(importlib.import_module("cloudsync.guards"), "trading_now", None)
    except ImportError:
        return None


def due_venues(ctx: Context) -> list[str]:
    """Venues due an incremental sync now; each one returned is claimed until its interval has passed.

    Outside trading hours, a venue with a `closed_interval_s` feed option waits that long instead
    (asked of `cloudsync.guards.trading_now` only for such venues, only when they are due).
    """
    rows = _refresh_schedule(ctx)
    if not rows:
        return []
    now = time.time()
    # half a tick early rather than a whole tick late: ticks jitter, and a venue due a few ms after a
    # tick would otherwise wait for the next one (a 1 s interval would run every 2 s)
    horizon = now + ctx.settings.dispatch_interval_ms / 2000
    due = [_text(d) for d in ctx.redis.eval(_CLAIM_DUE, 2, DUE_KEY, INTERVALS_KEY, horizon, MAX_DUE_PER_TICK, now)]
    trading_now = None
    for venue_id in due:
        closed = ((rows.get(venue_id) or {}).get("feed_options") or {}).get("closed_interval_s")
        if not closed:
            continue
        trading_now = trading_now or _trading_now()
        if trading_now is not None and not trading_now(ctx, venue_id):
            base = float(rows[venue_id]["sync_interval_s"] or 60)
            ctx.redis.zadd(DUE_KEY, {venue_id: now + max(base, float(closed))}, xx=True)
    return due


def batches(ctx: Context, due: list[str], size: int = BATCH_VENUES) -> list[list[str]]:
    """`due` in batches of at most `size`, in order; each venue lately slow in a batch alone."""
    if not due:
        return []
    slow = slow_venues(ctx)
    alone = [[v] for v in due if v in slow]
    rest = [v for v in due if v not in slow]
    return [rest[i:i + size] for i in range(0, len(rest), size)] + alone


@dataclass
class Stalled:
    chunks: dict[int, list[int]] = field(default_factory=dict)  # job id → chunk ids to send again
    plans: list[int] = field(default_factory=list)
    finishes: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.chunks or self.plans or self.finishes)


def stalled_work(ctx: Context, stall_s: float, now: dt.datetime | None = None) -> Stalled:
    """Resync work whose messages are gone: expired leases, silent jobs, plans and finishes never run.

    Each item is returned at most once per `stall_s` (a Redis key remembers it was re-sent), so a
    slow but live job is not flooded with duplicates.
    """
    now = now or utcnow()
    quiet_since = now - dt.timedelta(seconds=stall_s)
    c, j = chunks.c, jobs.c
    out = Stalled()
    with ctx.control.connect() as conn:
        expired = conn.execute(sa.select(c.job_id, c.id).join(jobs, j.id == c.job_id).where(
            j.state == "running", c.state == "running", c.lease_expires_at < now)).all()
        last_progress = (sa.select(c.job_id, sa.func.max(c.updated_at).label("last"))
                         .group_by(c.job_id).subquery())
        silent = conn.execute(
            sa.select(c.job_id, c.id)
            .join(jobs, j.id == c.job_id)
            .join(last_progress, last_progress.c.job_id == c.job_id)
            .where(j.state == "running", c.state == "pending", j.updated_at < quiet_since,
                   last_progress.c.last < quiet_since)).all()
        plans = conn.execute(sa.select(j.id).where(j.state.in_(("queued", "planning")),
                                                   j.updated_at < quiet_since)).scalars().all()
        finishes = conn.execute(sa.select(j.id).where(j.state == "finishing",
                                                      j.updated_at < quiet_since)).scalars().all()
    ttl_ms = max(int(stall_s * 1000), 1000)
    for job_id, chunk_id in [*expired, *silent]:
        if ctx.redis.set(f"{REAPED_PREFIX}chunk:{chunk_id}", "1", nx=True, px=ttl_ms):
            out.chunks.setdefault(int(job_id), []).append(int(chunk_id))
    for job_id in plans:
        if ctx.redis.set(f"{REAPED_PREFIX}plan:{job_id}", "1", nx=True, px=ttl_ms):
            out.plans.append(int(job_id))
    for job_id in finishes:
        if ctx.redis.set(f"{REAPED_PREFIX}finish:{job_id}", "1", nx=True, px=ttl_ms):
            out.finishes.append(int(job_id))
    for job_id, ids in out.chunks.items():
        log.warning("job=%s reaper: %d chunk(s) lost their worker or message; sending again: %s",
                    job_id, len(ids), ids[:10])
    return out

