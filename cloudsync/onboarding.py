"""Cloud onboarding of a venue: registration with a one-time code, then `onboard` with that code.

    register_venue  (cloud side, cloud.admin)  customer number + company name + e-mail → a one-time
                    code, stored hashed, expiring (7 days by default), written to the outbox file
                    that stands in for the "Cloud Onboarding Authentication Code" e-mail
    onboard         (venue side, cloud.onboard) checks the code (single use), the venue database's
                    connection and version, refuses while it is being re-indexed, connects the venue,
                    enqueues its initial full resync and enables its incremental schedule

An unknown customer number, an expired registration, a used code and a wrong code each get their
own message, because each needs a different action from the person onboarding.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync import resync
from cloudsync.access import grants
from cloudsync.access.errors import OnboardingRefused
from cloudsync.access.staff import hash_secret, verify_secret
from cloudsync.context import Context, Dispatcher
from cloudsync.control import jobs as jobrepo
from cloudsync.control.access_schema import venue_registrations
from cloudsync.control.schema import venues
from cloudsync.control.store import as_utc, utcnow
from cloudsync.control.venues import VENUE_ID, Venue, add_venue, get_venue
from cloudsync.db import engine_for
from cloudsync.dsn import mask_dsn
from cloudsync.errors import AlreadyRunning, CloudSyncError, ConfigError
from cloudsync.settings import Settings
from cloudsync.sources import open_source

log = logging.getLogger(__name__)

CODE_TTL_S = 7 * 86400
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are typed from an e-mail
CODE_CHARS = 12
OUTBOX_DIR = "outbox"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Registration:
    customer_number: str
    company_name: str
    email: str
    expires_at: dt.datetime
    used_at: dt.datetime | None
    used_by: str | None
    venue_id: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class Onboarded:
    venue: Venue
    job_id: int | None  # None when a resync of the venue was already running
    server_version: str
    skipped_tables: list[str]


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_CHARS, 4))


def normalise_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").upper()


def _row_to_registration(row: sa.Row) -> Registration:
    return Registration(row.customer_number, row.company_name, row.email, as_utc(row.expires_at) or row.expires_at,
                        as_utc(row.used_at), row.used_by, row.venue_id, as_utc(row.created_at) or row.created_at)


def register_venue(settings: Settings, control: Engine, customer_number: str, company_name: str, email: str, *,
                   registered_by: str | None, ttl_s: int = CODE_TTL_S,
                   now: dt.datetime | None = None) -> tuple[Registration, str, Path]:
    """A new registration (replacing an older one and its code). Returns it, the code and the outbox file."""
    if not VENUE_ID.match(customer_number or ""):
        raise ConfigError("customer number", f"{customer_number!r} must be letters and digits (at most 64)")
    if not company_name.strip():
        raise ConfigError("company name", "must not be empty")
    if not EMAIL.match(email or ""):
        raise ConfigError("email", f"{email!r} is not an e-mail address")
    if ttl_s <= 0:
        raise ConfigError("expiry", "must be positive")
    now = now or utcnow()
    code = new_code()
    values = dict(company_name=company_name.strip(), email=email, code_hash=hash_secret(normalise_code(code)),
                  expires_at=now + dt.timedelta(seconds=ttl_s), used_at=None, used_by=None, venue_id=None,
                  registered_by=registered_by, created_at=now)
    with control.begin() as conn:
        exists = conn.execute(sa.select(venue_registrations.c.customer_number).where(
            venue_registrations.c.customer_number == customer_number)).first()
        if exists:
            conn.execute(venue_registrations.update().where(
                venue_registrations.c.customer_number == customer_number).values(**values))
        else:
            conn.execute(venue_registrations.insert().values(customer_number=customer_number, **values))
    registration = get_registration(control, customer_number)
    outbox = _write_outbox(settings, registration, code)
    log.info("customer=%s registered for onboarding by %s; code expires %s", customer_number, registered_by,
             registration.expires_at.isoformat())
    return registration, code, outbox


def _write_outbox(settings: Settings, reg: Registration, code: str) -> Path:
    """The e-mail a venue would receive, as a file only this user can read."""
    folder = settings.home_path / OUTBOX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{reg.created_at.strftime('%Y%m%dT%H%M%S')}-{reg.customer_number}.eml"
    body = (
        f"To: {reg.email}\n"
        f"Subject: Cloud Onboarding Authentication Code for customer {reg.customer_number}\n\n"
        f"Customer number: {reg.customer_number}\n"
        f"Company name:    {reg.company_name}\n\n"
        f"Your one-time authentication code is: {code}\n"
        f"It can be used once and expires on {reg.expires_at.strftime('%Y-%m-%d %H:%M UTC')}.\n\n"
        f"On the venue's server run:  cloudsync onboard --customer-number {reg.customer_number} --dsn …\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(body)
    return path


def get_registration(control: Engine, customer_number: str) -> Registration:
    with control.connect() as conn:
        row = conn.execute(sa.select(venue_registrations).where(
            venue_registrations.c.customer_number == customer_number)).first()
    if row is None:
        raise OnboardingRefused(customer_number, f"customer number {customer_number} is not registered for cloud "
                                "onboarding; ask for a registration (`cloudsync venue register`)",
                                reason="unknown customer number")
    return _row_to_registration(row)


def check_code(control: Engine, customer_number: str, code: str, now: dt.datetime | None = None) -> Registration:
    """The registration if `code` may onboard it now; OnboardingRefused with the case's own message."""
    now = now or utcnow()
    reg = get_registration(control, customer_number)
    with control.connect() as conn:
        stored = conn.execute(sa.select(venue_registrations.c.code_hash).where(
            venue_registrations.c.customer_number == customer_number)).scalar_one()
    if reg.used_at is not None:
        raise OnboardingRefused(
            customer_number, f"the authentication code of customer {customer_number} was already used on "
            f"{reg.used_at.strftime('%Y-%m-%d %H:%M UTC')}; a code works once: ask for a new registration",
            reason="code already used")
    if now >= reg.expires_at:
        raise OnboardingRefused(
            customer_number, f"the registration of customer {customer_number} expired on "
            f"{reg.expires_at.strftime('%Y-%m-%d %H:%M UTC')}; ask for the venue to be registered again",
            reason="registration expired")
    if not verify_secret(normalise_code(code), stored):
        raise OnboardingRefused(customer_number, f"wrong authentication code for customer {customer_number}; "
                                "check the code in the onboarding e-mail", reason="wrong code")
    return reg


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text or "")
    if not parts:
        raise ConfigError("POS version", f"{text!r} is not a version number")
    return tuple(int(p) for p in parts)


def check_source(settings: Settings, customer_number: str, source_dsn: str, schema: str | None,
                 pos_version: str | None) -> str:
    """Connect to the venue database and check versions; returns the database server's version."""
    if pos_version is not None and _version_tuple(pos_version) < _version_tuple(settings.min_pos_version):
        raise OnboardingRefused(customer_number, f"POS version {pos_version} is below {settings.min_pos_version}, "
                                "the first version cloud onboarding supports; upgrade the venue first",
                                reason=f"POS version {pos_version} too old")
    try:
        source = open_source(customer_number, source_dsn, schema)
        source.table_names()
        engine = engine_for(source_dsn)
        with engine.connect():
            info = engine.dialect.server_version_info
    except (CloudSyncError, sa.exc.SQLAlchemyError) as err:
        detail = str(getattr(err, "orig", err)).splitlines()[0]
        raise OnboardingRefused(customer_number, f"cannot reach the venue database {mask_dsn(source_dsn)}: "
                                f"{mask_dsn(detail)}", reason="venue database unreachable") from err
    return f"{engine.dialect.name} {'.'.join(str(p) for p in info or ()) or '?'}"


def _maintenance_active(ctx: Context, venue: Venue) -> str | None:
    """Why the venue database is under maintenance (re-indexing, a declared window), or None."""
    try:
        from cloudsync.guards import maintenance_active
    except ImportError:  # the guards package is optional for onboarding
        return None
    reason = maintenance_active(ctx, venue)
    return str(reason) if reason else None


def onboard(ctx: Context, customer_number: str, code: str, source_dsn: str, *, staff: str,
            dispatcher: Dispatcher | None = None, schema: str | None = None, timezone: str = "UTC",
            pos_version: str | None = None, tables: list[str] | None = None,
            now: dt.datetime | None = None) -> Onboarded:
    """Verify the code, connect the venue, enqueue its initial full resync, enable its incremental sync."""
    now = now or utcnow()
    reg = check_code(ctx.control, customer_number, code, now)
    server_version = check_source(ctx.settings, customer_number, source_dsn, schema, pos_version)
    candidate = Venue(customer_number, reg.company_name, source_dsn, schema, tables, None, {}, timezone,
                      pos_version, 60, None, True)
    busy = _maintenance_active(ctx, candidate)
    if busy:
        raise OnboardingRefused(customer_number, f"venue {customer_number}: its database is under maintenance "
                                f"({busy}); onboard once it is over", reason=f"maintenance: {busy}")
    venue, skipped = add_venue(ctx.control, customer_number, source_dsn, name=reg.company_name, schema=schema,
                               tables=tables, timezone=timezone, pos_version=pos_version, replace=True)
    with ctx.control.begin() as conn:
        taken = conn.execute(venue_registrations.update().where(
            venue_registrations.c.customer_number == customer_number, venue_registrations.c.used_at.is_(None),
            venue_registrations.c.expires_at > now,
        ).values(used_at=now, used_by=staff, venue_id=venue.id)).rowcount
    if not taken:  # another onboarding with the same code won the race
        raise OnboardingRefused(customer_number, f"the authentication code of customer {customer_number} was "
                                "already used; a code works once: ask for a new registration",
                                reason="code already used")
    try:
        job_id: int | None = resync.request_full_resync(ctx, venue.id, requested_by=staff,
                                                        options={"reason": "initial onboarding"})
    except AlreadyRunning:
        job_id = None
    if job_id is not None:
        grants.issue_job_grant(ctx.settings, ctx.control, job_id)
        if dispatcher is not None:
            dispatcher.plan_job(job_id)
    with ctx.control.begin() as conn:  # the incremental scheduler syncs active venues every sync_interval_s
        conn.execute(venues.update().where(venues.c.id == venue.id).values(active=True, updated_at=utcnow()))
    jobrepo.log_event(ctx.control, venue.id, f"onboarded by {staff}: initial full resync "
                      f"{'job ' + str(job_id) if job_id else 'already running'}", job_id=job_id)
    log.info("venue=%s job=%s onboarded by %s (%s)", venue.id, job_id, staff, server_version)
    return Onboarded(get_venue(ctx.control, venue.id), job_id, server_version, skipped)
