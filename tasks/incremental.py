"""Incremental-sync tasks: one venue's changes since its feed position, or a batch of venues', applied now."""

from __future__ import annotations

from collections import Counter
from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from cloudsync import incremental, incremental_batch
from tasks.base import context
from worker.app import app

log = get_task_logger(__name__)

SYNC_EXPIRES_S = 60  # a sync still queued when the venue is due again is dropped, not stacked up


@app.task(name="cloudsync.incremental.sync", bind=True, max_retries=0, acks_late=False, ignore_result=True)
def sync(self: Task, venue_id: str, **shown: Any) -> dict[str, Any]:
    """Errors are not retried here: the dispatcher runs the venue again at its next interval."""
    result = incremental.sync_venue(context(), venue_id)
    return result.as_dict()


@app.task(name="cloudsync.incremental.sync_batch", bind=True, max_retries=0, acks_late=False, ignore_result=True)
def sync_batch(self: Task, venue_ids: list[str], **shown: Any) -> dict[str, Any]:
    """The venues the dispatcher found due, in one message. A venue whose backlog is bigger than its
    share of the batch continues at once in a `sync` of its own; failures are recorded per venue and
    the venue runs again at its next interval."""
    results = incremental_batch.sync_venues(context(), venue_ids)
    for r in results:
        if r.more:
            sync.apply_async(args=[r.venue_id], kwargs={"venue": r.venue_id}, expires=SYNC_EXPIRES_S)
    summary: dict[str, Any] = dict(Counter(r.state for r in results))
    summary["changed_keys"] = sum(r.changed_keys for r in results)
    failed = [r.venue_id for r in results if r.state == "failed"]
    if failed:
        summary["failed_venues"] = failed
    return summary
