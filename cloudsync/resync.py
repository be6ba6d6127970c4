"""Full resync: request, plan, run chunks, finish with verification; resume and cancel.

    request_full_resync  → a queued job (refused if the venue already has an active one)
    plan_job             → tables reflected, cloud tables ensured, chunks planned by key ranges
    run_chunk            → one key range read from the venue and written to the cloud, checkpointed
    finish_job           → row counts and checksums of source and target recorded on the job

The control database is the source of truth: any of these can run again after a crash, a lost
message or a Redis restart and the job still converges.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from cloudsync import chunk_run, guards
from cloudsync.chunk_run import ChunkRun
from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.jobs import Chunk, Job
from cloudsync.control.store import chunk_session, utcnow
from cloudsync.control.venues import Venue, get_venue, record_table, resolve_tables
from cloudsync.db import control_errors
from cloudsync.errors import AlreadyRunning, ControlUnavailable, JobStateError, UnknownJob
from cloudsync.incremental import position_for_resync, resume_after_resync
from cloudsync.job_watch import announce_end
from cloudsync.keys import format_key
from cloudsync.services_state import publish as publish_services
from cloudsync.sources import Source, open_source
from cloudsync.sources.readers import read_copy_text
from cloudsync.targets import Target
from cloudsync.verify.rangehash import RangeSum, pair_hashers, source_side, target_side

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]

#: a finisher silent this long is presumed dead and its claim may be taken over
FINISH_CLAIM_STALE_S = 900
#: tables planned at once (each plan is one scan of the table's key index at the venue)
PLAN_THREADS = 2
#: checksum queries of the closing verification running at once (two per table: venue and cloud)
VERIFY_THREADS = 4


@dataclass(frozen=True)
class ChunkOutcome:
    chunk_id: int
    ran: bool  # False: the chunk was already settled or the job is no longer active
    job_settled: bool  # True for exactly one caller: every chunk is done or failed; finish the job
    rows: int = 0
    job: Job | None = None  # the job as the chunk read it when it started


def venue_source(venue: Venue) -> Source:
    return open_source(venue.id, venue.source_dsn, venue.source_schema)


def request_full_resync(ctx: Context, venue_id: str, requested_by: str | None = None,
                        options: dict[str, Any] | None = None, kind: str = "full") -> int:
    """Create a queued job for the venue (AlreadyRunning if it has an active one)."""
    venue = get_venue(ctx.control, venue_id)
    options = dict(options or {})
    # refused during maintenance, or in trading hours without options["during_trading"]; holds the venue lease
    with guards.resync_request(ctx, venue, options, kind=kind) as bind_lease:
        job_id = jobrepo.create_job(ctx.control, venue.id, kind, requested_by, options)
        bind_lease(job_id)
    jobrepo.log_event(ctx.control, venue.id, f"{kind} resync requested by {requested_by or 'system'}", job_id=job_id)
    log.info("venue=%s job=%s %s resync requested", venue.id, job_id, kind)
    return job_id


def plan_job(ctx: Context, job_id: int) -> list[int]:
    """Reflect the venue's tables, create or extend the cloud tables and plan chunks. Returns chunk ids.

    Planning again (a redelivered plan message) returns the chunks planned the first time.
    """
    job = jobrepo.get_job(ctx.control, job_id)
    if job.chunks_total:
        return jobrepo.unsettled_chunks(ctx.control, job_id)
    if not jobrepo.set_job(ctx.control, job_id, ("queued", "planning"), state="planning",
                           started_at=job.started_at or utcnow()):
        return []
    venue = get_venue(ctx.control, job.venue_id)
    # the change-feed position, before anything is read: incremental sync resumes from it afterwards
    jobrepo.set_job(ctx.control, job_id, None, feed_position=position_for_resync(ctx, venue.id, job_id))
    source = venue_source(venue)
    source.refresh()
    target = ctx.target
    chunk_rows = int(job.options.get("chunk_rows") or venue.chunk_rows or ctx.settings.chunk_rows)
    wanted = job.options.get("tables")
    tables, skipped = (list(wanted), []) if wanted else resolve_tables(venue)
    for name in skipped:
        jobrepo.log_event(ctx.control, venue.id, f"table {name} skipped: no primary key", job_id=job_id,
                          level="WARNING")
    reflected = []
    for name in tables:
        table = source.table(name)
        added = target.ensure_table(table)
        if added:
            jobrepo.log_event(ctx.control, venue.id, f"table {name}: cloud columns added: {', '.join(added)}",
                              job_id=job_id)
        reflected.append(table)
    # planning reads every key of every table once: two tables at a time, on two database sessions
    with ThreadPoolExecutor(max_workers=PLAN_THREADS, thread_name_prefix="cs-plan") as pool:
        plans = list(pool.map(lambda t: source.plan(t, chunk_rows), reflected))
    planned = []
    for name, table, (count, bounds) in zip(tables, reflected, plans, strict=True):
        record_table(ctx.control, venue.id, name, [c.name for c in source.key_columns(table)],
                     [[c.name, str(c.type)] for c in table.columns], count)
        edges = [None, *bounds, None]
        for i in range(len(edges) - 1):
            est = chunk_rows if i < len(bounds) else max(count - chunk_rows * len(bounds), 0)
            planned.append((name, edges[i], edges[i + 1], est))
    chunk_ids = commit_plan(ctx, job_id, venue.id, planned,
                            f"planned {len(planned)} chunks over {len(tables)} tables")
    publish_services(ctx, venue.id)  # degraded while it runs
    log.info("venue=%s job=%s planned %d chunks over %d tables", venue.id, job_id, len(planned), len(tables))
    return chunk_ids


def commit_plan(ctx: Context, job_id: int, venue_id: str, planned: jobrepo.Planned, event: str) -> list[int]:
    """Give a planning job its chunks, a new fencing token and the running state, in one commit (with the
    event saying so). Returns the ids of its chunks still to run."""
    with ctx.control.begin() as conn:
        jobrepo.insert_chunks(conn, job_id, planned)
        jobrepo.bump_fence(conn, job_id)
        jobrepo.set_job(conn, job_id, ("planning",), state="running")
        jobrepo.log_event(conn, venue_id, event, job_id=job_id)
        return jobrepo.unsettled_chunks(conn, job_id)


def plan_failed(ctx: Context, job_id: int, error: BaseException) -> None:
    """Planning failed for good (unknown table, no primary key, schema drift): the job fails with why."""
    job = jobrepo.get_job(ctx.control, job_id)
    jobrepo.set_job(ctx.control, job_id, ("queued", "planning"), state="failed", error=str(error),
                    finished_at=utcnow())
    jobrepo.log_event(ctx.control, job.venue_id, f"planning failed: {error}", job_id=job_id, level="ERROR")
    announce_end(ctx, job_id)


def run_chunk(ctx: Context, job_id: int, chunk_id: int, owner: str, progress: Progress | None = None,
              admit: Callable[[Job | None], object] | None = None) -> ChunkOutcome:
    """Copy one key range of one table; idempotent, checkpointed, fenced.

    `admit(job)` runs before any work and may refuse it by raising (the tasks check the job's signed
    grant there); it gets None when the job does not exist.
    """
    # a control database restarting mid-chunk: the chunk is retried, not lost. One control session
    # carries the chunk's own bookkeeping (read, claim, fence, checkpoint), a statement each
    with control_errors(), chunk_session(ctx.control) as session:
        try:
            run = chunk_run.load(session, job_id, chunk_id)
        except UnknownJob:
            if admit:
                admit(None)
            raise
        if admit:
            admit(run.job)
        if run.job.state not in ("running", "paused"):
            return ChunkOutcome(chunk_id, ran=False, job_settled=False)
        # guards before the claim, so a wait spends no delivery: lease, re-indexing, limits (may raise Paused)
        with guards.chunk_guard(ctx, run):
            return _run_guarded(ctx, run, owner, progress, session)


def _run_guarded(ctx: Context, run: ChunkRun, owner: str, progress: Progress | None,
                 session: Engine | Connection) -> ChunkOutcome:
    job, chunk_id = run.job, run.chunk.id
    chunk = jobrepo.claim_chunk(session, chunk_id, owner, ctx.settings.chunk_lease_s)
    if chunk is None:
        return ChunkOutcome(chunk_id, ran=False, job_settled=jobrepo.settle_job(ctx.control, job.id),
                            job=job)
    if chunk.deliveries > ctx.settings.max_deliveries:
        detail = f"delivered {chunk.deliveries} times without finishing (workers lost?)"
        jobrepo.fail_chunk(ctx.control, chunk.id, detail)
        return ChunkOutcome(chunk_id, ran=False, job_settled=jobrepo.settle_job(ctx.control, job.id), job=job)
    if job.state == "paused":
        jobrepo.set_job(ctx.control, job.id, ("paused",), state="running", pause_reason=None)
    rows, settled = _copy_range(ctx, run.venue, job, chunk, owner, progress, run.columns, session)
    return ChunkOutcome(chunk_id, ran=True, job_settled=settled, rows=rows, job=job)


def _copy_range(ctx: Context, venue: Venue, job: Job, chunk: Chunk, owner: str, progress: Progress | None,
                recorded: list[str] | None, session: Engine | Connection) -> tuple[int, bool]:
    """(rows read, whether this chunk settled the job)."""
    source = venue_source(venue)
    target: Target = ctx.target
    table = source.table(chunk.table_name)
    if [c.name for c in table.columns] != recorded:
        source.refresh()  # the schema changed since this process reflected it; planning saw the new one
        table = source.table(chunk.table_name)
    cloud = target.cloud_table(table)
    started = time.monotonic()
    lease_s = ctx.settings.chunk_lease_s
    state: dict[str, float] = {"rows": 0, "renewed": started}
    where = f"venue={venue.id} job={job.id} chunk={chunk.id} table={chunk.table_name}"

    def batches() -> Generator[Any, None, None]:  # lists of rows, or CopyText blocks
        batch_rows = ctx.settings.read_batch_rows
        # PostgreSQL to PostgreSQL: rows pass as COPY text, never as Python objects (see sources/readers.py)
        raw = read_copy_text(source, table, chunk.lo, chunk.hi, batch_rows) if target.takes_copy_text else None
        # closed explicitly: a target error must end the source's read transaction now, not at GC
        stream: Generator[Any, None, None] = raw or source.read_range(table, chunk.lo, chunk.hi, batch_rows)  # type: ignore[assignment]
        with contextlib.closing(stream):
            yield from _metered(stream)

    def _metered(stream: Iterator[Any]) -> Iterator[Any]:
        for rows in stream:
            state["rows"] += len(rows)
            now = time.monotonic()
            if now - state["renewed"] > lease_s / 3:
                jobrepo.check_fence(session, chunk, owner, lease_s)
                state["renewed"] = now
            if progress:
                elapsed = max(now - started, 1e-6)
                rate = state["rows"] / elapsed
                progress({
                    "venue": venue.id, "job": job.id, "chunk": chunk.id, "table": chunk.table_name,
                    "rows_done": state["rows"], "rows_est": chunk.rows_est, "rows_per_s": round(rate, 1),
                    "eta_s": round(max(chunk.rows_est - state["rows"], 0) / rate, 1) if rate else None,
                })
            yield rows

    log.info("%s keys (%s, %s] started", where, format_key(chunk.lo), format_key(chunk.hi))
    with contextlib.closing(batches()) as feed:
        stats = target.write_range(cloud, venue.id, feed, chunk.lo, chunk.hi,
                                   before_commit=lambda: jobrepo.check_fence(session, chunk, owner, lease_s))
    duration = time.monotonic() - started
    settled = jobrepo.finish_chunk(session, chunk, int(state["rows"]), stats.rows_written, stats.rows_deleted,
                                   duration)
    log.info("%s done: %d rows, %d deleted in %.2fs", where, state["rows"], stats.rows_deleted, duration)
    return int(state["rows"]), settled


def chunk_failed(ctx: Context, job_id: int, chunk_id: int, error: BaseException) -> bool:
    """Record a chunk's final failure (table and key range in the message). True if the job settled."""
    chunk = jobrepo.get_chunk(ctx.control, chunk_id)
    message = f"table {chunk.table_name!r} keys ({format_key(chunk.lo)}, {format_key(chunk.hi)}]: {error}"
    jobrepo.fail_chunk(ctx.control, chunk_id, message)
    job = jobrepo.get_job(ctx.control, job_id)
    jobrepo.log_event(ctx.control, job.venue_id, message, job_id=job_id, chunk_id=chunk_id, level="ERROR")
    log.error("venue=%s job=%s chunk=%s failed: %s", job.venue_id, job_id, chunk_id, message)
    return jobrepo.settle_job(ctx.control, job_id)


def chunk_retrying(ctx: Context, chunk_id: int, owner: str, error: BaseException, count_attempt: bool = True) -> None:
    """Give the chunk's lease back before a retry; with the control database away, the lease expires instead."""
    try:
        with control_errors():
            jobrepo.release_chunk(ctx.control, chunk_id, owner, str(error), count_attempt=count_attempt)
    except ControlUnavailable as err:
        log.warning("chunk=%s lease not released (%s); it expires by itself", chunk_id, err)


def finish_job(ctx: Context, job_id: int, verify: bool = True, owner: str | None = None) -> Job:
    """Verify (row counts and checksums of source and target per table) and close the job.

    Exactly one finisher does this: a second one (a reaper's message while the first is slow) finds
    the claim taken and returns; a late first one finds its claim gone and changes nothing.
    """
    owner = owner or f"finisher-{uuid.uuid4().hex[:12]}"
    if not jobrepo.claim_finish(ctx.control, job_id, owner, FINISH_CLAIM_STALE_S):
        return jobrepo.get_job(ctx.control, job_id)
    with ctx.control.connect() as conn:  # what closing needs to know, on one connection
        job = jobrepo.get_job(conn, job_id)
        failed = jobrepo.failed_chunks(conn, job_id)
        venue = get_venue(conn, job.venue_id)
        progress = jobrepo.table_progress(conn, job_id)
    broken = {f["table_name"] for f in failed}
    # largest first: the closing check runs several tables at once, the small ones around the large ones
    healthy = [t["table_name"] for t in sorted(progress, key=lambda t: (-int(t["rows_done"] or 0), t["table_name"]))
               if t["table_name"] not in broken]
    # a repair job is verified by key-range checksums afterwards (cloudsync/verify/repair.py), not table-wide here
    verification = verify_tables(ctx, venue, healthy) if verify and job.kind != "repair" else None
    if failed:
        error = f"{len(failed)} chunk(s) failed; first: {failed[0]['error']}"
        if not _close(ctx, job, owner, verification, error=error, message=f"resync failed: {error}", level="ERROR"):
            return jobrepo.get_job(ctx.control, job_id)
    else:
        if not jobrepo.holds_finish(ctx.control, job_id, owner):
            return jobrepo.get_job(ctx.control, job_id)
        resume_after_resync(ctx, venue.id, job_id, job.feed_position)  # while incremental is still held off
        ok = verification is None or verification["match"]
        message = f"resync done; verification {'matches' if ok else 'differs'}"
        if not _close(ctx, job, owner, verification, message=message, level="INFO" if ok else "WARNING"):
            return jobrepo.get_job(ctx.control, job_id)
    guards.release_venue(ctx, venue.id, job_id)
    log.info("venue=%s job=%s finished", venue.id, job_id)
    publish_services(ctx, venue.id)
    announce_end(ctx, job_id)
    return jobrepo.get_job(ctx.control, job_id)


def _close(ctx: Context, job: Job, owner: str, verification: dict[str, Any] | None, *, message: str, level: str,
           error: str | None = None) -> bool:
    """Close the job (done, or failed with `error`) while `owner` holds its finish claim, and record the
    run and the event in the same commit. False if the claim was lost: nothing is written."""
    ok = error is None
    with ctx.control.begin() as conn:
        if not jobrepo.close_job(conn, job.id, owner, state="done" if ok else "failed", error=error,
                                 finished_at=utcnow(), verification=verification):
            return False
        jobrepo.record_sync_run(conn, job.venue_id, job.kind, job.started_at or job.created_at, ok,
                                rows_applied=job.rows_done, error=error, job_id=job.id,
                                details={"verified": verification is None or verification["match"]} if ok else None)
        jobrepo.log_event(conn, job.venue_id, message, job_id=job.id, level=level)
    return True


def verify_tables(ctx: Context, venue: Venue, tables: list[str]) -> dict[str, Any]:
    """Row count and order-independent checksum of every table, on both sides.

    Computed inside each database where its dialect allows (`cloudsync.verify.rangehash`): this check
    re-reads both sides in full, and hashing every row in Python took longer than the copy itself.
    """
    source = venue_source(venue)
    target = ctx.target
    batch = ctx.settings.read_batch_rows
    result: dict[str, Any] = {"tables": {}, "match": True, "at": utcnow().isoformat()}
    sums: list[tuple[str, Future[RangeSum], Future[RangeSum]]] = []
    # both databases at once, and tables in the order given (largest first) VERIFY_THREADS queries at a
    # time: one table's two checksums after another left a core idle whenever one side finished first
    with ThreadPoolExecutor(max_workers=VERIFY_THREADS, thread_name_prefix="cs-verify") as pool:
        for name in tables:
            table = source.table(name)
            cloud = target.cloud_table(table)
            src_side = source_side(source, table, batch)
            dst_side = target_side(target, cloud, venue.id, [c.name for c in table.columns], batch)
            pair_hashers(src_side, dst_side)  # PostgreSQL's own row hash on both sides where they agree on it
            on_source = pool.submit(src_side.range_sum, None, None)
            sums.append((name, on_source, pool.submit(dst_side.range_sum, None, None)))
        for name, src_sum, dst_sum in sums:
            src, dst = src_sum.result(), dst_sum.result()
            result["tables"][name] = {"source": {"rows": src.rows, "checksum": src.hex()},
                                      "target": {"rows": dst.rows, "checksum": dst.hex()}, "match": src == dst}
            result["match"] = result["match"] and src == dst
    return result


def resume_job(ctx: Context, job_id: int) -> tuple[str, list[int]]:
    """Make a stopped, failed or stalled job runnable again from its checkpoints.

    Returns ("plan", []) when it never got planned, ("finish", []) when only finishing is left, or
    ("chunks", ids) with every chunk that is not done yet.
    """
    job = jobrepo.get_job(ctx.control, job_id)
    if job.state == "done":
        raise JobStateError(job_id, job.state, "resume")
    if not job.active:
        running = jobrepo.active_job(ctx.control, job.venue_id)
        if running and running.id != job_id:
            raise AlreadyRunning(job.venue_id, running.id)
    if job.chunks_total == 0:
        jobrepo.set_job(ctx.control, job_id, None, state="queued", error=None, finished_at=None)
        return "plan", []
    jobrepo.reset_failed_chunks(ctx.control, job_id)
    pending = jobrepo.unsettled_chunks(ctx.control, job_id)
    jobrepo.bump_fence(ctx.control, job_id)
    if not pending:
        jobrepo.set_job(ctx.control, job_id, None, state="finishing", error=None, finished_at=None, finisher=None)
        return "finish", []
    jobrepo.set_job(ctx.control, job_id, None, state="running", error=None, finished_at=None)
    publish_services(ctx, job.venue_id)
    jobrepo.log_event(ctx.control, job.venue_id, f"resumed: {len(pending)} chunks to run", job_id=job_id)
    return "chunks", pending


def cancel_job(ctx: Context, job_id: int, by: str | None = None) -> Job:
    job = jobrepo.get_job(ctx.control, job_id)
    if not job.active:
        raise JobStateError(job_id, job.state, "cancel")
    jobrepo.set_job(ctx.control, job_id, tuple(s for s in ("queued", "planning", "running", "paused", "finishing")),
                    state="cancelled", finished_at=utcnow(), error=f"cancelled by {by or 'operator'}")
    jobrepo.bump_fence(ctx.control, job_id)
    guards.release_venue(ctx, job.venue_id, job_id)
    jobrepo.log_event(ctx.control, job.venue_id, f"cancelled by {by or 'operator'}", job_id=job_id)
    publish_services(ctx, job.venue_id)
    announce_end(ctx, job_id)
    return jobrepo.get_job(ctx.control, job_id)

