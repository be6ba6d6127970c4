"""Cloud onboarding for real: registration and `cloudsync onboard` as subprocesses, the initial full
resync run by real workers, and the separate messages for used, wrong, expired and unknown codes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudsync import onboarding
from cloudsync.access import audit
from cloudsync.access import staff as access
from cloudsync.access.errors import OnboardingRefused
from cloudsync.control.access_schema import venue_registrations
from cloudsync.control.jobs import list_jobs
from cloudsync.control.store import utcnow
from cloudsync.control.venues import get_venue, list_venues
from cloudsync.demo.venue import create_demo_venue
from tests.access_helpers import make_staff, one_line_error, run_cli
from tests.helpers import wait_for_job

pytestmark = pytest.mark.integration

ADMIN = ("boss", "9876")
ONBOARDER = ("kim", "2468")


@pytest.fixture
def staffed(make_ctx, redis_url, sqlite_db):
    """A context with an administrator and an onboarder (cloud.onboard only)."""

    def make(**settings):
        ctx = make_ctx(redis_url=redis_url, cloud_url=sqlite_db(), **settings)
        access.init_admin(ctx.control, ADMIN[0], "Boss", ADMIN[1])
        make_staff(ctx, *ONBOARDER, ["cloud.onboard"])
        return ctx

    return make


def test_register_issues_a_hashed_code_shown_once_and_written_to_the_outbox(staffed, redis_url):
    ctx = staffed()
    args = ["venue", "register", "--customer-number", "1001", "--company-name", "Harbour Bar & Grill",
            "--email", "manager@harbour.example"]
    refused = run_cli(ctx, redis_url, *args, who=ONBOARDER)
    one_line_error(refused, "kim lacks the permission cloud.admin")
    bad = run_cli(ctx, redis_url, *args[:-1], "not-an-address", who=ADMIN)
    one_line_error(bad, "is not an e-mail address")
    done = run_cli(ctx, redis_url, *args, who=ADMIN, real=True)
    assert done.returncode == 0, done.stderr
    code = done.stdout.split("one-time code (shown once): ")[1].split()[0]
    outbox = Path(done.stdout.split("written to ")[1].strip())
    mail = outbox.read_text()
    assert code in mail and "To: manager@harbour.example" in mail and "Harbour Bar & Grill" in mail
    assert outbox.stat().st_mode & 0o077 == 0
    with ctx.control.connect() as conn:
        stored = conn.execute(sa.select(venue_registrations)).one()
    assert code not in stored.code_hash and code.replace("-", "") not in stored.code_hash
    assert access.verify_secret(onboarding.normalise_code(code), stored.code_hash)
    assert dt.timedelta(days=6, hours=23) < stored.expires_at.replace(tzinfo=dt.UTC) - utcnow() <= dt.timedelta(days=7)
    assert [(e.staff, e.action, e.outcome) for e in audit.read(ctx.control)] == [
        ("kim", "venue.register", "refused"),  # no cloud.admin
        ("boss", "venue.register", "allowed"), ("boss", "venue.register", "refused"),  # bad e-mail
        ("boss", "venue.register", "allowed")]


def test_a_valid_code_onboards_the_venue_its_initial_resync_runs_and_the_code_is_then_used(
        staffed, redis_url, sqlite_db, workers, target_equals_source):
    ctx = staffed(chunk_rows=700)
    src = sqlite_db()
    create_demo_venue(src, rows=2500)
    _, code, _ = onboarding.register_venue(ctx.settings, ctx.control, "1001", "Harbour Bar & Grill",
                                           "manager@harbour.example", registered_by="boss")
    workers(ctx.settings, redis_url, count=1)
    # lower-case and without dashes, as people type it
    done = run_cli(ctx, redis_url, "onboard", "--customer-number", "1001", "--dsn", src, "--yes",
               "--timezone", "Australia/Sydney", "--pos-version", "10.52", who=ONBOARDER,
               stdin=code.replace("-", "").lower() + "\n", real=True)
    assert done.returncode == 0, done.stderr
    assert "Customer number: 1001" in done.stdout and "Company name:    Harbour Bar & Grill" in done.stdout
    assert "initial full resync queued: job" in done.stdout and "incremental sync enabled" in done.stdout
    venue = get_venue(ctx.control, "1001")
    assert venue.active and venue.name == "Harbour Bar & Grill" and venue.timezone == "Australia/Sydney"
    (job,) = list_jobs(ctx.control, "1001")
    assert job.requested_by == "kim" and job.grant
    job = wait_for_job(ctx, job.id, timeout_s=120)
    assert job.state == "done" and job.verification["match"], job.error
    target_equals_source(ctx, "1001")
    registration = onboarding.get_registration(ctx.control, "1001")
    assert registration.used_by == "kim" and registration.venue_id == "1001"

    again = run_cli(ctx, redis_url, "onboard", "--customer-number", "1001", "--dsn", src, "--yes", "--code", code,
                who=ONBOARDER)
    one_line_error(again, "was already used on", "ask for a new registration")
    assert len(list_jobs(ctx.control, "1001")) == 1


def test_wrong_expired_and_unknown_codes_each_get_their_own_message_and_change_nothing(
        staffed, redis_url, sqlite_db):
    ctx = staffed()
    src = sqlite_db()
    create_demo_venue(src, rows=300)
    _, code, _ = onboarding.register_venue(ctx.settings, ctx.control, "2002", "Corner Pub", "pub@corner.example",
                                           registered_by="boss")
    _, old_code, _ = onboarding.register_venue(ctx.settings, ctx.control, "3003", "Old Club", "club@old.example",
                                               registered_by="boss", now=utcnow() - dt.timedelta(days=8))
    base = ["onboard", "--dsn", src, "--yes", "--customer-number"]

    wrong = run_cli(ctx, redis_url, *base, "2002", "--code", "AAAA-BBBB-CCCC", who=ONBOARDER, real=True)
    one_line_error(wrong, "wrong authentication code for customer 2002")
    expired = run_cli(ctx, redis_url, *base, "3003", "--code", old_code, who=ONBOARDER)
    one_line_error(expired, "registration of customer 3003 expired on", "registered again")
    unknown = run_cli(ctx, redis_url, *base, "4004", "--code", code, who=ONBOARDER)
    one_line_error(unknown, "customer number 4004 is not registered")
    no_permission = run_cli(ctx, redis_url, *base, "2002", "--code", code, who=("boss2", "1111"))
    one_line_error(no_permission, "wrong staff code or PIN")
    make_staff(ctx, "ops", "1357", ["cloud.resync"])
    wrong_group = run_cli(ctx, redis_url, *base, "2002", "--code", code, who=("ops", "1357"))
    one_line_error(wrong_group, "ops lacks the permission cloud.onboard")
    unreachable = run_cli(ctx, redis_url, *base, "2002", "--code", code, "--pos-version", "10.30", who=ONBOARDER)
    one_line_error(unreachable, "POS version 10.30 is below 10.37")

    assert list_venues(ctx.control) == [] and list_jobs(ctx.control) == []
    assert onboarding.get_registration(ctx.control, "2002").used_at is None
    reasons = {e.reason for e in audit.read(ctx.control, action="onboard", outcome="refused")}
    assert {"missing permission cloud.onboard", "unknown staff code"} <= reasons
    assert any("wrong authentication code" in r for r in reasons)
    assert any("expired on" in r for r in reasons)

    # the right code still works after the wrong ones (no dispatcher: the job waits in the queue)
    done = onboarding.onboard(ctx, "2002", code, src, staff="kim")
    assert done.job_id is not None and get_venue(ctx.control, "2002").active
    with pytest.raises(OnboardingRefused, match="already used"):
        onboarding.onboard(ctx, "2002", code, src, staff="kim")


def test_onboarding_is_refused_while_the_venue_database_is_under_maintenance(staffed, sqlite_db):
    from cloudsync.guards import rules

    ctx = staffed()
    src = sqlite_db()
    create_demo_venue(src, rows=300)
    # a venue moved to a new server is onboarded again; its DBA is rebuilding indexes right now
    _, first, _ = onboarding.register_venue(ctx.settings, ctx.control, "5005", "Moved Bistro", "b@moved.example",
                                            registered_by="boss")
    onboarding.onboard(ctx, "5005", first, src, staff="kim")
    from cloudsync import resync

    resync.cancel_job(ctx, list_jobs(ctx.control, "5005")[0].id, by="test")
    rules.start_maintenance(ctx.control, "5005", "index rebuild after the move", by="dba")
    _, code, _ = onboarding.register_venue(ctx.settings, ctx.control, "5005", "Moved Bistro", "b@moved.example",
                                           registered_by="boss")
    with pytest.raises(OnboardingRefused, match="under maintenance .*index rebuild after the move"):
        onboarding.onboard(ctx, "5005", code, src, staff="kim")
    assert onboarding.get_registration(ctx.control, "5005").used_at is None  # the code is not spent
    rules.stop_maintenance(ctx.control, "5005", by="dba")
    done = onboarding.onboard(ctx, "5005", code, src, staff="kim")
    assert done.job_id is not None


def test_an_unreachable_venue_database_is_refused_with_the_password_masked(staffed):
    ctx = staffed()
    _, code, _ = onboarding.register_venue(ctx.settings, ctx.control, "6006", "Far Away", "f@far.example",
                                           registered_by="boss")
    dsn = "postgresql+psycopg://sync:s3cret-pw@127.0.0.1:1/pos"
    with pytest.raises(OnboardingRefused, match="cannot reach the venue database") as err:
        onboarding.onboard(ctx, "6006", code, dsn, staff="kim")
    assert "s3cret-pw" not in str(err.value)
    assert onboarding.get_registration(ctx.control, "6006").used_at is None
