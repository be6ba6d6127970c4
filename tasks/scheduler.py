"""Periodic control tasks that beat sends: the incremental dispatcher and the resync reaper."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from cloudsync import scheduling
from tasks.base import context, dispatcher
from tasks.incremental import SYNC_EXPIRES_S, sync_batch
from worker.app import app

log = get_task_logger(__name__)

REAPER_STALL_LEASES = 5  # a running job silent for this many chunk leases has lost its messages


@app.task(name="cloudsync.incremental.dispatch", bind=True, max_retries=0, acks_late=False,
          ignore_result=True)
def dispatch(self: Task) -> dict[str, Any]:
    """Enqueue the incremental sync of every venue whose interval has elapsed, in batches."""
    ctx = context()
    due = scheduling.due_venues(ctx)
    groups = scheduling.batches(ctx, due)
    for group in groups:
        sync_batch.apply_async(args=[group], kwargs={"venues": len(group)}, expires=SYNC_EXPIRES_S)
    return {"enqueued": len(due), "batches": len(groups)}


@app.task(name="cloudsync.control.reap", bind=True, max_retries=0, acks_late=False)
def reap(self: Task) -> dict[str, Any]:
    """Send again the resync work whose worker died or whose message was lost."""
    ctx = context()
    stalled = scheduling.stalled_work(ctx, stall_s=ctx.settings.chunk_lease_s * REAPER_STALL_LEASES)
    send = dispatcher()
    for job_id in stalled.plans:
        send.plan_job(job_id)
    for job_id, chunk_ids in stalled.chunks.items():
        send.run_chunks(job_id, chunk_ids)
    for job_id in stalled.finishes:
        send.finish_job(job_id)
    return {"plans": stalled.plans, "chunks": stalled.chunks, "finishes": stalled.finishes}
