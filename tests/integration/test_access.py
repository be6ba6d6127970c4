"""Permitted staff only, for real: the CLI as a subprocess, forged messages in Redis against real
workers, and the append-only audit log on PostgreSQL."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cloudsync import resync
from cloudsync.access import audit, grants
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import chunks
from cloudsync.control.venues import resolve_tables
from tests.access_helpers import make_staff, one_line_error, run_cli
from tests.helpers import wait_for_job

pytestmark = pytest.mark.integration

ADMIN, ADMIN_PIN = "boss", "9876"


def refused(ctx, action=None):
    return [e for e in audit.read(ctx.control, outcome="refused") if action is None or e.action == action]


def test_init_then_five_wrong_pins_lock_the_account(redis_url, make_ctx):
    ctx = make_ctx(redis_url=redis_url)
    done = run_cli(ctx, redis_url, "init", "--staff", ADMIN, "--name", "The Boss", who=("", ADMIN_PIN), real=True)
    assert done.returncode == 0, done.stderr
    again = run_cli(ctx, redis_url, "init", "--staff", "other", "--name", "x", who=("", "1111"))
    one_line_error(again, "already initialised")
    make_staff(ctx, "ann", "2468", ["cloud.resync"])
    for attempt in range(1, 5):
        p = run_cli(ctx, redis_url, "resync", "cancel", "1", who=("ann", "0000"))
        one_line_error(p, "wrong staff code or PIN")
    fifth = run_cli(ctx, redis_url, "resync", "cancel", "1", who=("ann", "0000"), real=True)
    one_line_error(fifth, "now locked for 15 minutes")
    right_pin = run_cli(ctx, redis_url, "resync", "cancel", "1", who=("ann", "2468"))
    one_line_error(right_pin, "ann is locked until")
    reasons = [e.reason for e in refused(ctx, "resync.cancel") if e.staff == "ann"]
    assert len(reasons) == 6
    assert reasons[0].startswith("wrong PIN (1/5") and "account locked" in reasons[4] and reasons[5] == "account locked"
    # an administrator lifts the lock
    unlock = run_cli(ctx, redis_url, "staff", "unlock", "ann", who=(ADMIN, ADMIN_PIN))
    assert unlock.returncode == 0, unlock.stderr
    after = run_cli(ctx, redis_url, "resync", "cancel", "1", who=("ann", "2468"))
    one_line_error(after, "unknown job: 1")  # authenticated now; the command itself refuses
    last = audit.read(ctx.control, staff="ann")[-2:]
    assert [e.outcome for e in last] == ["allowed", "refused"]


def test_a_revoked_permission_refuses_and_everything_is_audited(redis_url, sqlite_db, make_ctx, make_venue):
    ctx = make_ctx(redis_url=redis_url, cloud_url=sqlite_db())
    make_venue(ctx, sqlite_db(), rows=1500)
    from cloudsync.access import staff as access

    access.init_admin(ctx.control, ADMIN, "Boss", ADMIN_PIN)
    make_staff(ctx, "ops", "1357", ["cloud.resync"])
    make_staff(ctx, "kim", "2468", ["cloud.onboard"])

    # the warning and the question: answering no changes nothing
    no = run_cli(ctx, redis_url, "resync", "full", "v1", who=("ops", "1357"), stdin="n\n", real=True)
    one_line_error(no, "aborted; nothing was changed")
    for text in ("Full resync of venue v1", "transaction_lines", "estimated duration", "degraded",
                 "Start the full resync?"):
        assert text in no.stdout, no.stdout
    assert jobrepo.list_jobs(ctx.control, "v1") == []

    wrong_group = run_cli(ctx, redis_url, "resync", "full", "v1", "--yes", who=("kim", "2468"))
    one_line_error(wrong_group, "kim lacks the permission cloud.resync")

    ok = run_cli(ctx, redis_url, "resync", "full", "v1", "--yes", who=("ops", "1357"))
    assert ok.returncode == 0, ok.stderr
    (job,) = jobrepo.list_jobs(ctx.control, "v1")
    assert job.requested_by == "ops" and job.grant
    grants.verify(grants.server_secret(ctx.settings), job.grant, job=job.id, venue="v1", action="resync.full",
                  staff="ops")

    revoke = run_cli(ctx, redis_url, "group", "revoke", "grp-ops", "cloud.resync", who=(ADMIN, ADMIN_PIN))
    assert revoke.returncode == 0, revoke.stderr
    cancel = run_cli(ctx, redis_url, "resync", "cancel", str(job.id), who=("ops", "1357"), real=True)
    one_line_error(cancel, "ops lacks the permission cloud.resync")
    assert jobrepo.get_job(ctx.control, job.id).state == "queued"  # nothing happened to the job

    # a staff member without cloud.admin cannot grant it back to themself
    regrant = run_cli(ctx, redis_url, "group", "grant", "grp-ops", "cloud.resync", who=("ops", "1357"))
    one_line_error(regrant, "lacks the permission cloud.admin")

    entries = audit.read(ctx.control, venue_id="v1")
    seen = [(e.staff, e.action, e.outcome) for e in entries]
    assert ("kim", "resync.full", "refused") in seen
    assert ("ops", "resync.full", "allowed") in seen
    assert ("ops", "resync.cancel", "refused") in seen
    assert any(e.reason == "aborted; nothing was changed" for e in entries)
    listing = run_cli(ctx, redis_url, "audit", "--venue", "v1", "--since", "1h", who=(ADMIN, ADMIN_PIN))
    assert listing.returncode == 0, listing.stderr
    assert "missing permission cloud.resync" in listing.stdout and "ops" in listing.stdout


def _target_rows(ctx, venue_id):
    from cloudsync.control.venues import get_venue
    from cloudsync.sources import open_source

    v = get_venue(ctx.control, venue_id)
    source = open_source(v.id, v.source_dsn, v.source_schema)
    total = 0
    for name in resolve_tables(v)[0]:
        cloud = ctx.target.cloud_table(source.table(name))
        total += sum(len(rows) for rows in ctx.target.read_range(cloud, venue_id, None, None, 5000))
    return total


def test_forged_messages_in_redis_are_refused_audited_and_change_nothing(redis_url, sqlite_db, make_ctx,
                                                                        make_venue, workers, target_equals_source):
    from celery import Celery

    from worker.config import celery_config
    from worker.dispatch import CeleryDispatcher

    ctx = make_ctx(redis_url=redis_url, cloud_url=sqlite_db(), chunk_rows=600)
    make_venue(ctx, sqlite_db(), rows=2000)
    job_id = resync.request_full_resync(ctx, "v1", requested_by="ops")
    chunk_ids = resync.plan_job(ctx, job_id)  # planned here: chunks pending, cloud tables created and empty
    workers(ctx.settings, redis_url, count=1)
    app = Celery("forger", set_as_current=False)  # anyone who can write to Redis can send messages
    app.conf.update(celery_config(ctx.settings, redis_url))
    secret = grants.server_secret(ctx.settings)
    later = int(time.time()) + 3600
    try:
        # no grant at all, a grant signed with another key, a genuine grant of another job, and a tampered one
        app.send_task("cloudsync.resync.chunk", args=[job_id, chunk_ids[0]], kwargs={"venue": "v1"})
        app.send_task("cloudsync.resync.chunk", args=[job_id, chunk_ids[1]], kwargs={
            "grant": grants.sign(b"attacker-key-000", grants.Claims(job_id, "v1", "resync.full", "ops", later))})
        app.send_task("cloudsync.resync.chunk", args=[job_id, chunk_ids[2]], kwargs={
            "grant": grants.sign(secret, grants.Claims(job_id + 1, "v1", "resync.full", "ops", later))})
        genuine = grants.sign(secret, grants.Claims(job_id, "v1", "resync.full", "ops", later))
        app.send_task("cloudsync.resync.chunk", args=[job_id, chunk_ids[3]], kwargs={"grant": genuine[:-3] + "AAA"})
        app.send_task("cloudsync.resync.finish", args=[job_id])
        deadline = time.monotonic() + 60
        while len(refused(ctx)) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        app.close()
    entries = refused(ctx)
    assert len(entries) == 5, entries
    assert {e.job_id for e in entries} == {job_id} and {e.venue_id for e in entries} == {"v1"}
    assert sorted(e.reason for e in entries) == sorted([
        "no grant", "bad grant signature", f"grant is for job {job_id + 1} resync.full of venue v1",
        "bad grant signature", "no grant"])
    assert {e.action for e in entries} == {"cloudsync.resync.chunk", "cloudsync.resync.finish"}
    # nothing was done: every chunk still pending, the job still running, the cloud empty
    with ctx.control.connect() as conn:
        states = {r[0] for r in conn.execute(sa.select(chunks.c.state).where(chunks.c.job_id == job_id))}
    assert states == {"pending"}
    job = jobrepo.get_job(ctx.control, job_id)
    assert job.state == "running" and job.rows_done == 0
    assert _target_rows(ctx, "v1") == 0
    # the same work dispatched by cloudsync (with the job's signed grant) runs and completes
    CeleryDispatcher(ctx).run_chunks(job_id, chunk_ids)
    job = wait_for_job(ctx, job_id, timeout_s=120)
    assert job.state == "done" and job.verification["match"], job.error
    target_equals_source(ctx, "v1")


@pytest.mark.parametrize("kind", ["pg_db", "sqlite_db"])
def test_audit_rows_cannot_be_updated_or_deleted(request, kind, make_ctx):
    ctx = make_ctx(control_url=request.getfixturevalue(kind)())
    audit.record(ctx.control, "resync.full", "refused", staff="ann", venue_id="v1", reason="missing permission")
    statements = ["UPDATE audit_log SET outcome = 'allowed'", "DELETE FROM audit_log"]
    if kind == "pg_db":
        statements.append("TRUNCATE audit_log")
    for sql in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with ctx.control.begin() as conn:
                conn.execute(sa.text(sql))
    (entry,) = audit.read(ctx.control)
    assert (entry.staff, entry.outcome, entry.reason) == ("ann", "refused", "missing permission")


def test_the_warning_estimates_from_past_throughput_and_knows_trading_hours(sqlite_db, make_ctx, make_venue):
    from cloudsync.access.preview import preview_full_resync
    from cloudsync.guards import rules
    from tests.helpers import run_job_inline

    ctx = make_ctx(cloud_url=sqlite_db())
    make_venue(ctx, sqlite_db(), rows=1500)
    first = preview_full_resync(ctx, "v1")
    assert all(t.counted for t in first.tables) and first.rows_total > 1500
    assert first.rows_per_s is None and first.estimate_s is None  # nothing to learn from yet
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    second = preview_full_resync(ctx, "v1")
    assert not any(t.counted for t in second.tables) and second.rows_total == first.rows_total == job.rows_done
    assert second.rows_per_s == pytest.approx(job.rows_done / job.elapsed_s)
    assert second.estimate_s == pytest.approx(second.rows_total / second.rows_per_s)
    assert second.trading is False
    rules.set_week(ctx.control, "v1", "daily 00:00-24:00")
    assert preview_full_resync(ctx, "v1").trading is True


def test_staff_groups_and_lockout_on_a_postgresql_control_database(pg_db, make_ctx):
    from cloudsync.access import staff as access
    from cloudsync.access.errors import AuthFailed, PermissionDenied

    ctx = make_ctx(control_url=pg_db())
    access.init_admin(ctx.control, ADMIN, "Boss", ADMIN_PIN)
    make_staff(ctx, "ann", "2468", ["cloud.resync", "cloud.maintenance"])
    assert access.authenticate(ctx.control, "ann", "2468").permissions == {"cloud.resync", "cloud.maintenance"}
    for _ in range(5):
        with pytest.raises(AuthFailed):
            access.authenticate(ctx.control, "ann", "0000")
    with pytest.raises(AuthFailed, match="locked until"):
        access.authenticate(ctx.control, "ann", "2468")
    access.unlock(ctx.control, "ann")
    access.revoke(ctx.control, "grp-ann", ["cloud.resync"])
    with pytest.raises(PermissionDenied, match="cloud.resync"):
        access.require_permission(access.authenticate(ctx.control, "ann", "2468"), "cloud.resync")
    assert [g.name for g in access.list_groups(ctx.control)] == ["administrators", "grp-ann"]
