"""Guards against real services: re-indexing on a real PostgreSQL, Redis rate limits across worker
processes, one resync per venue under 20 simultaneous CLI calls, trading hours and maintenance windows."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner

from cloudsync import chunk_run, guards, resync
from cloudsync.access.staff import init_admin
from cloudsync.cli import cli
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks, job_events
from cloudsync.db import engine_for
from cloudsync.dialects.mssql import maintenance as mssql_maintenance
from cloudsync.errors import AlreadyRunning, Paused, StaleFence
from cloudsync.guards import lease, ratelimit, rules
from cloudsync.guards.errors import TradingHours, UnderMaintenance
from cloudsync.processes import process_env
from tests.helpers import wait_for_job

pytestmark = pytest.mark.integration

PIN = "7391-guard"
ALL_DAY = "daily 00:00-24:00"


# -- helpers ----------------------------------------------------------------------------------------

def _staff_env(ctx) -> dict[str, str]:
    """An administrator (every cloud permission), logged in through the environment as automation does."""
    init_admin(ctx.control, "ops1", "Guard tests", PIN)
    return {"CLOUDSYNC_STAFF": "ops1", "CLOUDSYNC_PIN": PIN}


def _resync_args(venue: str, *extra: str) -> list[str]:
    return ["resync", "full", venue, "--yes", *extra]


def _cli(ctx, redis_url: str, args: list[str], env_extra: dict[str, str] | None = None,
         timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    """`cloudsync ARGS` as a real subprocess seeing this test's settings."""
    env = process_env(ctx.settings, redis_url, env_extra)
    return subprocess.run([sys.executable, "-m", "cloudsync", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def _invoke(ctx, redis_url: str, args: list[str], staff: dict[str, str] | None = None):
    """`cloudsync ARGS` in this process through click's CliRunner (commands that dispatch no tasks)."""
    return CliRunner().invoke(cli, args, env=process_env(ctx.settings, redis_url, staff), catch_exceptions=False)


def _events(ctx, venue: str) -> list[str]:
    with ctx.control.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(job_events.c.message).where(job_events.c.venue_id == venue)
                                           .order_by(job_events.c.id))]


# -- re-indexing -------------------------------------------------------------------------------------

def test_reindex_on_the_venue_pauses_chunks_and_the_job_completes_after(
        redis_url, pg_db, sqlite_db, make_ctx, make_venue, workers, target_equals_source):
    src = pg_db()
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=400)
    make_venue(ctx, src, rows=3000)
    staff = _staff_env(ctx)
    started = _cli(ctx, redis_url, _resync_args("v1"), staff)
    assert started.returncode == 0, started.stderr
    job_id = jobrepo.active_job(ctx.control, "v1").id

    # a REINDEX that stays running: it waits behind a transaction holding a conflicting lock
    blocker_engine = sa.create_engine(src)
    blocker = blocker_engine.connect()
    blocker.execute(sa.text("LOCK TABLE transaction_lines IN ROW EXCLUSIVE MODE"))
    reindex_error: list[BaseException] = []

    def reindex() -> None:
        try:
            with sa.create_engine(src, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(sa.text("REINDEX TABLE transaction_lines"))
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            reindex_error.append(err)

    thread = threading.Thread(target=reindex, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        while not (guards.maintenance_active(ctx, "v1") or "").startswith("re-indexing"):
            assert time.monotonic() < deadline, "REINDEX never showed as index maintenance"
            time.sleep(0.1)
        # a new resync is refused while it runs
        with pytest.raises(UnderMaintenance, match="REINDEX"):
            resync.request_full_resync(ctx, "v1")

        workers(ctx.settings, redis_url, count=1)
        job = wait_for_job(ctx, job_id, timeout_s=60, until=lambda j: j.state == "paused")
        assert "re-indexing" in job.pause_reason and "REINDEX" in job.pause_reason
        time.sleep(3)  # chunks keep waiting (short countdowns), none fails, none copies
        job = jobrepo.get_job(ctx.control, job_id)
        assert job.state == "paused" and job.chunks_done == 0
        assert jobrepo.chunk_counts(ctx.control, job_id).get("failed", 0) == 0
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(30)
        blocker_engine.dispose()
    assert not reindex_error, reindex_error
    job = wait_for_job(ctx, job_id, timeout_s=120)
    assert job.state == "done", job.error
    assert job.verification["match"]
    target_equals_source(ctx, "v1")
    assert any("paused: re-indexing" in m for m in _events(ctx, "v1"))


def test_create_index_and_declared_windows_hold_chunks_inline(redis_url, pg_db, sqlite_db, make_ctx, make_venue,
                                                              target_equals_source):
    src = pg_db()
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=500)
    make_venue(ctx, src, rows=1500)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)
    with _create_index_waiting(ctx, src, "ix_guard_test"):
        with pytest.raises(Paused) as paused:
            resync.run_chunk(ctx, job_id, chunk_ids[0], owner="inline")
        assert paused.value.countdown_s <= 10
        job = jobrepo.get_job(ctx.control, job_id)
        assert job.state == "paused" and "CREATE INDEX" in job.pause_reason
        assert jobrepo.get_chunk(ctx.control, chunk_ids[0]).deliveries == 0  # waiting spends no delivery

    window = rules.start_maintenance(ctx.control, "v1", "weekly rebuild", by="dba")
    assert guards.maintenance_active(ctx, "v1").startswith("maintenance window: weekly rebuild")
    with pytest.raises(Paused, match="maintenance window"):
        resync.run_chunk(ctx, job_id, chunk_ids[0], owner="inline")
    assert rules.stop_maintenance(ctx.control, "v1", by="dba").id == window.id
    assert guards.maintenance_active(ctx, "v1") is None
    for chunk_id in chunk_ids:
        assert resync.run_chunk(ctx, job_id, chunk_id, owner="inline").ran
    assert jobrepo.get_job(ctx.control, job_id).pause_reason is None
    job = resync.finish_job(ctx, job_id)
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")


def test_one_look_at_the_venue_database_serves_its_chunks_for_a_second(
        redis_url, pg_db, sqlite_db, make_ctx, make_venue, monkeypatch):
    """A look that found no index maintenance is shared through Redis for `reindex_check_ms`; one that
    found some is not: every chunk then looks for itself, and sees the maintenance end at once."""
    src = pg_db()
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=300, reindex_check_ms=3000)
    make_venue(ctx, src, rows=1500)
    looks: list[str | None] = []
    real = guards.index_maintenance

    def looked(venue_id: str, dsn: str) -> str | None:  # the real query, counted
        looks.append(found := real(venue_id, dsn))
        return found

    monkeypatch.setattr(guards, "index_maintenance", looked)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)
    looks.clear()  # the request's own check looks every time
    client = redis.Redis.from_url(redis_url)
    shared = "cloudsync:reindex-free:v1"

    assert resync.run_chunk(ctx, job_id, chunk_ids[0], owner="inline").ran
    assert resync.run_chunk(ctx, job_id, chunk_ids[1], owner="inline").ran
    assert looks == [None]  # the second chunk took the first one's look
    assert 0 < client.pttl(shared) <= 3000

    with _create_index_waiting(ctx, src, "ix_seen_test"):
        deadline = time.monotonic() + 20
        while client.exists(shared):  # the shared look expires by itself
            assert time.monotonic() < deadline
            time.sleep(0.05)
        looks.clear()  # the test's own looks above
        for chunk_id in chunk_ids[2:4]:  # each chunk looks for itself while maintenance is found
            with pytest.raises(Paused, match="CREATE INDEX"):
                resync.run_chunk(ctx, job_id, chunk_id, owner="inline")
        assert len(looks) == 2 and all("CREATE INDEX" in (found or "") for found in looks)
        assert not client.exists(shared)
    looks.clear()
    for chunk_id in chunk_ids[2:]:  # the first chunk after the maintenance runs: no stale finding kept it
        assert resync.run_chunk(ctx, job_id, chunk_id, owner="inline").ran
    assert looks[0] is None and all(found is None for found in looks) and len(looks) < len(chunk_ids) - 2
    job = resync.finish_job(ctx, job_id)
    assert job.state == "done" and job.verification["match"]

    # reindex_check_ms = 0: every chunk looks, nothing is shared
    quick = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=300, reindex_check_ms=0)
    make_venue(quick, pg_db(), rows=900, venue_id="v2")
    job_id = resync.request_full_resync(quick, "v2")
    chunk_ids = resync.plan_job(quick, job_id)
    looks.clear()
    for chunk_id in chunk_ids:
        assert resync.run_chunk(quick, job_id, chunk_id, owner="inline").ran
    assert len(looks) == len(chunk_ids) >= 3
    assert not client.exists("cloudsync:reindex-free:v2")
    client.close()


@contextlib.contextmanager
def _create_index_waiting(ctx, src: str, index: str) -> Iterator[None]:
    """A CREATE INDEX on the venue's products that stays running (it waits behind a transaction holding a
    conflicting lock) until the block ends; entered once the venue shows it as index maintenance."""
    blocker = engine_for(src).connect()
    blocker.execute(sa.text("LOCK TABLE products IN ROW EXCLUSIVE MODE"))
    thread = threading.Thread(target=lambda: _autocommit(src, f"CREATE INDEX {index} ON products (name)"),
                              daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        while not guards.maintenance_active(ctx, "v1"):
            assert time.monotonic() < deadline, "CREATE INDEX never showed as index maintenance"
            time.sleep(0.05)
        yield
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(30)


def _autocommit(dsn: str, sql: str) -> None:
    engine = sa.create_engine(dsn, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_mariadb_alter_table_shows_as_maintenance(mysql_db, make_ctx, make_venue):
    src = mysql_db()
    ctx = make_ctx()
    make_venue(ctx, src, rows=300)
    holder = engine_for(src).connect()
    holder.execute(sa.text("SELECT COUNT(*) FROM products"))  # keeps a metadata lock until rollback
    thread = threading.Thread(target=lambda: _autocommit(src, "ALTER TABLE products ADD INDEX ix_guard (name)"),
                              daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        while not guards.maintenance_active(ctx, "v1"):
            assert time.monotonic() < deadline, "ALTER TABLE never showed in the process list"
            time.sleep(0.1)
        assert "ALTER TABLE products" in guards.maintenance_active(ctx, "v1")
    finally:
        holder.rollback()
        holder.close()
        thread.join(30)
    assert guards.maintenance_active(ctx, "v1") is None


MSSQL_URL = os.environ.get("CLOUDSYNC_TEST_MSSQL_URL", "")


@pytest.mark.skipif(not MSSQL_URL, reason="needs a real SQL Server: set CLOUDSYNC_TEST_MSSQL_URL")
def test_sql_server_index_rebuild_shows_as_maintenance():
    engine = sa.create_engine(MSSQL_URL, isolation_level="AUTOCOMMIT")
    name = f"cs_guard_{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, v nvarchar(50))"))
        conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, N'a'), (2, N'b')"))
        assert mssql_maintenance.index_maintenance(conn) is None
    holder_engine = sa.create_engine(MSSQL_URL)
    holder = holder_engine.connect()
    holder.execute(sa.text(f"SELECT COUNT(*) FROM {name} WITH (TABLOCKX, HOLDLOCK)"))  # held until rollback
    thread = threading.Thread(target=lambda: _autocommit(MSSQL_URL, f"ALTER INDEX ALL ON {name} REBUILD"),
                              daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        found = None
        while found is None:
            assert time.monotonic() < deadline, "ALTER INDEX never showed in sys.dm_exec_requests"
            time.sleep(0.2)
            with engine.connect() as conn:
                found = mssql_maintenance.index_maintenance(conn)
        assert "ALTER INDEX" in found
    finally:
        holder.rollback()
        holder.close()
        thread.join(30)
        holder_engine.dispose()
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP TABLE {name}"))
        engine.dispose()


# -- rate limits --------------------------------------------------------------------------------------

def test_rate_limit_holds_across_two_worker_processes(redis_url, pg_db, make_ctx, make_venue, workers,
                                                      target_equals_source):
    rate = 2000
    ctx = make_ctx(cloud_url=pg_db(), redis_url=redis_url, chunk_rows=500)
    make_venue(ctx, pg_db(), rows=25000)
    rules.set_week(ctx.control, "v1", ALL_DAY)
    rules.set_limits(ctx.control, "v1", trading_rows_per_s=rate, trading_chunks=2)
    workers(ctx.settings, redis_url, count=2)
    started = _cli(ctx, redis_url, _resync_args("v1", "--during-trading"), _staff_env(ctx))
    assert started.returncode == 0, started.stderr
    job_id = jobrepo.active_job(ctx.control, "v1").id
    job = wait_for_job(ctx, job_id, timeout_s=120)
    assert job.state == "done", job.error
    with ctx.control.connect() as conn:
        rows = conn.execute(sa.select(chunks.c.started_at, chunks.c.rows_read).where(chunks.c.job_id == job_id)
                            .order_by(chunks.c.started_at)).all()
    # tokens are spent when a chunk starts: rows started per second between the first chunk start after
    # the bucket's initial one-second burst and the last chunk start
    starts = [(r.started_at.replace(tzinfo=None), r.rows_read) for r in rows]
    first = next(i for i, (at, _) in enumerate(starts) if (at - starts[0][0]).total_seconds() >= 1.5)
    last = len(starts) - 1
    window_s = (starts[last][0] - starts[first][0]).total_seconds()
    measured = sum(n for _, n in starts[first:last]) / window_s
    print(f"rate limit {rate} rows/s: measured {measured:.0f} rows/s over {window_s:.1f}s, {len(starts)} chunks")
    assert window_s > 8
    assert abs(measured - rate) / rate < 0.15, measured
    target_equals_source(ctx, "v1")


def test_trading_starts_during_a_resync_and_the_next_chunk_slows(redis_url, sqlite_db, make_ctx, make_venue,
                                                                 monkeypatch):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=300)
    make_venue(ctx, sqlite_db(), rows=3000)
    rules.set_week(ctx.control, "v1", "mon-fri 07:00-23:30; sat 10:00-02:00; sun closed")
    rules.set_limits(ctx.control, "v1", trading_rows_per_s=100, trading_chunks=1)
    before = dt.datetime(2026, 11, 23, 6, 58, tzinfo=dt.UTC)  # Monday 06:58 UTC (the venue is on UTC)
    monkeypatch.setattr(guards, "clock", lambda: before)
    job_id = resync.request_full_resync(ctx, "v1")  # outside trading hours: no override needed
    chunk_ids = resync.plan_job(ctx, job_id)
    large = [c.id for c in jobrepo.get_chunks(ctx.control, chunk_ids) if c.rows_est >= 300]
    for chunk_id in large[:3]:
        assert resync.run_chunk(ctx, job_id, chunk_id, owner="inline").ran  # full speed
    monkeypatch.setattr(guards, "clock", lambda: before + dt.timedelta(minutes=3))  # 07:01: trading
    assert guards.trading_now(ctx, "v1")
    assert resync.run_chunk(ctx, job_id, large[3], owner="inline").ran  # the bucket starts with 1 s of budget
    with pytest.raises(Paused, match=r"100 rows/s \(trading hours\)") as paused:
        resync.run_chunk(ctx, job_id, large[4], owner="inline")
    assert 1.0 < paused.value.countdown_s <= 30
    assert jobrepo.get_chunk(ctx.control, large[4]).state == "pending"
    job = jobrepo.get_job(ctx.control, job_id)
    assert job.state == "running" and job.pause_reason == "throttled: 100 rows/s (trading hours)"
    # other sync work of the venue shares the same budget
    with pytest.raises(Paused, match="throttled"):
        guards.throttle(ctx, "v1", 50)
    # trading ends: full speed again, and the status note goes
    monkeypatch.setattr(guards, "clock", lambda: dt.datetime(2026, 11, 23, 23, 45, tzinfo=dt.UTC))
    assert resync.run_chunk(ctx, job_id, large[4], owner="inline").ran
    assert jobrepo.get_job(ctx.control, job_id).pause_reason is None
    guards.throttle(ctx, "v1", 10_000)


def test_token_bucket_and_chunk_slots_in_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        assert ratelimit.take_rows(client, "vz", 250, 100).granted  # the first takes a burst into debt
        denied = ratelimit.take_rows(client, "vz", 10, 100)
        assert not denied.granted and 1.0 < denied.wait_s < 1.6  # about 150 rows of debt at 100 rows/s
        time.sleep(denied.wait_s + 0.05)
        assert ratelimit.take_rows(client, "vz", 10, 100).granted
        assert ratelimit.acquire_slot(client, "vz", "a", 2, 30)
        assert ratelimit.acquire_slot(client, "vz", "b", 2, 30)
        assert not ratelimit.acquire_slot(client, "vz", "c", 2, 30)
        assert ratelimit.acquire_slot(client, "vz", "a", 2, 30)  # re-entrant
        ratelimit.release_slot(client, "vz", "a")
        assert ratelimit.acquire_slot(client, "vz", "c", 2, 30)
        assert ratelimit.acquire_slot(client, "vz", "d", 3, 0.2)
        time.sleep(0.3)  # d's slot expired by itself (a killed worker)
        assert ratelimit.slots_in_use(client, "vz") == 2
    finally:
        client.close()


# -- one resync per venue -------------------------------------------------------------------------------

# Twenty `cloudsync resync full` at once: threads of one real process, each running the click command
# (one interpreter start instead of twenty keeps the test fast on a busy machine; click's context is
# per thread, the engine's connections are pooled per process, Redis and the control database are shared).
_TWENTY = """
import sys, threading
import click
from cloudsync.cli import cli

args, n = sys.argv[2:], int(sys.argv[1])
start = threading.Barrier(n)
results = [None] * n

def run(i):
    start.wait()
    try:
        cli.main(args, prog_name="cloudsync", standalone_mode=False)
        results[i] = "ok"
    except click.ClickException as err:
        results[i] = "error: " + err.format_message()
    except BaseException as err:
        results[i] = "crash: " + repr(err)

threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for r in results:
    print("RESULT", r)
"""


def test_twenty_simultaneous_resync_commands_give_exactly_one_job(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=300)
    env = process_env(ctx.settings, redis_url, _staff_env(ctx))
    done = subprocess.run([sys.executable, "-c", _TWENTY, "20", *_resync_args("v1")], env=env,
                          capture_output=True, text=True, timeout=240)
    results = [line[len("RESULT "):] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 20, done.stdout + done.stderr
    jobs = jobrepo.list_jobs(ctx.control, "v1")
    assert len(jobs) == 1
    assert results.count("ok") == 1, results
    for r in results:
        assert r == "ok" or f"already running: job {jobs[0].id}" in r, r
    assert f"job {jobs[0].id} queued" in done.stdout
    assert lease.holder(ctx.redis, "v1")[0] == jobs[0].id
    # and as separate processes, the refusal is one line and a non-zero exit
    again = _cli(ctx, redis_url, _resync_args("v1"), dict(env))
    assert again.returncode == 1 and f"already running: job {jobs[0].id}" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_a_stale_lease_holder_is_refused_and_an_ended_jobs_lease_is_taken_over(redis_url, sqlite_db, make_ctx,
                                                                               make_venue):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=500)
    make_venue(ctx, sqlite_db(), rows=1000)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)
    with pytest.raises(AlreadyRunning, match=f"already running: job {job_id}"):
        resync.request_full_resync(ctx, "v1")
    stale = jobrepo.get_job(ctx.control, job_id)  # what a worker that froze here would hold
    assert resync.run_chunk(ctx, job_id, chunk_ids[0], owner="w1").ran  # renews the lease with the token
    resync.cancel_job(ctx, job_id)
    assert lease.holder(ctx.redis, "v1") == (None, None)  # released on cancel
    resync.resume_job(ctx, job_id)  # a new fencing token on the job row
    assert resync.run_chunk(ctx, job_id, chunk_ids[1], owner="w2").ran  # takes the lease with it
    stale_run = dataclasses.replace(chunk_run.load(ctx.control, job_id, chunk_ids[2]), job=stale)
    with pytest.raises(StaleFence), guards.chunk_guard(ctx, stale_run):
        pytest.fail("a stale holder got through")
    assert jobrepo.get_chunk(ctx.control, chunk_ids[2]).state == "pending"
    # a lease whose job ended without releasing it (a planning failure, a lost message) is taken over
    resync.cancel_job(ctx, job_id)
    ctx.redis.set(lease.lease_key("v1"), f"{job_id}:99")
    second = resync.request_full_resync(ctx, "v1")
    assert lease.holder(ctx.redis, "v1")[0] == second


# -- trading hours and maintenance windows at the command line -------------------------------------------

def test_resync_in_trading_hours_is_refused_unless_during_trading(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=300)
    staff = _staff_env(ctx)
    bad = _invoke(ctx, redis_url, ["venue", "hours", "v1", "mon-fri 07:00-25:00"], staff)
    assert bad.exit_code == 1 and "not a time of day" in bad.output and "Traceback" not in bad.output
    # changing hours needs a logged-in cloud.admin; showing them does not
    anonymous = _invoke(ctx, redis_url, ["venue", "hours", "v1", "sun closed"])
    assert anonymous.exit_code == 1 and "Traceback" not in anonymous.output
    assert rules.load_schedule(ctx.control, "v1") is None
    ok = _invoke(ctx, redis_url, ["venue", "hours", "v1", ALL_DAY, "--except", "2026-12-25", "closed"], staff)
    assert ok.exit_code == 0, ok.output
    shown = _invoke(ctx, redis_url, ["venue", "hours", "v1"])
    assert "now:        trading" in shown.output and "exception:  2026-12-25 closed" in shown.output
    limits = _invoke(ctx, redis_url, ["venue", "limits", "v1"])
    assert "500 rows/s" in limits.output and "(defaults)" in limits.output
    limits = _invoke(ctx, redis_url, ["venue", "limits", "v1", "--trading-rows-per-s", "800",
                                      "--off-chunks", "4"], staff)
    assert "800 rows/s" in limits.output and "4 chunk(s) at once" in limits.output
    assert _invoke(ctx, redis_url, ["venue", "limits", "v1", "--off-chunks", "0"], staff).exit_code == 2

    refused = _cli(ctx, redis_url, _resync_args("v1"), staff)
    assert refused.returncode == 1 and "trading hours" in refused.stderr and "--during-trading" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert jobrepo.list_jobs(ctx.control, "v1") == []
    assert any("refused: trading hours" in m for m in _events(ctx, "v1"))
    with pytest.raises(TradingHours):
        resync.request_full_resync(ctx, "v1")

    allowed = _cli(ctx, redis_url, _resync_args("v1", "--during-trading"), staff)
    assert allowed.returncode == 0, allowed.stderr
    (job,) = jobrepo.list_jobs(ctx.control, "v1")
    assert job.options["during_trading"] is True
    assert job.options["trading_at_request"].endswith("UTC")
    assert any("during trading hours" in m and "--during-trading" in m for m in _events(ctx, "v1"))


def test_a_maintenance_window_refuses_a_resync_until_it_stops(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(redis_url=redis_url)
    make_venue(ctx, sqlite_db(), rows=300)
    staff = _staff_env(ctx)
    # opening a window needs cloud.maintenance
    anonymous = _invoke(ctx, redis_url, ["maintenance", "start", "v1", "--reason", "weekly index rebuild"])
    assert anonymous.exit_code == 1 and rules.open_window(ctx.control, "v1") is None
    opened = _invoke(ctx, redis_url, ["maintenance", "start", "v1", "--reason", "weekly index rebuild"], staff)
    assert opened.exit_code == 0, opened.output
    assert rules.open_window(ctx.control, "v1").started_by == "ops1"
    listed = _invoke(ctx, redis_url, ["maintenance", "list"])
    assert "v1" in listed.output and "weekly index rebuild" in listed.output
    refused = _cli(ctx, redis_url, _resync_args("v1", "--during-trading"), staff)
    assert refused.returncode == 1
    assert "maintenance window: weekly index rebuild" in refused.stderr and "Traceback" not in refused.stderr
    assert jobrepo.list_jobs(ctx.control, "v1") == []
    assert _invoke(ctx, redis_url, ["maintenance", "stop", "v1"], staff).exit_code == 0
    again = _invoke(ctx, redis_url, ["maintenance", "stop", "v1"], staff)
    assert again.exit_code == 1 and "no open maintenance window" in again.output
    nowhere = _invoke(ctx, redis_url, ["maintenance", "start", "nowhere", "--reason", "x"], staff)
    assert nowhere.exit_code == 1 and "unknown venue: nowhere" in nowhere.output
    started = _cli(ctx, redis_url, _resync_args("v1"), staff)
    assert started.returncode == 0, started.stderr
