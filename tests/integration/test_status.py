"""The venue status view, its exports, the logs archive and reset, on state made by real jobs.

Four venues run real full resyncs on a real Celery worker: v1 healthy, v2 synced long ago (its
history is aged by two hours: stale), v10 healthy but on an old POS version (10.4 < 10.37), v3 whose
source database is dropped after planning (its chunks fail: red).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from openpyxl import load_workbook

from cloudsync import resync
from cloudsync.cli import cli
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks, jobs, sync_runs, venue_tables
from cloudsync.control.venues import add_venue
from cloudsync.db import dispose_all
from cloudsync.demo.venue import create_demo_venue
from cloudsync.errors import UnknownVenue
from cloudsync.exporting import FILLS, HEADERS
from cloudsync.logs_archive import read_archive
from cloudsync.processes import process_env
from cloudsync.reset import ResetRefused, reset_venue
from cloudsync.services_state import read_published
from cloudsync.status import venue_statuses
from tests.access_helpers import make_staff, staff_env
from tests.helpers import run_job_inline, wait_for_job
from worker.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration


def _venue(ctx, venue_id: str, dsn: str, rows: int, pos: str) -> None:
    create_demo_venue(dsn, rows=rows, seed=len(venue_id))
    add_venue(ctx.control, venue_id, dsn, pos_version=pos, replace=True)


def _run(ctx, venue_id: str) -> None:
    job_id = resync.request_full_resync(ctx, venue_id, requested_by="test")
    CeleryDispatcher(ctx).plan_job(job_id)
    job = wait_for_job(ctx, job_id, timeout_s=120)
    assert job.state == "done", job.error


def _drop_pg_database(dsn: str) -> None:
    url = sa.make_url(dsn)
    dispose_all()
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {url.database} WITH (FORCE)"))
    finally:
        admin.dispose()


def _age(ctx, venue_id: str, by: dt.timedelta) -> None:
    with ctx.control.begin() as conn:
        for table, cols in ((sync_runs, ("started_at", "finished_at")),
                            (jobs, ("created_at", "started_at", "finished_at", "updated_at"))):
            for row in conn.execute(sa.select(table).where(table.c.venue_id == venue_id)).all():
                values = {c: getattr(row, c) - by for c in cols if getattr(row, c) is not None}
                conn.execute(table.update().where(table.c.id == row.id).values(**values))


def _by_id(statuses):
    return {s.venue_id: s for s in statuses}


def test_status_colours_filters_exports_and_logs(redis_url, sqlite_db, pg_db, make_ctx, workers, tmp_path):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=400, retry_max=1,
                   retry_countdown_max_s=1, stale_after_s=3600, min_pos_version="10.37")
    _venue(ctx, "v1", sqlite_db(), 1200, "10.52")
    _venue(ctx, "v2", sqlite_db(), 600, "10.52")
    _venue(ctx, "v10", sqlite_db(), 600, "10.4")
    broken_dsn = pg_db()
    _venue(ctx, "v3", broken_dsn, 600, "10.52")
    workers(ctx.settings, redis_url, count=1, concurrency=2)
    env = process_env(ctx.settings, redis_url)
    runner = CliRunner()
    # v1 followed live: `resync show --follow` ends with one full progress bar per table
    job_id = resync.request_full_resync(ctx, "v1", requested_by="test")
    CeleryDispatcher(ctx).plan_job(job_id)
    res = runner.invoke(cli, ["resync", "show", str(job_id), "--follow"], env=env)
    assert res.exit_code == 0, res.output
    bars = [line for line in res.output.splitlines() if "chunks" in line and "rows" in line and "[" in line]
    tables = {line.split()[0] for line in bars}
    assert {"clerks", "products", "transactions", "transaction_lines", "payments"} <= tables, res.output
    assert all("[" + "#" * 28 + "] 100.0%" in line for line in bars), res.output
    for venue_id in ("v2", "v10"):
        _run(ctx, venue_id)

    # v3: planned, then its database disappears before any chunk runs
    broken_job = resync.request_full_resync(ctx, "v3", requested_by="test")
    chunk_ids = resync.plan_job(ctx, broken_job)
    _drop_pg_database(broken_dsn)
    CeleryDispatcher(ctx).run_chunks(broken_job, chunk_ids)
    assert wait_for_job(ctx, broken_job, timeout_s=120).state == "failed"

    # v2 last synced two hours ago (shifted in Python: SQLite has no datetime arithmetic on these columns)
    _age(ctx, "v2", dt.timedelta(hours=2))

    # -- the engine's view -----------------------------------------------------------------------
    rows = _by_id(venue_statuses(ctx))
    assert {k: s.colour for k, s in rows.items()} == {"v1": "green", "v2": "yellow", "v10": "yellow", "v3": "red"}
    assert rows["v1"].reasons == () and rows["v1"].last_error is None and rows["v1"].lag_s < 600
    assert any("stale" in r for r in rows["v2"].reasons) and rows["v2"].lag_s > 7000
    assert any("POS version 10.4 below 10.37" in r for r in rows["v10"].reasons)
    assert "unavailable" in rows["v3"].last_error and rows["v3"].last_error_at is not None
    assert rows["v3"].last_success_at is None
    assert all(s.services == "available" and s.job_id is None for s in rows.values())
    assert [s.venue_id for s in venue_statuses(ctx, errors_only=True)] == ["v3"]
    assert sorted(s.venue_id for s in venue_statuses(ctx, since_s=3600)) == ["v1", "v10", "v3"]
    assert [s.venue_id for s in venue_statuses(ctx, venue_id="v10")] == ["v10"]
    with pytest.raises(UnknownVenue):
        venue_statuses(ctx, venue_id="nope")

    # a running full resync degrades the venue's services: in status and in the documented Redis key
    client = redis.Redis.from_url(redis_url)
    assert read_published(client, "v1").state == "available"
    running = resync.request_full_resync(ctx, "v1", requested_by="test")
    resync.plan_job(ctx, running)
    now = _by_id(venue_statuses(ctx))["v1"]
    assert (now.services, now.job_id, now.job_state, now.job_progress_pct) == ("degraded", running, "running", 0.0)
    published = read_published(client, "v1")
    assert (published.state, published.job_id) == ("degraded", running)
    resync.cancel_job(ctx, running, by="test")
    assert read_published(client, "v1").state == "available"
    assert _by_id(venue_statuses(ctx))["v1"].services == "available"

    # -- the CLI -----------------------------------------------------------------------------------
    res = runner.invoke(cli, ["status", "--json"], env=env)
    assert res.exit_code == 0, res.output
    data = {row["venue_id"]: row for row in json.loads(res.output)}
    assert {k: v["colour"] for k, v in data.items()} == {"v1": "green", "v2": "yellow", "v10": "yellow", "v3": "red"}
    res = runner.invoke(cli, ["status", "--errors-only"], env=env, color=True)
    assert res.exit_code == 0 and "v3" in res.output and "v1 " not in res.output
    assert "\x1b[31m" in res.output  # red
    res = runner.invoke(cli, ["status", "--since", "1h"], env=env)
    assert res.exit_code == 0 and "v2 " not in res.output and "v10" in res.output
    res = runner.invoke(cli, ["status", "--venue", "nope"], env=env)
    assert res.exit_code == 1 and "unknown venue: nope" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["status", "--since", "soon"], env=env)
    assert res.exit_code == 2 and "bad duration" in res.output

    xlsx, csv_path = tmp_path / "status.xlsx", tmp_path / "status.csv"
    res = runner.invoke(cli, ["status", "--xlsx", str(xlsx), "--csv", str(csv_path)], env=env)
    assert res.exit_code == 0, res.output
    sheet = load_workbook(xlsx).active
    assert [c.value for c in sheet[1]] == HEADERS
    got = {sheet.cell(r, 1).value: {c.fill.fgColor.rgb for c in sheet[r]} for r in range(2, sheet.max_row + 1)}
    assert got == {"v1": {FILLS["green"]}, "v10": {FILLS["yellow"]}, "v2": {FILLS["yellow"]}, "v3": {FILLS["red"]}}
    status_col = HEADERS.index("Status") + 1
    assert {sheet.cell(r, 1).value: sheet.cell(r, status_col).value for r in range(2, 6)}["v3"] == "red"
    csv_lines = csv_path.read_text().splitlines()
    assert csv_lines[0].startswith("Venue,Name,POS version") and len(csv_lines) == 5
    assert any(line.startswith("v3,") and "unavailable" in line for line in csv_lines)

    res = runner.invoke(cli, ["jobs", "--venue", "v3"], env=env)
    assert res.exit_code == 0 and f"{broken_job:>6} v3" in res.output and "failed" in res.output
    res = runner.invoke(cli, ["jobs", "--active"], env=env)
    assert res.exit_code == 0 and "no active jobs" in res.output

    # -- logs: each archive holds its venue's lines and no other venue's --------------------------
    for venue_id, name in (("v1", "v1.zip"), ("v3", "v3.tar.gz")):
        out = tmp_path / name
        res = runner.invoke(cli, ["logs", venue_id, "--since", "1h", "--max-size", "5MB", "-o", str(out)], env=env)
        assert res.exit_code == 0, res.output
        members = dict(read_archive(out))
        assert set(members) == {"MANIFEST.txt", "job_events.log", "jobs.jsonl", "chunks.csv", "sync_runs.jsonl",
                                "worker.log"}
        worker_log = members["worker.log"].splitlines()
        assert worker_log, f"no worker lines for {venue_id}"
        assert all(f"venue={venue_id} " in line for line in worker_log if line[:4].isdigit())
        # chunk lines carry the job and chunk ids
        assert any(" job=" in line and " chunk=" in line and "chunk=-" not in line for line in worker_log)
        for other in {"v1", "v2", "v3", "v10"} - {venue_id}:
            for member, text in members.items():
                assert f"venue={other} " not in text and f'"venue_id": "{other}"' not in text, (member, other)
        assert all(f"venue={venue_id} " in line for line in members["job_events.log"].splitlines())
        chunk_rows = members["chunks.csv"].splitlines()[1:]
        assert chunk_rows and all(row.startswith(f"{venue_id},") for row in chunk_rows)
    v3_events = dict(read_archive(tmp_path / "v3.tar.gz"))["job_events.log"]
    assert "resync failed" in v3_events and "unavailable" in v3_events
    res = runner.invoke(cli, ["logs", "v1", "-o", str(tmp_path / "tiny.zip"), "--max-size", "2KB"], env=env)
    assert res.exit_code == 0 and "left out" in res.output
    assert sum(len(t.encode()) for n, t in read_archive(tmp_path / "tiny.zip") if n != "MANIFEST.txt") <= 2048
    res = runner.invoke(cli, ["logs", "v1", "-o", str(tmp_path / "x.rar")], env=env)
    assert res.exit_code == 1 and ".zip" in res.output

    # -- one real process --------------------------------------------------------------------------
    proc = subprocess.run([sys.executable, "-m", "cloudsync", "status", "--json", "--venue", "v3"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["colour"] == "red" and "unavailable" in row["last_error"]
    proc = subprocess.run([sys.executable, "-m", "cloudsync", "status", "--venue", "nope"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "unknown venue: nope" in proc.stderr and "Traceback" not in proc.stderr


def _feed_table(ctx):
    """The incremental sync's positions table when its migration is present, else a stand-in of that shape."""
    with ctx.control.begin() as conn:
        if not sa.inspect(conn).has_table("feed_positions"):
            conn.execute(sa.text("CREATE TABLE feeds (venue_id VARCHAR(64) PRIMARY KEY, position TEXT)"))
            return sa.Table("feeds", sa.MetaData(), autoload_with=conn)
        return sa.Table("feed_positions", sa.MetaData(), autoload_with=conn)


def test_reset_then_full_resync_rebuilds(redis_url, sqlite_db, make_ctx, make_venue, target_equals_source):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, chunk_rows=500)
    make_venue(ctx, sqlite_db(), rows=1500, venue_id="r1")
    make_venue(ctx, sqlite_db(), rows=800, venue_id="r2", seed=3)
    for venue_id in ("r1", "r2"):
        assert run_job_inline(ctx, resync.request_full_resync(ctx, venue_id)).state == "done"
    feeds = _feed_table(ctx)
    now = dt.datetime.now(dt.UTC)
    with ctx.control.begin() as conn:
        for venue_id in ("r1", "r2"):
            row = {"venue_id": venue_id, "position": json.dumps({"version": 42})}
            if "feed" in feeds.c:
                row.update(feed="changelog", updated_at=now, position={"version": 42})
            conn.execute(feeds.insert().values(**row))
    # a failed job with checkpoints, so reset has something to clear
    failed = resync.request_full_resync(ctx, "r1")
    resync.plan_job(ctx, failed)
    resync.cancel_job(ctx, failed, by="test")

    # refused while a resync is active
    active = resync.request_full_resync(ctx, "r1")
    with pytest.raises(ResetRefused, match=f"job {active} is queued"):
        reset_venue(ctx, "r1")
    make_staff(ctx, "ops", "2468", ["cloud.reset"])  # reset needs cloud.reset
    env = process_env(ctx.settings, redis_url, staff_env("ops", "2468"))
    runner = CliRunner()
    res = runner.invoke(cli, ["reset", "r1", "--yes"], env=env)
    assert res.exit_code == 1 and "cancel it" in res.output and "Traceback" not in res.output
    resync.cancel_job(ctx, active, by="test")

    # asks first; "no" changes nothing
    res = runner.invoke(cli, ["reset", "r1", "--purge"], env=env, input="n\n")
    assert res.exit_code == 1 and "aborted" in res.output
    cloud = ctx.target
    with cloud.engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM transaction_lines WHERE venue_id = 'r1'")).scalar_one()
    assert before > 0

    res = runner.invoke(cli, ["reset", "r1", "--purge"], env=env, input="y\n")
    assert res.exit_code == 0, res.output
    assert "purged" in res.output
    with cloud.engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT venue_id, count(*) FROM transaction_lines GROUP BY venue_id")).all())
    assert counts.get("r1") is None and counts["r2"] > 0
    with ctx.control.connect() as conn:
        job_ids = [j for (j,) in conn.execute(sa.select(jobs.c.id).where(jobs.c.venue_id == "r1"))]
        assert conn.execute(sa.select(sa.func.count()).select_from(chunks)
                            .where(chunks.c.job_id.in_(job_ids))).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(venue_tables)
                            .where(venue_tables.c.venue_id == "r1")).scalar_one() == 0
        left = {v for (v,) in conn.execute(sa.select(feeds.c.venue_id))}
    assert left == {"r2"}
    assert jobrepo.get_job(ctx.control, failed).chunks_total == 0  # resuming it would plan afresh
    with ctx.control.connect() as conn:
        events = list(conn.execute(sa.text("SELECT message FROM job_events WHERE venue_id = 'r1'")).scalars())
    assert any("sync state reset" in e for e in events)

    # the next full resync rebuilds the venue's cloud copy; the other venue was never touched
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "r1"))
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "r1")
    target_equals_source(ctx, "r2")


def test_drift_and_planning_failures_colour_the_row(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, min_pos_version="1.0")
    make_venue(ctx, sqlite_db(), rows=600, venue_id="d1")
    assert run_job_inline(ctx, resync.request_full_resync(ctx, "d1")).state == "done"
    assert venue_statuses(ctx)[0].colour == "green"
    # the nightly verification (kind "verify") found the cloud copy differs: yellow until a resync repairs it
    started = dt.datetime.now(dt.UTC)
    jobrepo.record_sync_run(ctx.control, "d1", "verify", started, True, details={"drift": True})
    (row,) = venue_statuses(ctx)
    assert row.colour == "yellow" and row.drift and any("differences" in r for r in row.reasons)
    jobrepo.record_sync_run(ctx.control, "d1", "incremental", started, True, rows_applied=3)
    assert venue_statuses(ctx)[0].colour == "yellow"  # an incremental sync does not repair drift
    assert run_job_inline(ctx, resync.request_full_resync(ctx, "d1")).state == "done"
    (row,) = venue_statuses(ctx)
    assert row.colour == "green" and not row.drift
    jobrepo.record_sync_run(ctx.control, "d1", "verify", started, True, details={"drift": False})
    assert venue_statuses(ctx)[0].colour == "green"
    # a job whose planning fails for good records no run, but it is the venue's newest error
    job_id = resync.request_full_resync(ctx, "d1", options={"tables": ["no_such_table"]})
    with pytest.raises(Exception, match="no_such_table") as err:
        resync.plan_job(ctx, job_id)
    resync.plan_failed(ctx, job_id, err.value)
    (row,) = venue_statuses(ctx)
    assert row.colour == "red" and "no_such_table" in row.last_error and row.last_success_at is not None
    # a later successful sync clears the red
    jobrepo.record_sync_run(ctx.control, "d1", "incremental", dt.datetime.now(dt.UTC), True)
    assert venue_statuses(ctx)[0].colour == "green"
