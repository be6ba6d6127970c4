"""A waiter wakes when the job ends (announced on Redis), and still ends by polling when Redis is away."""

from __future__ import annotations

import threading
import time

from cloudsync import resync
from cloudsync.job_watch import JobWatch, wait_for_job

LONG_POLL_S = 30.0


def _cancel_later(ctx, job_id: int, delay_s: float) -> threading.Thread:
    def cancel() -> None:
        time.sleep(delay_s)
        resync.cancel_job(ctx, job_id, by="test")

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def test_a_waiter_wakes_when_the_job_ends_not_at_its_next_poll(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=100)
    job_id = resync.request_full_resync(ctx, "v1")
    started = time.monotonic()
    thread = _cancel_later(ctx, job_id, 0.5)
    job = wait_for_job(ctx, job_id, poll_s=LONG_POLL_S)
    waited = time.monotonic() - started
    thread.join()
    assert job.state == "cancelled"
    assert 0.5 <= waited < LONG_POLL_S / 3, f"woke after {waited:.1f}s"


def test_a_waiter_polls_when_redis_is_away(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=100)
    job_id = resync.request_full_resync(ctx, "v1")
    # the waiter's Redis refuses connections: it cannot subscribe, and finds the end by polling
    cut_off = make_ctx(cloud_url=ctx.settings.cloud_dsn, control_url=ctx.settings.control_dsn,
                       redis_url="redis://127.0.0.1:1/0")
    thread = _cancel_later(ctx, job_id, 0.3)
    started = time.monotonic()
    job = wait_for_job(cut_off, job_id, poll_s=0.2, timeout_s=60)
    thread.join()
    assert job.state == "cancelled" and time.monotonic() - started < 30


def test_a_watch_gives_up_at_its_timeout_with_the_job_as_it_is(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=100)
    job_id = resync.request_full_resync(ctx, "v1")
    with JobWatch(ctx, job_id, poll_s=0.1) as watch:
        job = watch.until_ended(timeout_s=0.5)
    assert job.state == "queued"
    resync.cancel_job(ctx, job_id, by="test")
