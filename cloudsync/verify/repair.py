"""Repair: resync only the key ranges a verification found different, as a normal job of kind "repair".

The job is created like any resync (one active job per venue, audited by whoever wires auth in), its
chunks are exactly the differing ranges, and they run through the same guarded, rate-limited,
fenced path as a full resync (`cloudsync.resync.run_chunk`): each chunk upserts the venue's rows of
its range and deletes the cloud rows of that range the venue no longer has. Afterwards the tables are
verified again and the result is recorded on the job and in the venue's sync history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cloudsync.context import Context, Dispatcher
from cloudsync.control import jobs as jobrepo
from cloudsync.control.store import utcnow
from cloudsync.control.venues import get_venue
from cloudsync.resync import commit_plan, request_full_resync, venue_source
from cloudsync.verify.compare import Progress, RangeDiff, VerifyReport, record_verify, verify_ranges, verify_venue

log = logging.getLogger(__name__)

REPAIR_KIND = "repair"



@dataclass(frozen=True)
class RepairStart:
    job_id: int
    chunk_ids: list[int]
    tables: list[str]


def plan_ranges(ctx: Context, job_id: int, planned: jobrepo.Planned) -> list[int]:
    """Give a queued job the chunks it is told (no key planning), ensure the cloud tables, set it running.

    The explicit-ranges counterpart of `resync.plan_job`: same states, same fence bump, so chunk tasks
    and `finish_job` treat the job like any other. Running it again returns the chunks it made.
    """
    job = jobrepo.get_job(ctx.control, job_id)
    if job.chunks_total:
        return jobrepo.unsettled_chunks(ctx.control, job_id)
    if not jobrepo.set_job(ctx.control, job_id, ("queued",), state="planning", started_at=job.started_at or utcnow()):
        return []
    venue = get_venue(ctx.control, job.venue_id)
    source = venue_source(venue)
    for name in sorted({p[0] for p in planned}):
        added = ctx.target.ensure_table(source.table(name))
        if added:
            jobrepo.log_event(ctx.control, venue.id, f"table {name}: cloud columns added: {', '.join(added)}",
                              job_id=job_id)
    chunk_ids = commit_plan(ctx, job_id, venue.id, planned, f"planned {len(planned)} repair chunks")
    log.info("venue=%s job=%s planned %d repair chunks", venue.id, job_id, len(planned))
    return chunk_ids


def start_repair(ctx: Context, venue_id: str, diffs: list[RangeDiff], dispatcher: Dispatcher | None = None,
                 requested_by: str | None = None) -> RepairStart | None:
    """Create and plan a repair job for `diffs`; with a dispatcher, send its chunks to the workers.

    Returns None when there is nothing to repair. Without a dispatcher the caller runs the chunks
    (`cloudsync.resync.run_chunk`) and then `cloudsync.resync.finish_job` itself.
    """
    if not diffs:
        return None
    tables = sorted({d.table for d in diffs})
    options = {"tables": tables, "ranges": [d.as_dict() for d in diffs]}
    job_id = request_full_resync(ctx, venue_id, requested_by, options, kind=REPAIR_KIND)
    planned: jobrepo.Planned = [(d.table, d.lo, d.hi, max(d.source_rows, 1)) for d in diffs]
    chunk_ids = plan_ranges(ctx, job_id, planned)
    if dispatcher is not None and chunk_ids:
        dispatcher.run_chunks(job_id, chunk_ids)
    log.info("venue=%s job=%s repair of %d ranges in %s started", venue_id, job_id, len(diffs), ", ".join(tables))
    return RepairStart(job_id, chunk_ids, tables)


def verify_after_repair(ctx: Context, job_id: int, progress: Progress | None = None,
                        whole_tables: bool = False) -> VerifyReport:
    """Verify the repaired ranges again (or, with `whole_tables`, the repaired tables whole).

    The result goes on the job and into the venue's history, where `cloudsync status` reads it.
    """
    job = jobrepo.get_job(ctx.control, job_id)
    if whole_tables:
        report = verify_venue(ctx, job.venue_id, list(job.options.get("tables") or []) or None, progress=progress)
    else:
        ranges = [RangeDiff.from_dict(r) for r in job.options.get("ranges") or []]
        report = verify_ranges(ctx, job.venue_id, ranges, progress=progress)
    record_verify(ctx, report, job_id=job_id)
    verification = {"match": not report.drift, "at": utcnow().isoformat(), "by": "key-range checksums",
                    "scope": report.scope,
                    "ranges": [d.as_dict() for d in report.diffs],
                    "tables": {t.table: {"source": {"rows": t.source_rows}, "target": {"rows": t.target_rows},
                                         "match": not t.drift} for t in report.tables}}
    jobrepo.set_job(ctx.control, job_id, None, verification=verification)
    if report.drift:
        jobrepo.log_event(ctx.control, job.venue_id, f"repair left {len(report.diffs)} range(s) different",
                          job_id=job_id, level="WARNING")
    return report
