"""Verification tasks: the nightly comparison of every venue with the cloud (scheduled by name)."""

from __future__ import annotations

from celery import Task

from cloudsync.errors import TransientError
from cloudsync.verify.nightly import verify_all
from tasks.base import backoff_s, context
from worker.app import app


@app.task(name="cloudsync.verify.nightly", bind=True, max_retries=3)
def nightly(self: Task) -> dict[str, str]:
    ctx = context()
    try:
        return verify_all(ctx)
    except TransientError as err:  # the control or cloud database itself was unreachable
        countdown_s = backoff_s(self.request.retries, ctx.settings.retry_countdown_max_s)
        raise self.retry(exc=err, countdown=countdown_s) from err
