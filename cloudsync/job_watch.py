"""Waiting for a job to end without polling the control database for it: whoever ends a job announces it
on the job's Redis channel, and a waiter wakes at once instead of at its next poll.

The control database stays the truth: a waiter reads the job's state there after every wake, and keeps
polling (every `poll_s`) when Redis is away or an announcement was lost, so a missed message costs at
most one poll interval, never a wait that does not end.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

import redis

from cloudsync.context import Context
from cloudsync.control.jobs import Job, get_job

log = logging.getLogger(__name__)


def channel(job_id: int) -> str:
    return f"cloudsync:job:{job_id}:ended"


def announce_end(ctx: Context, job_id: int) -> None:
    """Tell any waiter that the job has ended (after its state is committed). Best effort."""
    try:
        ctx.redis.publish(channel(job_id), b"1")
    except redis.RedisError as err:  # waiters fall back to their poll
        log.warning("job=%s end not announced: %s", job_id, err)


class JobWatch:
    """Subscribed before the first read of the job's state, so an end between a read and a wait is not missed."""

    def __init__(self, ctx: Context, job_id: int, poll_s: float) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.poll_s = poll_s
        self._pubsub: redis.client.PubSub | None = None
        try:
            pubsub = ctx.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel(job_id))
            self._pubsub = pubsub
        except redis.RedisError as err:
            log.debug("job=%s watched by polling only: %s", job_id, err)

    def job(self) -> Job:
        return get_job(self.ctx.control, self.job_id)

    def wait(self) -> None:
        """Sleep until the job's end is announced or `poll_s` has passed, whichever is first."""
        deadline = time.monotonic() + self.poll_s
        while (left := deadline - time.monotonic()) > 0:
            if self._pubsub is None:
                time.sleep(left)
                return
            try:
                if self._pubsub.get_message(timeout=left) is not None:
                    return
            except redis.RedisError:
                self.close()

    def until_ended(self, timeout_s: float | None = None) -> Job:
        """The job once it is no longer active (or as it is when `timeout_s` runs out)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = self.job()
        while job.active and (deadline is None or time.monotonic() < deadline):
            self.wait()
            job = self.job()
        return job

    def close(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                pubsub.close()
            except redis.RedisError:
                pass

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def wait_for_job(ctx: Context, job_id: int, poll_s: float = 1.0, timeout_s: float | None = None) -> Job:
    """The job once it has ended: woken by its announcement, or by polling every `poll_s` without one."""
    with JobWatch(ctx, job_id, poll_s) as watch:
        return watch.until_ended(timeout_s)
