"""Faults injected while a full resync of a venue runs with a concurrent writer; nothing may be lost.

Every scenario: a PostgreSQL venue with a changelog feed; a writer process inserting, updating and
deleting at the venue the whole time; a full resync on real Celery workers (two worker processes,
a private Redis, the cloud in a private PostgreSQL cluster); a fault injected repeatedly; then,
once the writer has stopped, one incremental sync catches up the changes made during the resync.
Asserted: the job's final state, the cloud equals the venue row for row, no duplicate rows, and the
fault really happened. Each scenario also appends its figures to `CLOUDSYNC_CHAOS_RESULTS` (a JSON
lines file) when set: `python -m tests.chaos.report` runs this suite and turns them into
docs/reliability.md.

Size: `CLOUDSYNC_CHAOS_ROWS` rows per venue (default 20,000 so the suite fits CI on two cores;
`CLOUDSYNC_CHAOS_ROWS=300000` runs the issue's full size).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from cloudsync import incremental, resync
from cloudsync.cli.sync import beat_command
from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks
from cloudsync.control.venues import get_venue
from cloudsync.db import engine_for
from cloudsync.guards import rules
from cloudsync.processes import process_env, start, stop
from tests.chaos.faults import (
    PrivatePostgres,
    RedisServer,
    chunk_stats,
    compare,
    concurrent_writer,
    kill_random_pool_process,
    terminate_backends,
)
from tests.conftest import PG_URL
from tests.helpers import wait_for_job
from worker.dispatch import CeleryDispatcher
from worker.health import wait_for_workers

ROWS = int(os.environ.get("CLOUDSYNC_CHAOS_ROWS", "20000"))
CHUNK_ROWS = max(ROWS // 40, 250)  # about 60 chunks over the seven tables, whatever the size
JOB_TIMEOUT_S = 150 + ROWS / 200  # bounds the time a fault may cost
# the per-test timeout follows the scenario's own bound (300 s at the CI size, longer at full size)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(max(300, int(JOB_TIMEOUT_S + ROWS / 1000)))]
RESULTS = os.environ.get("CLOUDSYNC_CHAOS_RESULTS")


def record(scenario: str, **figures: Any) -> None:
    if RESULTS:
        with open(RESULTS, "a") as out:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
            out.write(json.dumps({"test": test, "scenario": scenario, "rows": ROWS, **figures}) + "\n")


def venue(pg_db: Callable[[], str], private_pg: PrivatePostgres, redis_server: RedisServer,
          make_ctx: Callable[..., Context], make_venue: Callable[..., object], **settings: Any) -> Context:
    """A PostgreSQL venue with a changelog feed, its cloud database in the private cluster."""
    cloud = private_pg.create_database(f"cloud_{uuid.uuid4().hex[:10]}")
    settings = {"chunk_rows": CHUNK_ROWS, "read_batch_rows": 250, "chunk_lease_s": 15,
                "retry_countdown_max_s": 2, "max_deliveries": 12, **settings}
    ctx = make_ctx(cloud_url=cloud, redis_url=redis_server.url, **settings)
    make_venue(ctx, pg_db(), rows=ROWS)
    incremental.install_changelog(ctx, "v1")
    incremental.configure_feed(ctx, "v1", "changelog")
    pace(ctx)
    return ctx


@pytest.fixture
def beat(tmp_path):
    """Factory: start the one `celery beat` (its reaper re-sends chunks whose worker hung or died, as in
    production); every beat started is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def make(ctx: Context, redis_url: str) -> subprocess.Popen[bytes]:
        proc = start(beat_command(), process_env(ctx.settings, redis_url), tmp_path / "logs" / "beat.log")
        started.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in started:
            stop(proc)


def start_resync(ctx: Context) -> int:
    job_id = resync.request_full_resync(ctx, "v1", requested_by="chaos")
    CeleryDispatcher(ctx).plan_job(job_id)
    return job_id


def running_chunks(ctx: Context, job_id: int) -> int:
    with ctx.control.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(chunks).where(
            chunks.c.job_id == job_id, chunks.c.state == "running")).scalar_one())


def settle(ctx: Context, job_id: int, expect: str = "done") -> tuple[Any, float]:
    job = wait_for_job(ctx, job_id, timeout_s=JOB_TIMEOUT_S)
    elapsed_s = (job.finished_at - job.created_at).total_seconds() if job.finished_at else float("nan")
    assert job.state == expect, f"job {job_id} ended {job.state}: {job.error}"
    return job, elapsed_s


def catch_up_and_compare(ctx: Context, scenario: str, job_id: int, elapsed_s: float, faults: int,
                         fault: str, **extra: Any) -> None:
    """The writer has stopped: one incremental sync, then the cloud must equal the venue exactly."""
    result = incremental.sync_venue(ctx, "v1", wait_s=60)
    assert result.state == "applied", result
    outcome = compare(ctx, "v1")
    stats = chunk_stats(ctx, job_id)
    record(scenario, fault=fault, faults=faults, elapsed_s=round(elapsed_s, 1), rows_source=outcome.rows_source,
           rows_lost=outcome.rows_lost, rows_extra=outcome.rows_extra, duplicates=outcome.duplicates,
           caught_up_keys=result.changed_keys, **stats, **extra)
    assert outcome.duplicates == 0, f"{outcome.duplicates} duplicate rows in the cloud"
    assert (outcome.rows_lost, outcome.rows_extra) == (0, 0), outcome.tables


def test_clean_run_baseline(pg_db, private_pg, redis_server, make_ctx, make_venue, workers, beat):
    """No fault: the reference time the other scenarios are compared with."""
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue)
    workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    with concurrent_writer(ctx_source(ctx), seed=11):
        job_id = start_resync(ctx)
        job, elapsed_s = settle(ctx, job_id)
    catch_up_and_compare(ctx, "clean run (baseline)", job_id, elapsed_s, 0, "none", outcome=job.state)


def pace(ctx: Context) -> None:
    """Hold every scenario's resync (the clean baseline's too, so "time added" compares like with like)
    to about 40 s of copying with the venue's own rate limit, so faults land during it however fast or
    loaded the machine is (an unthrottled 20,000-row resync takes a few seconds)."""
    rules.set_limits(ctx.control, "v1", off_rows_per_s=max(ROWS // 40, 100))


def ctx_source(ctx: Context) -> str:
    """The venue's source URL (the writer and the fault injectors connect to it directly)."""
    return get_venue(ctx.control, "v1").source_dsn


def test_sigkill_random_pool_process_ten_times(pg_db, private_pg, redis_server, make_ctx, make_venue, workers, beat):
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue)
    procs = workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    rnd = random.Random(3)
    kills = 0
    with concurrent_writer(ctx_source(ctx), seed=12):
        job_id = start_resync(ctx)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while kills < 10 and time.monotonic() < deadline and jobrepo.get_job(ctx.control, job_id).active:
            if running_chunks(ctx, job_id):
                time.sleep(rnd.uniform(0.2, 0.8))  # while the resync is copying
                if kill_random_pool_process([p.pid for p in procs], rnd):
                    kills += 1
                    time.sleep(rnd.uniform(0.5, 1.2))
            time.sleep(0.05)
        job, elapsed_s = settle(ctx, job_id)
    assert kills == 10, f"only {kills} kills landed before the job finished"
    catch_up_and_compare(ctx, "SIGKILL a random worker pool process", job_id, elapsed_s, kills,
                         "SIGKILL pool process ×10, 1–3 s apart", outcome=job.state)
    # redelivery of a chunk killed mid-copy is asserted deterministically in
    # tests/integration/test_celery_resync.py; here kills land wherever they land and are counted


def test_redis_restart_losing_its_data_then_resume(pg_db, private_pg, redis_server, make_ctx, make_venue, workers,
                                                   beat):
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue)
    procs = workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    with concurrent_writer(ctx_source(ctx), seed=13):
        job_id = start_resync(ctx)
        job = wait_for_job(ctx, job_id, timeout_s=60, until=lambda j: j.chunks_done >= 5 or not j.active)
        assert job.active, "the resync finished before Redis could be restarted; raise CLOUDSYNC_CHAOS_ROWS"
        redis_server.restart(down_s=1.0)  # every queued message, result, lease and lock is gone
        time.sleep(3)
        # the workers reconnect by themselves (worker/broker_fixes.py): none may have exited
        exited = [p.pid for p in procs if p.poll() is not None]
        assert not exited, f"worker(s) {exited} exited when Redis restarted"
        wait_for_workers(redis_server.url, len(procs), timeout_s=60)
        # the control database is the source of truth: resume re-enqueues every chunk not done yet
        action, pending = resync.resume_job(ctx, job_id)
        if action == "chunks":
            CeleryDispatcher(ctx).run_chunks(job_id, pending)
        elif action == "finish":
            CeleryDispatcher(ctx).finish_job(job_id)
        job, elapsed_s = settle(ctx, job_id)
    catch_up_and_compare(ctx, "Redis restarted, data lost; resume", job_id, elapsed_s, 1,
                         "redis-server SIGKILL + empty restart ×1", outcome=job.state,
                         resumed_chunks=len(pending))


def test_source_connections_dropped_repeatedly(pg_db, private_pg, redis_server, make_ctx, make_venue, workers, beat):
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue)
    workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    database = sa.make_url(ctx_source(ctx)).database
    drops = terminated = 0
    with concurrent_writer(ctx_source(ctx), seed=14):
        job_id = start_resync(ctx)
        wait_for_job(ctx, job_id, timeout_s=60, until=lambda j: j.state == "running" or not j.active)
        while drops < 8 and jobrepo.get_job(ctx.control, job_id).active:
            terminated += terminate_backends(PG_URL, database)  # every session: workers' and the writer's
            drops += 1
            time.sleep(1.5)
        job, elapsed_s = settle(ctx, job_id)
    assert drops >= 3 and terminated >= drops, (drops, terminated)
    catch_up_and_compare(ctx, "source connections dropped", job_id, elapsed_s, drops,
                         f"pg_terminate_backend ×{drops} ({terminated} sessions)", outcome=job.state)


def test_target_postgresql_restarted_mid_chunk(pg_db, private_pg, redis_server, make_ctx, make_venue, workers, beat):
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue)
    workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    restarts = 0
    with concurrent_writer(ctx_source(ctx), seed=15):
        job_id = start_resync(ctx)
        while restarts < 2 and jobrepo.get_job(ctx.control, job_id).active:
            if running_chunks(ctx, job_id) and jobrepo.get_job(ctx.control, job_id).chunks_done >= 3 * (restarts + 1):
                time.sleep(0.3)
                private_pg.restart(down_s=1.5)  # immediate stop: in-flight COPYs and upserts are lost
                restarts += 1
            time.sleep(0.05)
        job, elapsed_s = settle(ctx, job_id)
    assert restarts == 2, f"only {restarts} restarts before the job finished"
    catch_up_and_compare(ctx, "target PostgreSQL restarted mid-chunk", job_id, elapsed_s, restarts,
                         "pg_ctl stop -m immediate + start ×2", outcome=job.state)


def test_beat_sigkilled_mid_dispatch(pg_db, private_pg, redis_server, make_ctx, make_venue, workers, tmp_path):
    """Beat dispatches incremental syncs every tick; killed and restarted, the cloud still converges."""
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue, dispatch_interval_ms=200)
    incremental.configure_feed(ctx, "v1", "changelog", interval_s=1)
    workers(ctx.settings, redis_server.url, count=2)
    env = process_env(ctx.settings, redis_server.url)
    rnd = random.Random(6)
    kills = 0
    beat = start(beat_command(), env, tmp_path / "logs" / "beat.log")
    try:
        with concurrent_writer(ctx_source(ctx), seed=16):
            time.sleep(2.0)
            job_id = start_resync(ctx)
            while kills < 5:
                time.sleep(rnd.uniform(1.0, 2.5))  # beat sends every 200 ms: a kill lands mid-dispatch
                beat.kill()
                beat.wait(10)
                kills += 1
                beat = start(beat_command(), env, tmp_path / "logs" / "beat.log")
            job, elapsed_s = settle(ctx, job_id)
            time.sleep(2.0)
        # the writer stopped; beat's next dispatches alone must bring the cloud level with the venue
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and compare(ctx, "v1").rows_lost:
            time.sleep(1.0)
    finally:
        stop(beat)
    with ctx.control.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM sync_runs WHERE venue_id = 'v1' "
                                    "AND kind = 'incremental' AND ok")).scalar_one()
    assert runs >= 2, "beat dispatched no incremental syncs"
    catch_up_and_compare(ctx, "beat SIGKILLed mid-dispatch", job_id, elapsed_s, kills,
                         "SIGKILL celery beat ×5 (restarted)", outcome=job.state, beat_syncs=int(runs))


def test_poisoned_row_fails_its_chunk_then_resume_after_the_fix(pg_db, private_pg, redis_server, make_ctx,
                                                               make_venue, workers, beat):
    ctx = venue(pg_db, private_pg, redis_server, make_ctx, make_venue, retry_max=2)
    source_dsn = ctx_source(ctx)
    with engine_for(source_dsn).begin() as conn:  # a demo transaction the writer never touches
        poisoned = tuple(conn.execute(sa.text(
            "SELECT location_id, txn_id FROM transactions WHERE location_id <> 9 ORDER BY location_id, txn_id "
            "OFFSET (SELECT count(*) / 2 FROM transactions) LIMIT 1")).one())
        conn.execute(sa.text("UPDATE transactions SET note = 'POISON' WHERE location_id = :l AND txn_id = :t"),
                     {"l": poisoned[0], "t": poisoned[1]})
    from cloudsync.sources import open_source

    src = open_source("v1", source_dsn)
    src.refresh()
    ctx.target.ensure_table(src.table("transactions"))  # the cloud table exists before the resync plans
    with engine_for(ctx.settings.cloud_dsn, "t").begin() as conn:
        conn.execute(sa.text("ALTER TABLE transactions ADD CONSTRAINT no_poison "
                             "CHECK (note IS DISTINCT FROM 'POISON')"))
    workers(ctx.settings, redis_server.url, count=2)
    beat(ctx, redis_server.url)
    with concurrent_writer(source_dsn, seed=17):
        job_id = start_resync(ctx)
        job, elapsed_s = settle(ctx, job_id, expect="failed")
    assert "'transactions'" in job.error and "no_poison" in job.error, job.error
    with ctx.control.connect() as conn:
        rows = conn.execute(sa.select(chunks.c.table_name, chunks.c.state, chunks.c.lo, chunks.c.hi,
                                      chunks.c.error).where(chunks.c.job_id == job_id)).all()
    failed = [r for r in rows if r.state == "failed"]
    assert [r.table_name for r in failed] == ["transactions"], failed
    lo, hi = failed[0].lo, failed[0].hi
    assert (lo is None or tuple(lo) < poisoned) and (hi is None or poisoned <= tuple(hi)), (lo, hi, poisoned)
    bounds = f"({','.join(map(str, lo)) if lo else '…'}, {','.join(map(str, hi)) if hi else '…'}]"
    assert f"keys {bounds}" in job.error, (bounds, job.error)  # the key range, as the operator reads it
    assert all(r.state == "done" for r in rows if r.table_name != "transactions")  # other tables completed
    retried = chunk_stats(ctx, job_id)
    # the fix: the cloud's constraint goes; `resume` runs only what is not done
    with engine_for(ctx.settings.cloud_dsn, "t").begin() as conn:
        conn.execute(sa.text("ALTER TABLE transactions DROP CONSTRAINT no_poison"))
    action, pending = resync.resume_job(ctx, job_id)
    assert action == "chunks" and len(pending) == 1
    CeleryDispatcher(ctx).run_chunks(job_id, pending)
    job, resumed_s = settle(ctx, job_id)
    catch_up_and_compare(ctx, "poisoned row (cloud CHECK constraint)", job_id, elapsed_s, 1,
                         "a row the cloud rejects; fix; resume",
                         outcome=f"failed (transactions keys {bounds}), after the fix resumed: {job.state}",
                         failed_attempts=retried["attempts"])
