"""Guards: what may run against a venue, and how fast.

    resync_request  before a job exists: refuse during maintenance or re-indexing, refuse in trading
                    hours without the override, and take the venue's lease (one resync per venue)
    chunk_guard     before each chunk: renew the lease (a stale holder is refused), wait while the
                    venue is under maintenance (the job shows paused), and keep to the venue's limits;
                    the venue database's answer "no index maintenance" is shared by its chunks for
                    `reindex_check_ms` (fetched with the lease's heartbeat: one Redis round trip)
    trading_now     whether a venue trades at an instant (the scheduler asks too)
    throttle        spend rows of the venue's budget, for other sync work (incremental batches)
    maintenance_active  why the venue database must be left alone now, or None

Guards run inside the task at execution time, not only when work is enqueued: the world changes while
a resync runs (trading starts, a DBA starts a rebuild), and each chunk looks again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis

from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.venues import Venue, get_venue
from cloudsync.errors import AlreadyRunning, Paused, TransientError, UnknownJob
from cloudsync.guards import lease, ratelimit
from cloudsync.guards.errors import TradingHours, UnderMaintenance
from cloudsync.guards.reindex import index_maintenance
from cloudsync.guards.rules import MaintenanceWindow, get_limits, load_schedule, open_window
from cloudsync.guards.trading_hours import Clock, utc_clock

if TYPE_CHECKING:
    from cloudsync.chunk_run import ChunkRun

log = logging.getLogger(__name__)

MAINTENANCE_RECHECK_S = 5.0  # a chunk held by maintenance looks again after this
SLOT_RECHECK_S = 1.0  # a chunk over the venue's concurrent-chunk limit looks again after this
THROTTLED = "throttled: "  # a running job's pause_reason while its chunks wait for rate tokens

clock: Clock = utc_clock  # injectable: tests and simulations replace it


def _now(at: dt.datetime | None) -> dt.datetime:
    return at if at is not None else clock()


def guard_redis(ctx: Context) -> redis.Redis | None:
    """The Redis that leases and limits live in; None in the embedded set-up before its Redis started.

    No Redis running embedded means no worker can be running either, so there is nothing to share a
    budget or a lease with; starting a server only to guard an engine call would leave it behind.
    """
    if ctx.settings.redis_url or (ctx.settings.home_path / "redis.url").exists():
        return ctx.redis
    return None


def trading_now(ctx: Context, venue_id: str, at: dt.datetime | None = None) -> bool:
    """Whether the venue is within its trading hours at `at` (default: the guards' clock)."""
    venue = get_venue(ctx.control, venue_id)
    schedule = load_schedule(ctx.control, venue.id)
    return bool(schedule and schedule.trading(_now(at), venue.timezone))


def maintenance_active(ctx: Context, venue: Venue | str, window_checked: bool = False) -> str | None:
    """Why the venue database must be left alone now: a declared window or index maintenance; else None.

    `window_checked`: the caller already knows no window is open; only the venue database is asked.
    """
    if isinstance(venue, str):
        venue = get_venue(ctx.control, venue)
    window = None if window_checked else open_window(ctx.control, venue.id)
    if window:
        return _window_reason(window)
    found = index_maintenance(venue.id, venue.source_dsn)
    return f"re-indexing: {found}" if found else None


@contextlib.contextmanager
def resync_request(ctx: Context, venue: Venue, options: dict[str, Any], kind: str = "full",
                   at: dt.datetime | None = None) -> Iterator[Callable[[int], None]]:
    """Check a resync may start and hold the venue while the job is created.

    Yields `bind(job_id)`, to call once the job row exists: the lease then names the job and carries
    its fencing token. Raises UnderMaintenance, TradingHours (full resyncs only: a repair is small) or
    AlreadyRunning; refusals are logged as venue events. `options` gains what the override recorded.
    """
    reason = maintenance_active(ctx, venue)
    if reason:
        _refused(ctx, venue.id, reason)
        raise UnderMaintenance(venue.id, reason)
    now = _now(at)
    schedule = load_schedule(ctx.control, venue.id)
    if kind == "full" and schedule and schedule.trading(now, venue.timezone):
        zone = ZoneInfo(venue.timezone)
        local = now.astimezone(zone).strftime("%a %H:%M ") + venue.timezone
        change = schedule.next_change(now, venue.timezone)
        until = change.astimezone(zone).strftime("%a %H:%M") if change else ""
        if not options.get("during_trading"):
            _refused(ctx, venue.id, f"trading hours ({local})")
            raise TradingHours(venue.id, local, until)
        options["trading_at_request"] = local
    client = guard_redis(ctx)
    held = None
    if client is not None:
        try:
            held = lease.claim(client, venue.id, lambda job_id: _job_active(ctx, job_id))
        except AlreadyRunning as err:
            running = jobrepo.active_job(ctx.control, venue.id) if getattr(err, "job_id", -1) < 0 else None
            raise AlreadyRunning(venue.id, running.id) if running else err from None
        except redis.RedisError as err:
            raise TransientError(f"venue {venue.id}: cannot take the venue's lease, Redis unavailable: {err}",
                                 venue=venue.id) from err

    def bind(job_id: int) -> None:
        token = jobrepo.bump_fence(ctx.control, job_id)
        if client is not None and held is not None:
            try:
                lease.bind(client, held, job_id, token)
            except redis.RedisError as err:  # the job row stands; chunks take the lease when they run
                log.warning("venue=%s job=%s lease not bound (%s)", venue.id, job_id, err)
        if options.get("during_trading") and options.get("trading_at_request"):
            jobrepo.log_event(ctx.control, venue.id, "full resync started during trading hours "
                              f"({options['trading_at_request']}) with --during-trading", job_id=job_id,
                              level="WARNING")

    try:
        yield bind
    except BaseException:
        if client is not None and held is not None:
            with contextlib.suppress(redis.RedisError):  # the claim expires by itself anyway
                lease.abandon(client, held)
        raise


def _window_reason(window: MaintenanceWindow) -> str:
    since = window.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"maintenance window: {window.reason} (since {since}" + (
        f" by {window.started_by})" if window.started_by else ")")


def _job_active(ctx: Context, job_id: int) -> bool:
    try:
        return jobrepo.get_job(ctx.control, job_id).active
    except UnknownJob:
        return False


def _refused(ctx: Context, venue_id: str, why: str) -> None:
    jobrepo.log_event(ctx.control, venue_id, f"full resync refused: {why}", level="WARNING")
    log.warning("venue=%s full resync refused: %s", venue_id, why)


@contextlib.contextmanager
def chunk_guard(ctx: Context, run: ChunkRun, at: dt.datetime | None = None) -> Iterator[None]:
    """Let one chunk run now, or raise Paused with how long to wait; holds a concurrency slot while it runs.

    `run` is the chunk's state as read when it started (`cloudsync.chunk_run.load`): the window, hours
    and limits it carries are current, so only the venue database and Redis are asked here.
    """
    job, chunk, venue = run.job, run.chunk, run.venue
    if chunk.state in ("done", "failed"):
        yield  # nothing will be copied: a settled chunk spends no budget
        return
    client = guard_redis(ctx)
    try:
        seen = None
        if client is not None:  # the venue's shared look at its database comes with the heartbeat
            seen = lease.heartbeat(client, venue.id, job.id, job.fence_token, chunk.id, _seen_key(venue.id))
        reason = _window_reason(run.window) if run.window else _reindexing(ctx, venue, client, seen)
        if reason:
            if jobrepo.set_job(ctx.control, job.id, ("running",), state="paused", pause_reason=reason):
                jobrepo.log_event(ctx.control, venue.id, f"paused: {reason}", job_id=job.id, chunk_id=chunk.id)
            raise Paused(venue.id, reason, MAINTENANCE_RECHECK_S)
        if client is None:
            yield
            return
        trading = bool(run.schedule and run.schedule.trading(_now(at), venue.timezone))
        rows_per_s, max_chunks = run.limits.for_mode(trading)
        mode = "trading hours" if trading else "outside trading hours"
        slot = f"{job.id}:{chunk.id}"
        if max_chunks and not ratelimit.acquire_slot(client, venue.id, slot, max_chunks,
                                                     max(ctx.settings.chunk_lease_s * 5, 300)):
            raise Paused(venue.id, f"{max_chunks} concurrent chunk(s) at most ({mode})", SLOT_RECHECK_S)
        try:
            if rows_per_s:
                grant = ratelimit.take_rows(client, venue.id, max(chunk.rows_est, 1), rows_per_s)
                if not grant.granted:
                    # the job keeps running (it progresses at the limit); its status says why it is slow
                    note = f"{THROTTLED}{rows_per_s} rows/s ({mode})"
                    if job.pause_reason != note:
                        jobrepo.set_job(ctx.control, job.id, ("running",), pause_reason=note)
                    raise Paused(venue.id, note, grant.wait_s)
            elif job.pause_reason and job.pause_reason.startswith(THROTTLED):
                jobrepo.set_job(ctx.control, job.id, ("running",), pause_reason=None)
            yield
        finally:
            if max_chunks:
                ratelimit.release_slot(client, venue.id, slot)
    except redis.RedisError as err:
        raise Paused(venue.id, f"Redis unavailable: {err}", MAINTENANCE_RECHECK_S) from err


def _seen_key(venue_id: str) -> str:
    return f"cloudsync:reindex-free:{venue_id}"


def _reindexing(ctx: Context, venue: Venue, client: redis.Redis | None, seen: bytes | None) -> str | None:
    """Why a chunk must wait for the venue database's index maintenance, or None.

    One look serves every chunk of the venue on every worker for `reindex_check_ms`, but only a look that
    found nothing: the venue database (a POS back office, trading) is asked about once a second instead of
    before every chunk, and maintenance that starts is seen within that second. Maintenance found is never
    shared: every chunk looks for itself until it has ended, so the job resumes at its first chunk after.
    """
    if seen is not None:
        return None
    reason = maintenance_active(ctx, venue, window_checked=True)
    fresh_ms = ctx.settings.reindex_check_ms
    if client is not None and fresh_ms:
        if reason:
            client.delete(_seen_key(venue.id))
        else:
            client.set(_seen_key(venue.id), b"1", px=fresh_ms)
    return reason


def throttle(ctx: Context, venue_id: str, rows: int, at: dt.datetime | None = None) -> None:
    """Spend `rows` of the venue's current rows/s budget, or raise Paused with how long to wait.

    For other sync work on the venue (incremental batches) to share the budget full-resync chunks use.
    """
    client = guard_redis(ctx)
    if client is None:
        return
    trading = trading_now(ctx, venue_id, at)
    rows_per_s, _ = get_limits(ctx.control, venue_id).for_mode(trading)
    if not rows_per_s:
        return
    try:
        grant = ratelimit.take_rows(client, venue_id, max(rows, 1), rows_per_s)
    except redis.RedisError as err:
        raise Paused(venue_id, f"Redis unavailable: {err}", MAINTENANCE_RECHECK_S) from err
    if not grant.granted:
        mode = "trading hours" if trading else "outside trading hours"
        raise Paused(venue_id, f"{THROTTLED}{rows_per_s} rows/s ({mode})", grant.wait_s)


def release_venue(ctx: Context, venue_id: str, job_id: int) -> None:
    """Drop the job's venue lease once it finished or was cancelled (best effort: it also expires)."""
    client = guard_redis(ctx)
    if client is None:
        return
    try:
        lease.release(client, venue_id, job_id)
    except redis.RedisError as err:
        log.warning("venue=%s job=%s lease not released (%s); it expires by itself", venue_id, job_id, err)
