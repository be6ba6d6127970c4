"""Jobs and chunks in the control database: creation, claims with leases, checkpoints and progress.

Every state change is a conditional UPDATE (`WHERE state IN …`), so two workers racing for the same
transition cannot both win; the winner is the one whose UPDATE matched a row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudsync.control.schema import JOB_ACTIVE_STATES, chunks, job_events, jobs, sync_runs
from cloudsync.control.store import Bind, as_utc, reading, utcnow, writing
from cloudsync.errors import AlreadyRunning, ChunkBusy, JobStateError, StaleFence, UnknownJob
from cloudsync.keys import Key, decode_key, encode_key


@dataclass(frozen=True)
class Job:
    id: int
    venue_id: str
    kind: str
    state: str
    pause_reason: str | None
    requested_by: str | None
    options: dict[str, Any]
    fence_token: int
    feed_position: Any
    rows_total: int
    rows_done: int
    chunks_total: int
    chunks_done: int
    verification: dict[str, Any] | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    grant: str | None = None

    @property
    def active(self) -> bool:
        return self.state in JOB_ACTIVE_STATES

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at or utcnow()
        return max((end - self.started_at).total_seconds(), 1e-6)

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.elapsed_s if self.started_at else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rows_per_s
        if not self.active or rate <= 0:
            return None
        return max(self.rows_total - self.rows_done, 0) / rate

    @classmethod
    def from_row(cls, row: Any) -> Job:
        m = dict(row._mapping)
        for k in ("created_at", "started_at", "finished_at"):
            m[k] = as_utc(m[k])
        m["options"] = m["options"] or {}
        for k in ("updated_at", "finisher", "finish_claimed_at"):
            m.pop(k, None)
        return cls(**m)


@dataclass(frozen=True)
class Chunk:
    id: int
    job_id: int
    table_name: str
    seq: int
    lo: Key | None
    hi: Key | None
    state: str
    rows_est: int
    attempts: int
    deliveries: int
    lease_owner: str | None
    fence_token: int

    @classmethod
    def from_row(cls, row: Any) -> Chunk:
        m = row._mapping
        return cls(m["id"], m["job_id"], m["table_name"], m["seq"], decode_key(m["lo"]), decode_key(m["hi"]),
                   m["state"], m["rows_est"], m["attempts"], m["deliveries"], m["lease_owner"], m["fence_token"])


def create_job(control: Engine, venue_id: str, kind: str, requested_by: str | None = None,
               options: dict[str, Any] | None = None) -> int:
    """A new queued job; the partial unique index refuses a second active job for the venue."""
    now = utcnow()
    try:
        with control.begin() as conn:
            inserted = conn.execute(jobs.insert().values(
                venue_id=venue_id, kind=kind, state="queued", requested_by=requested_by,
                options=options or {}, created_at=now, updated_at=now,
            )).inserted_primary_key
            assert inserted is not None
            return int(inserted[0])
    except sa.exc.IntegrityError:
        running = active_job(control, venue_id)
        raise AlreadyRunning(venue_id, running.id if running else -1) from None


def active_job(control: Engine, venue_id: str) -> Job | None:
    with control.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.venue_id == venue_id, jobs.c.state.in_(JOB_ACTIVE_STATES))
                           .order_by(jobs.c.id.desc())).first()
    return Job.from_row(row) if row else None


def get_job(control: Bind, job_id: int) -> Job:
    with reading(control) as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise UnknownJob(job_id)
    return Job.from_row(row)


def job_or_read(control: Bind, job_id: int, job: Job | None = None) -> Job:
    """`job` when it is this job as the caller just read it, else the job as it is now."""
    return job if job is not None and job.id == job_id else get_job(control, job_id)


def list_jobs(control: Engine, venue_id: str | None = None, active_only: bool = False, limit: int = 50) -> list[Job]:
    stmt = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if venue_id:
        stmt = stmt.where(jobs.c.venue_id == venue_id)
    if active_only:
        stmt = stmt.where(jobs.c.state.in_(JOB_ACTIVE_STATES))
    with control.connect() as conn:
        return [Job.from_row(r) for r in conn.execute(stmt)]


def set_job(control: Bind, job_id: int, from_states: tuple[str, ...] | None = None, **values: Any) -> bool:
    """Update a job; with `from_states`, only if it is in one of them. True if the row changed."""
    stmt = jobs.update().where(jobs.c.id == job_id).values(updated_at=utcnow(), **values)
    if from_states is not None:
        stmt = stmt.where(jobs.c.state.in_(from_states))
    with writing(control) as conn:
        return bool(conn.execute(stmt).rowcount)


def bump_fence(control: Bind, job_id: int) -> int:
    """A new fencing token for the job: writers holding an older one are refused from now on."""
    with writing(control) as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(fence_token=jobs.c.fence_token + 1))
        return int(conn.execute(sa.select(jobs.c.fence_token).where(jobs.c.id == job_id)).scalar_one())


#: chunks to create: (table, lo, hi, estimated rows), the key range (lo, hi] (None: unbounded)
Planned = list[tuple[str, Key | None, Key | None, int]]


def insert_chunks(control: Bind, job_id: int, planned: Planned) -> None:
    now = utcnow()
    seqs: dict[str, int] = {}
    rows = []
    for table, lo, hi, est in planned:
        seq = seqs[table] = seqs.get(table, -1) + 1
        rows.append(dict(job_id=job_id, table_name=table, seq=seq, lo=encode_key(lo), hi=encode_key(hi),
                         state="pending", rows_est=est, updated_at=now))
    with writing(control) as conn:
        if rows:
            conn.execute(chunks.insert(), rows)
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(
            chunks_total=len(rows), rows_total=sum(r["rows_est"] for r in rows), updated_at=now))


def get_chunk(control: Engine, chunk_id: int) -> Chunk:
    with control.connect() as conn:
        row = conn.execute(sa.select(chunks).where(chunks.c.id == chunk_id)).first()
    if row is None:
        raise UnknownJob(f"chunk {chunk_id}")
    return Chunk.from_row(row)


def _relaxed(conn: sa.Connection) -> None:
    """This transaction's commit need not wait for the disk (PostgreSQL's synchronous_commit off).

    Only for lease and checkpoint writes the job recovers from: a crash of the control database loses
    at most its last fraction of a second of them, and a lost claim, renewal or checkpoint only makes
    a chunk run again (chunks are idempotent; a claim lost with its token is refused at the fence by owner).
    Job states, job fencing tokens and the audit log stay synchronous.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


@contextlib.contextmanager
def _lease_write(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction for a lease or checkpoint write on an engine (`_relaxed`), or a chunk's own session
    as it is (`cloudsync.control.store.chunk_session`: autocommit, already relaxed)."""
    with writing(bind) as conn:
        if conn is not bind:
            _relaxed(conn)
        yield conn


def _bp(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


# The statements a chunk runs on every run, built once per process: constructing an UPDATE costs more
# Python time than the database takes to run it (`cs_` names: a SET clause reserves the column names).
@functools.cache
def _claim_statement(returning: bool = False) -> sa.Update:
    if returning:
        return _claim_statement().returning(*chunks.c)
    c = chunks.c
    now = _bp("cs_now", c.updated_at)
    return (chunks.update()
            .where(c.id == _bp("cs_chunk", c.id), c.state.in_(("pending", "running")),
                   sa.or_(c.lease_owner.is_(None), c.lease_owner == _bp("cs_owner", c.lease_owner),
                          c.lease_expires_at < now, c.state == "pending"))
            .values(state="running", lease_owner=_bp("cs_owner", c.lease_owner),
                    lease_expires_at=_bp("cs_expires", c.lease_expires_at), fence_token=c.fence_token + 1,
                    deliveries=c.deliveries + 1, started_at=sa.func.coalesce(c.started_at, now), updated_at=now))


@functools.cache
def _renew_statement() -> sa.Update:
    c = chunks.c
    job_state = sa.select(jobs.c.state).where(jobs.c.id == _bp("cs_job", jobs.c.id)).scalar_subquery()
    return chunks.update().where(
        c.id == _bp("cs_chunk", c.id), c.lease_owner == _bp("cs_owner", c.lease_owner),
        c.fence_token == _bp("cs_token", c.fence_token), c.state == "running", job_state.in_(("running", "paused")),
    ).values(lease_expires_at=_bp("cs_expires", c.lease_expires_at), updated_at=_bp("cs_now", c.updated_at))


@functools.cache
def _finish_statements() -> tuple[sa.Update, sa.Update, sa.Update]:
    """(the chunk done, the job's counters, both in one statement for PostgreSQL)."""
    c = chunks.c
    now = _bp("cs_now", c.updated_at)
    done = chunks.update().where(
        c.id == _bp("cs_chunk", c.id), c.state == "running", c.fence_token == _bp("cs_token", c.fence_token),
    ).values(state="done", rows_read=_bp("cs_read", c.rows_read), rows_written=_bp("cs_written", c.rows_written),
             rows_deleted=_bp("cs_deleted", c.rows_deleted), duration_s=_bp("cs_duration", c.duration_s),
             finished_at=now, lease_owner=None, lease_expires_at=None, error=None, updated_at=now)
    counted = dict(rows_done=jobs.c.rows_done + _bp("cs_read", jobs.c.rows_done), chunks_done=jobs.c.chunks_done + 1,
                   updated_at=_bp("cs_now", jobs.c.updated_at))
    finished = done.returning(c.job_id).cte("cs_done")
    return (done, jobs.update().where(jobs.c.id == _bp("cs_job", jobs.c.id)).values(**counted),
            jobs.update().where(jobs.c.id == finished.c.job_id).values(**counted))


@functools.cache
def _unsettled_statement() -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(chunks).where(
        chunks.c.job_id == _bp("cs_job", chunks.c.job_id), chunks.c.state.in_(("pending", "running")))


def claim_chunk(control: Engine | Connection, chunk_id: int, owner: str, lease_s: int) -> Chunk | None:
    """Take the chunk's lease. None if it is already settled; ChunkBusy if another live owner holds it.

    The same owner (a redelivered message keeps its task id) may take over at once: with late acks
    and a prefetch of one, a redelivery means the previous attempt is gone.
    """
    now = utcnow()
    params = {"cs_chunk": chunk_id, "cs_owner": owner, "cs_now": now,
              "cs_expires": now + dt.timedelta(seconds=lease_s)}
    with _lease_write(control) as conn:
        if conn.dialect.update_returning:
            claimed = conn.execute(_claim_statement(returning=True), params).first()
            if claimed is not None:
                return Chunk.from_row(claimed)
        elif conn.execute(_claim_statement(), params).rowcount:
            return Chunk.from_row(conn.execute(sa.select(chunks).where(chunks.c.id == chunk_id)).one())
        row = conn.execute(sa.select(chunks).where(chunks.c.id == chunk_id)).first()
    if row is None:
        raise UnknownJob(f"chunk {chunk_id}")
    if row.state in ("done", "failed"):
        return None
    raise ChunkBusy(chunk_id, row.lease_owner or "?")


def check_fence(control: Engine | Connection, chunk: Chunk, owner: str, lease_s: int) -> None:
    """Refuse (StaleFence) unless this owner still holds the chunk with its token; renews the lease.

    One statement in the usual case: the renewal only matches while the job is still running.
    """
    now = utcnow()
    params = {"cs_chunk": chunk.id, "cs_job": chunk.job_id, "cs_owner": owner, "cs_token": chunk.fence_token,
              "cs_now": now, "cs_expires": now + dt.timedelta(seconds=lease_s)}
    with _lease_write(control) as conn:
        if conn.execute(_renew_statement(), params).rowcount:
            return
        state = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == chunk.job_id)).scalar_one()
        if state not in ("running", "paused"):
            raise JobStateError(chunk.job_id, state, "write")
        current = conn.execute(sa.select(chunks.c.fence_token).where(chunks.c.id == chunk.id)).scalar_one()
        raise StaleFence(chunk.job_id, chunk.id, chunk.fence_token, int(current))


def finish_chunk(control: Engine | Connection, chunk: Chunk, rows_read: int, rows_written: int,
                 rows_deleted: int, duration_s: float) -> bool:
    """Checkpoint the chunk as done; True for the single caller that then moves its job to `finishing`.

    The settle check runs after the commit (on the same connection), so whichever of two finishing
    chunks commits last sees both done; the conditional update lets only one of them win.
    """
    done, counted, both = _finish_statements()
    params = {"cs_chunk": chunk.id, "cs_job": chunk.job_id, "cs_token": chunk.fence_token, "cs_read": rows_read,
              "cs_written": rows_written, "cs_deleted": rows_deleted, "cs_duration": duration_s, "cs_now": utcnow()}
    if isinstance(control, Connection):  # a chunk's session (PostgreSQL): both updates in one statement
        control.execute(both, params)
        if _unsettled(control, chunk.job_id):
            return False
        return settle_job(control.engine, chunk.job_id, durable=True)
    with control.connect() as conn:
        with conn.begin():
            _relaxed(conn)
            if conn.execute(done, params).rowcount:
                conn.execute(counted, params)
        return _settle(conn, chunk.job_id)


def settle_job(control: Engine, job_id: int, durable: bool = False) -> bool:
    """True for the single caller that moves a job with no unsettled chunks to `finishing`.

    `durable`: `control` may be a relaxed engine (`chunk_session`); this commit waits for the disk anyway.
    """
    with control.connect() as conn:
        if durable and conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO ON")
                return _settle_in(conn, job_id)
        return _settle(conn, job_id)


def _unsettled(conn: Connection, job_id: int) -> int:
    return int(conn.execute(_unsettled_statement(), {"cs_job": job_id}).scalar_one())


def _settle(conn: Connection, job_id: int) -> bool:
    with conn.begin():
        return _settle_in(conn, job_id)


def _settle_in(conn: Connection, job_id: int) -> bool:
    if _unsettled(conn, job_id):
        return False
    return bool(conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state.in_(("running", "paused")))
                             .values(state="finishing", updated_at=utcnow())).rowcount)


def fail_chunk(control: Engine, chunk_id: int, error: str) -> None:
    now = utcnow()
    with control.begin() as conn:
        conn.execute(chunks.update().where(chunks.c.id == chunk_id, chunks.c.state.in_(("pending", "running")))
                     .values(state="failed", error=error, lease_owner=None, lease_expires_at=None,
                             finished_at=now, updated_at=now))


def release_chunk(control: Engine, chunk_id: int, owner: str, error: str | None = None,
                  count_attempt: bool = True) -> None:
    """Give the lease back after a transient error so a retry (by anyone) can take it at once."""
    c = chunks.c
    values: dict[str, Any] = dict(state="pending", lease_owner=None, lease_expires_at=None, error=error,
                                  updated_at=utcnow())
    if count_attempt:
        values["attempts"] = c.attempts + 1
    with control.begin() as conn:
        conn.execute(chunks.update().where(c.id == chunk_id, c.lease_owner == owner, c.state == "running")
                     .values(**values))


def unsettled_chunks(control: Bind, job_id: int) -> list[int]:
    with reading(control) as conn:
        return [r[0] for r in conn.execute(sa.select(chunks.c.id).where(
            chunks.c.job_id == job_id, chunks.c.state.in_(("pending", "running"))).order_by(chunks.c.id))]


def chunk_counts(control: Engine, job_id: int) -> dict[str, int]:
    with control.connect() as conn:
        rows = conn.execute(sa.select(chunks.c.state, sa.func.count()).where(chunks.c.job_id == job_id)
                            .group_by(chunks.c.state))
        return {state: int(n) for state, n in rows}


def table_progress(control: Bind, job_id: int) -> list[dict[str, Any]]:
    """Per table: chunks done/total, rows done/estimated, failed chunks."""
    c = chunks.c
    stmt = (sa.select(
        c.table_name,
        sa.func.count().label("chunks"),
        sa.func.sum(sa.case((c.state == "done", 1), else_=0)).label("done"),
        sa.func.sum(sa.case((c.state == "failed", 1), else_=0)).label("failed"),
        sa.func.sum(c.rows_est).label("rows_est"),
        sa.func.sum(c.rows_read).label("rows_done"),
    ).where(c.job_id == job_id).group_by(c.table_name).order_by(c.table_name))
    with reading(control) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def failed_chunks(control: Bind, job_id: int) -> list[dict[str, Any]]:
    with reading(control) as conn:
        rows = conn.execute(sa.select(chunks.c.id, chunks.c.table_name, chunks.c.lo, chunks.c.hi, chunks.c.error)
                            .where(chunks.c.job_id == job_id, chunks.c.state == "failed").order_by(chunks.c.id))
        return [dict(r._mapping) for r in rows]


def reset_failed_chunks(control: Engine, job_id: int) -> int:
    with control.begin() as conn:
        return conn.execute(chunks.update().where(chunks.c.job_id == job_id, chunks.c.state == "failed").values(
            state="pending", error=None, attempts=0, deliveries=0, finished_at=None, updated_at=utcnow())).rowcount


def log_event(control: Bind, venue_id: str, message: str, *, job_id: int | None = None,
              chunk_id: int | None = None, level: str = "INFO") -> None:
    with writing(control) as conn:
        conn.execute(job_events.insert().values(at=utcnow(), venue_id=venue_id, job_id=job_id, chunk_id=chunk_id,
                                                level=level, message=message))


def get_chunks(control: Engine, chunk_ids: list[int]) -> list[Chunk]:
    if not chunk_ids:
        return []
    with control.connect() as conn:
        rows = conn.execute(sa.select(chunks).where(chunks.c.id.in_(chunk_ids)).order_by(chunks.c.id))
        return [Chunk.from_row(r) for r in rows]


def record_sync_run(control: Bind, venue_id: str, kind: str, started_at: dt.datetime, ok: bool, *,
                    rows_applied: int = 0, error: str | None = None, job_id: int | None = None,
                    details: dict[str, Any] | None = None) -> None:
    """One finished sync of a venue (incremental, full, verify or repair), for `cloudsync status`."""
    with writing(control) as conn:
        conn.execute(sync_runs.insert().values(venue_id=venue_id, kind=kind, job_id=job_id, started_at=started_at,
                                               finished_at=utcnow(), ok=ok, rows_applied=rows_applied,
                                               error=error, details=details))


def claim_finish(control: Engine, job_id: int, owner: str, stale_s: int) -> bool:
    """Take the claim on finishing a job; True for exactly one live finisher.

    The same owner (a redelivered message) may take it again; anyone may take a claim older than
    `stale_s` (its holder is presumed dead).
    """
    now = utcnow()
    c = jobs.c
    with control.begin() as conn:
        return bool(conn.execute(jobs.update().where(
            c.id == job_id, c.state == "finishing",
            sa.or_(c.finisher.is_(None), c.finisher == owner,
                   c.finish_claimed_at < now - dt.timedelta(seconds=stale_s)),
        ).values(finisher=owner, finish_claimed_at=now, updated_at=now)).rowcount)


def holds_finish(control: Engine, job_id: int, owner: str) -> bool:
    with control.connect() as conn:
        return conn.execute(sa.select(jobs.c.id).where(
            jobs.c.id == job_id, jobs.c.state == "finishing", jobs.c.finisher == owner)).first() is not None


def close_job(control: Bind, job_id: int, owner: str, **values: Any) -> bool:
    """Leave `finishing` for `done`/`failed`, only while `owner` holds the finish claim."""
    stmt = jobs.update().where(jobs.c.id == job_id, jobs.c.state == "finishing", jobs.c.finisher == owner)
    with writing(control) as conn:
        return bool(conn.execute(stmt.values(finisher=None, finish_claimed_at=None, updated_at=utcnow(),
                                             **values)).rowcount)
