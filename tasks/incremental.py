"""Incremental-sync task: one venue's changes since its feed position, applied now."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from cloudsync import incremental
from tasks.base import context
from worker.app import app

log = get_task_logger(__name__)


@app.task(name="cloudsync.incremental.sync", bind=True, max_retries=0, acks_late=False, ignore_result=True)
def sync(self: Task, venue_id: str, **shown: Any) -> dict[str, Any]:
    """Errors are not retried here: the dispatcher runs the venue again at its next interval."""
    result = incremental.sync_venue(context(), venue_id)
    return result.as_dict()
