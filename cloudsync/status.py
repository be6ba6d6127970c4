"""The venue status view: one row per venue with its sync health, the page operators watch.

Each row: POS version, last successful sync, lag (time since that success), last error (time and
message), the current job with its progress, the cloud services state, and a colour:

    red     the venue's last sync (any kind) failed
    yellow  stale: no successful sync within `settings.stale_after_s` (or never);
            POS version below `settings.min_pos_version` (compared numerically, 10.4 < 10.37);
            or the last verification found the cloud copy differs from the venue
    green   otherwise

Everything comes from the control database: `sync_runs` (written by every full, incremental, verify
and repair run) and `jobs` (a job whose planning failed has no run, its failure counts as one).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.context import Context
from cloudsync.control.jobs import Job
from cloudsync.control.schema import JOB_ACTIVE_STATES, jobs, sync_runs
from cloudsync.control.store import utcnow
from cloudsync.control.venues import Venue, get_venue, list_venues
from cloudsync.services_state import AVAILABLE, DEGRADED, DEGRADING_KINDS

RED, YELLOW, GREEN = "red", "yellow", "green"
VERIFY_KIND = "verify"
REBUILD_KINDS = ("full", "repair")


def version_tuple(version: str) -> tuple[int, ...]:
    """`10.37.2` → (10, 37, 2): the numbers in a version string, for numeric comparison."""
    return tuple(int(n) for n in re.findall(r"\d+", version or ""))


def version_below(version: str | None, minimum: str) -> bool:
    """True if `version` is numerically below `minimum`; an unknown version is not flagged."""
    have, want = version_tuple(version or ""), version_tuple(minimum)
    if not have or not want:
        return False
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) < want + (0,) * (width - len(want))


@dataclass(frozen=True)
class Run:
    """One finished sync of a venue (a `sync_runs` row, or a job that failed before running)."""

    id: int
    kind: str
    job_id: int | None
    finished_at: dt.datetime
    ok: bool
    error: str | None
    details: dict[str, Any]

    @property
    def drift(self) -> bool:
        """The run compared source and cloud and found them different."""
        return bool(self.details.get("drift")) or self.details.get("verified") is False


@dataclass(frozen=True)
class VenueStatus:
    venue_id: str
    name: str
    pos_version: str | None
    last_success_at: dt.datetime | None
    last_success_kind: str | None
    last_run_at: dt.datetime | None
    last_run_kind: str | None
    last_run_ok: bool | None
    last_error_at: dt.datetime | None
    last_error: str | None
    lag_s: float | None
    job_id: int | None
    job_kind: str | None
    job_state: str | None
    job_progress_pct: float | None
    job_rows_done: int | None
    job_rows_total: int | None
    services: str
    drift: bool
    updated_at: dt.datetime | None
    colour: str
    reasons: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO-8601 UTC strings."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = value.astimezone(dt.UTC).isoformat()
        out["reasons"] = list(self.reasons)
        return out


def _latest_runs(conn: sa.Connection, where: list[Any]) -> dict[str, Run]:
    """Per venue, the newest sync_runs row matching `where` (ids grow with insertion)."""
    r = sync_runs.c
    newest = sa.select(r.venue_id, sa.func.max(r.id).label("id")).where(*where).group_by(r.venue_id).subquery()
    stmt = sa.select(sync_runs).join(newest, newest.c.id == r.id)
    return {row.venue_id: Run(row.id, row.kind, row.job_id, row.finished_at.replace(tzinfo=dt.UTC)
                              if row.finished_at.tzinfo is None else row.finished_at, bool(row.ok), row.error,
                              row.details or {})
            for row in conn.execute(stmt)}


def _latest_jobs(conn: sa.Connection, venue_ids: list[str]) -> dict[str, Job]:
    j = jobs.c
    newest = sa.select(j.venue_id, sa.func.max(j.id).label("id")).where(j.venue_id.in_(venue_ids)) \
        .group_by(j.venue_id).subquery()
    return {row.venue_id: Job.from_row(row) for row in conn.execute(sa.select(jobs).join(newest, newest.c.id == j.id))}


def _job_run_ids(conn: sa.Connection, job_ids: list[int]) -> set[int]:
    if not job_ids:
        return set()
    stmt = sa.select(sync_runs.c.job_id).where(sync_runs.c.job_id.in_(job_ids))
    return {int(i) for i in conn.execute(stmt).scalars()}


def _newest(*values: dt.datetime | None) -> dt.datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def venue_statuses(ctx: Context, *, venue_id: str | None = None, since_s: float | None = None,
                   errors_only: bool = False, now: dt.datetime | None = None) -> list[VenueStatus]:
    """One status per venue, filtered by venue, recent activity (`since_s`) and errors (red rows)."""
    now = now or utcnow()
    control: Engine = ctx.control
    venues = [get_venue(control, venue_id)] if venue_id else list_venues(control)
    ids = [v.id for v in venues]
    r = sync_runs.c
    with control.connect() as conn:
        last_any = _latest_runs(conn, [r.venue_id.in_(ids)])
        last_ok = _latest_runs(conn, [r.venue_id.in_(ids), r.ok.is_(True), r.kind != VERIFY_KIND])
        last_err = _latest_runs(conn, [r.venue_id.in_(ids), r.ok.is_(False)])
        last_verify = _latest_runs(conn, [r.venue_id.in_(ids), r.kind == VERIFY_KIND])
        last_rebuild = _latest_runs(conn, [r.venue_id.in_(ids), r.ok.is_(True), r.kind.in_(REBUILD_KINDS)])
        last_job = _latest_jobs(conn, ids)
        recorded = _job_run_ids(conn, [j.id for j in last_job.values() if j.state == "failed"])
    out = []
    for venue in venues:
        job = last_job.get(venue.id)
        failed_early = None
        if job and job.state == "failed" and job.id not in recorded and job.finished_at:
            # planning failed (unknown table, schema drift…): no run was recorded, but it is the newest error
            failed_early = Run(0, job.kind, job.id, job.finished_at, False, job.error, {})
        status = _status(ctx, venue, now, last_any.get(venue.id), last_ok.get(venue.id), last_err.get(venue.id),
                         last_verify.get(venue.id), last_rebuild.get(venue.id), job, failed_early)
        if errors_only and status.colour != RED:
            continue
        if since_s is not None and (status.updated_at is None
                                    or (now - status.updated_at).total_seconds() > since_s):
            continue
        out.append(status)
    return out


def _status(ctx: Context, venue: Venue, now: dt.datetime, last: Run | None, ok: Run | None, err: Run | None,
            verify: Run | None, rebuild: Run | None, job: Job | None, failed_early: Run | None) -> VenueStatus:
    settings = ctx.settings
    if failed_early and (last is None or failed_early.finished_at >= last.finished_at):
        last = failed_early
    if failed_early and (err is None or failed_early.finished_at >= err.finished_at):
        err = failed_early
    active = job if job is not None and job.state in JOB_ACTIVE_STATES else None
    # a verification's finding stands until a full resync or a repair has run since
    drift = bool(verify and verify.drift and (rebuild is None or rebuild.finished_at < verify.finished_at))
    drift = drift or bool(rebuild and rebuild.drift and (verify is None or verify.finished_at < rebuild.finished_at))
    lag_s = (now - ok.finished_at).total_seconds() if ok else None
    reasons: list[str] = []
    colour = GREEN
    if last is not None and not last.ok:
        colour = RED
        reasons.append(f"last {last.kind} sync failed")
    if ok is None:
        reasons.append("never synced successfully")
    elif lag_s is not None and lag_s > settings.stale_after_s:
        reasons.append(f"stale: no successful sync for {int(lag_s)}s (limit {settings.stale_after_s}s)")
    if version_below(venue.pos_version, settings.min_pos_version):
        reasons.append(f"POS version {venue.pos_version} below {settings.min_pos_version}: update needed")
    if drift:
        reasons.append("last verification found differences")
    if colour == GREEN and reasons:
        colour = YELLOW
    progress = None
    if active is not None:
        progress = round(100.0 * active.rows_done / active.rows_total, 1) if active.rows_total else 0.0
    services = DEGRADED if active is not None and active.kind in DEGRADING_KINDS else AVAILABLE
    updated = _newest(last.finished_at if last else None,
                      (job.finished_at or job.started_at or job.created_at) if job else None)
    return VenueStatus(
        venue_id=venue.id, name=venue.name, pos_version=venue.pos_version,
        last_success_at=ok.finished_at if ok else None, last_success_kind=ok.kind if ok else None,
        last_run_at=last.finished_at if last else None, last_run_kind=last.kind if last else None,
        last_run_ok=last.ok if last else None,
        last_error_at=err.finished_at if err else None, last_error=err.error if err else None,
        lag_s=lag_s, job_id=active.id if active else None, job_kind=active.kind if active else None,
        job_state=active.state if active else None, job_progress_pct=progress,
        job_rows_done=active.rows_done if active else None, job_rows_total=active.rows_total if active else None,
        services=services, drift=drift, updated_at=updated, colour=colour, reasons=tuple(reasons),
    )
