"""The full-resync engine against real databases, every source/target pair, without Celery."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cloudsync import resync
from cloudsync.control.venues import add_venue
from cloudsync.db import PING_IDLE_S, control_errors, engine_for
from cloudsync.errors import ControlUnavailable, NoPrimaryKey, SchemaDrift, UnknownTable
from tests.conftest import PG_URL
from tests.helpers import run_job_inline

pytestmark = pytest.mark.integration

PAIRS = [
    ("sqlite_db", "sqlite_db"),
    ("pg_db", "pg_db"),
    ("mysql_db", "pg_db"),
    ("odbc_db", "sqlite_db"),
    ("odbc_db", "pg_db"),
    ("pg_db", "sqlite_db"),
]


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_full_resync_makes_target_equal_source(request, make_ctx, make_venue, target_equals_source,
                                               source_kind, target_kind):
    source_dsn = request.getfixturevalue(source_kind)()
    cloud = request.getfixturevalue(target_kind)()
    ctx = make_ctx(cloud_url=cloud, chunk_rows=700)
    make_venue(ctx, source_dsn, rows=3000)
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done", job.error
    assert job.verification["match"], job.verification
    assert job.chunks_total > 7  # several chunks per large table
    target_equals_source(ctx, "v1")


def test_resync_removes_rows_deleted_at_the_venue_and_applies_updates(pg_db, make_ctx, make_venue,
                                                                     target_equals_source):
    src, cloud = pg_db(), pg_db()
    ctx = make_ctx(cloud_url=cloud, chunk_rows=500)
    make_venue(ctx, src, rows=3000)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("DELETE FROM transaction_lines WHERE line_no = 2"))
        conn.execute(sa.text("DELETE FROM members WHERE member_no > 'M00000100'"))
        conn.execute(sa.text("UPDATE products SET price = price + 1, name = name || ' ✓'"))
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")


def test_a_chunk_applied_twice_leaves_the_same_rows(sqlite_db, make_ctx, make_venue, target_equals_source):
    ctx = make_ctx(cloud_url=sqlite_db(), chunk_rows=400)
    make_venue(ctx, sqlite_db(), rows=2000)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)
    for chunk_id in chunk_ids:
        resync.run_chunk(ctx, job_id, chunk_id, owner="a")
    # replay the first chunks as a redelivered message would (the job is finishing: reopen it)
    from cloudsync.control import jobs as jobrepo
    from cloudsync.control.schema import chunks
    with ctx.control.begin() as conn:
        conn.execute(chunks.update().where(chunks.c.id.in_(chunk_ids[:3])).values(state="pending"))
    jobrepo.set_job(ctx.control, job_id, None, state="running")
    for chunk_id in chunk_ids[:3]:
        assert resync.run_chunk(ctx, job_id, chunk_id, owner="b").ran
    job = resync.finish_job(ctx, job_id)
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")


def test_composite_and_text_keys_with_hostile_values(pg_db, make_ctx, target_equals_source):
    src = pg_db()
    with engine_for(src).begin() as conn:
        conn.execute(sa.text('CREATE TABLE "Odd Table" ("Order" text, "line no" int, "select" numeric(18,6), '
                             'at timestamptz, blob bytea, PRIMARY KEY ("Order", "line no"))'))
        conn.execute(sa.text('INSERT INTO "Odd Table" SELECT '
                             "'k' || (i % 37) || ' ü''\"', i, i / 7.0, "
                             "timestamptz '2026-03-01 00:00+10' + i * interval '1 minute', "
                             "decode(md5(i::text), 'hex') FROM generate_series(1, 2500) i"))
    ctx = make_ctx(cloud_url=pg_db(), chunk_rows=300)
    add_venue(ctx.control, "v1", src)
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")


def test_refuses_a_table_without_primary_key_and_unknown_names(pg_db, make_ctx, make_venue):
    src = pg_db()
    ctx = make_ctx(cloud_url=pg_db())
    make_venue(ctx, src, rows=500)
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("CREATE TABLE audit_trail (at timestamp, what text)"))
    with pytest.raises(NoPrimaryKey, match="audit_trail"):
        add_venue(ctx.control, "v2", src, tables=["audit_trail"])
    with pytest.raises(UnknownTable, match="no_such_table"):
        add_venue(ctx.control, "v3", src, tables=["products", "no_such_table"])
    # discovered without --tables: the keyless table is reported as skipped, never synced
    _, skipped = add_venue(ctx.control, "v4", src)
    assert skipped == ["audit_trail"]


def test_schema_drift_adds_new_columns_and_stops_on_incompatible_types(pg_db, make_ctx, make_venue,
                                                                      target_equals_source):
    src = pg_db()
    ctx = make_ctx(cloud_url=pg_db())
    make_venue(ctx, src, rows=1000)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("ALTER TABLE products ADD COLUMN allergens text"))
        conn.execute(sa.text("UPDATE products SET allergens = 'nuts' WHERE product_id % 3 = 0"))
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("ALTER TABLE members ALTER COLUMN points TYPE text"))
    job_id = resync.request_full_resync(ctx, "v1")
    with pytest.raises(SchemaDrift, match="'members' column 'points'"):
        resync.plan_job(ctx, job_id)


def _copied_job(sqlite_db, make_ctx, make_venue):
    """A context and a job whose chunks have all run: only finishing is left."""
    ctx = make_ctx(cloud_url=sqlite_db(), chunk_rows=500)
    make_venue(ctx, sqlite_db(), rows=1000)
    job_id = resync.request_full_resync(ctx, "v1")
    for chunk_id in resync.plan_job(ctx, job_id):
        resync.run_chunk(ctx, job_id, chunk_id, owner="w")
    return ctx, job_id


def _close_records(ctx, job_id):
    """(sync runs, "resync done" events) recorded for the job."""
    from cloudsync.control.schema import job_events, sync_runs

    with ctx.control.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(sync_runs).where(
            sync_runs.c.job_id == job_id)).scalar_one()
        closed = conn.execute(sa.select(sa.func.count()).select_from(job_events).where(
            job_events.c.job_id == job_id, job_events.c.message.like("resync done%"))).scalar_one()
    return runs, closed


def test_only_one_finisher_closes_a_job(sqlite_db, make_ctx, make_venue):
    """A reaper's finish while the first finisher is slow: one closes the job, the other changes nothing."""
    from cloudsync.control import jobs as jobrepo

    ctx, job_id = _copied_job(sqlite_db, make_ctx, make_venue)
    assert jobrepo.claim_finish(ctx.control, job_id, "slow-first", resync.FINISH_CLAIM_STALE_S)
    job = resync.finish_job(ctx, job_id, owner="reaper")  # claim held: returns without closing
    assert job.state == "finishing"
    job = resync.finish_job(ctx, job_id, owner="slow-first")
    assert job.state == "done"
    assert resync.finish_job(ctx, job_id, owner="reaper").state == "done"
    assert _close_records(ctx, job_id) == (1, 1)  # the close, its run and its event commit together, once


def test_a_finisher_that_loses_its_claim_while_closing_writes_nothing(sqlite_db, make_ctx, make_venue, monkeypatch):
    """The claim taken over (as stale) between the finisher's check and its close: no state, run or event."""
    from cloudsync.control import jobs as jobrepo

    ctx, job_id = _copied_job(sqlite_db, make_ctx, make_venue)
    original = resync.resume_after_resync

    def taken_over(*args, **kwargs):
        original(*args, **kwargs)
        jobrepo.set_job(ctx.control, job_id, None, finisher="reaper")

    monkeypatch.setattr(resync, "resume_after_resync", taken_over)
    assert resync.finish_job(ctx, job_id, owner="slow").state == "finishing"
    assert _close_records(ctx, job_id) == (0, 0)
    monkeypatch.setattr(resync, "resume_after_resync", original)
    assert resync.finish_job(ctx, job_id, owner="reaper").state == "done"


def test_control_database_connections_dropped_mid_job_are_retried_not_lost(pg_db, sqlite_db, make_ctx, make_venue,
                                                                          target_equals_source):
    """Every control-database session killed between chunks: the job carries on and completes, nothing lost
    (a pooled connection idle for `PING_IDLE_S` is pinged, and replaced, before it is handed out); a
    connection that dies while in use, or within that second, is a transient error (the task retries)."""
    control = pg_db()
    ctx = make_ctx(control_url=control, cloud_url=sqlite_db(), chunk_rows=500)
    make_venue(ctx, sqlite_db(), rows=2000)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)
    assert resync.run_chunk(ctx, job_id, chunk_ids[0], owner="w").ran
    assert _terminate_sessions(sa.make_url(control).database), "no control-database session to drop"
    time.sleep(PING_IDLE_S)
    settled = False
    for chunk_id in chunk_ids[1:]:
        settled = resync.run_chunk(ctx, job_id, chunk_id, owner=f"w{chunk_id}").job_settled or settled
    assert settled
    job = resync.finish_job(ctx, job_id)
    assert job.state == "done" and job.verification["match"]
    target_equals_source(ctx, "v1")
    # a control connection killed while checked out: its next statement fails as ControlUnavailable
    with ctx.control.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        _terminate_sessions(sa.make_url(control).database, pid)
        with pytest.raises(ControlUnavailable, match="control database unavailable"), control_errors():
            conn.execute(sa.text("SELECT 1"))


def _terminate_sessions(database: str | None, pid: int | None = None) -> int:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid() AND (CAST(:pid AS int) IS NULL OR pid = :pid)"),
                {"db": database, "pid": pid}).all())
    finally:
        admin.dispose()
