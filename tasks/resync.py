"""Full-resync tasks: plan a job, run one chunk, finish a job."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from cloudsync import resync
from cloudsync.access.errors import GrantRefused
from cloudsync.access.grants import check_job_grant
from cloudsync.errors import ChunkBusy, JobStateError, Paused, StaleFence, TerminalError, TransientError
from tasks.base import backoff_s, context, dispatcher
from worker.app import app
from worker.progress import reporter

log = get_task_logger(__name__)


@app.task(name="cloudsync.resync.plan", bind=True, max_retries=None)
def plan(self: Task, job_id: int, **shown: Any) -> dict[str, Any]:
    ctx = context()
    _granted(ctx, job_id, shown, "cloudsync.resync.plan")
    try:
        chunk_ids = resync.plan_job(ctx, job_id)
    except TransientError as err:
        if self.request.retries >= ctx.settings.retry_max:
            raise
        raise self.retry(exc=err, countdown=_backoff(self, ctx)) from err
    except TerminalError as err:
        resync.plan_failed(ctx, job_id, err)
        raise
    dispatcher().run_chunks(job_id, chunk_ids)
    return {"job": job_id, "chunks": len(chunk_ids)}


# no result stored: nothing waits on a chunk's result (the control database holds its outcome, Flower
# sees it in the task's events), and storing it and its STARTED state cost two Redis writes per chunk
@app.task(name="cloudsync.resync.chunk", bind=True, max_retries=None, ignore_result=True)
def chunk(self: Task, job_id: int, chunk_id: int, **shown: Any) -> dict[str, Any]:
    ctx = context()
    owner = self.request.id or f"local-{chunk_id}"
    # transient failures so far: Celery's own retry count also counts the waits for a guard (a trading-hours
    # rate limit can hold a chunk many times), and those must not use up its retries after real errors
    failures = int(shown.pop("failures", 0))
    try:
        outcome = resync.run_chunk(ctx, job_id, chunk_id, owner, progress=reporter(self),
                                   admit=lambda job: _granted(ctx, job_id, shown, "cloudsync.resync.chunk", job))
    except GrantRefused:
        raise  # a forged or foreign message: refused and audited, and the chunk is left as it was
    except (Paused, ChunkBusy) as err:
        # a guard or a live lease holds the chunk: wait without counting a failed attempt
        resync.chunk_retrying(ctx, chunk_id, owner, err, count_attempt=False)
        countdown = getattr(err, "countdown_s", ctx.settings.chunk_lease_s / 2)
        raise self.retry(exc=err, countdown=countdown) from err
    except (StaleFence, JobStateError) as err:
        log.warning("job=%s chunk=%s abandoned: %s", job_id, chunk_id, err)
        return {"job": job_id, "chunk": chunk_id, "abandoned": str(err)}
    except TransientError as err:
        resync.chunk_retrying(ctx, chunk_id, owner, err)
        if failures < ctx.settings.retry_max:
            raise self.retry(exc=err, countdown=backoff_s(failures, ctx.settings.retry_countdown_max_s),
                             kwargs={**shown, "failures": failures + 1}) from err
        _fail(ctx, job_id, chunk_id, err)
        raise
    except TerminalError as err:
        _fail(ctx, job_id, chunk_id, err)
        raise
    if outcome.job_settled:
        dispatcher().finish_job(job_id, outcome.job)
    return {"job": job_id, "chunk": chunk_id, "rows": outcome.rows, "ran": outcome.ran}


def _granted(ctx: Any, job_id: int, shown: dict[str, Any], task: str, job: Any = None) -> None:
    """Before any work: a message without a valid signed grant is refused (GrantRefused, audited)."""
    check_job_grant(ctx.settings, ctx.control, job_id, shown.get("grant"), task, job=job)


def _fail(ctx: Any, job_id: int, chunk_id: int, err: BaseException) -> None:
    if resync.chunk_failed(ctx, job_id, chunk_id, err):
        dispatcher().finish_job(job_id)


@app.task(name="cloudsync.resync.finish", bind=True, max_retries=None)
def finish(self: Task, job_id: int, **shown: Any) -> dict[str, Any]:
    ctx = context()
    _granted(ctx, job_id, shown, "cloudsync.resync.finish")
    try:
        job = resync.finish_job(ctx, job_id, owner=self.request.id)
    except TransientError as err:
        if self.request.retries >= ctx.settings.retry_max:
            raise
        raise self.retry(exc=err, countdown=_backoff(self, ctx)) from err
    return {"job": job_id, "state": job.state, "verification": job.verification}


def _backoff(task: Task, ctx: Any) -> float:
    return backoff_s(task.request.retries, ctx.settings.retry_countdown_max_s)
