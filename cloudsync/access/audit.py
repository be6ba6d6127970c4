"""The append-only audit log: every privileged attempt, allowed or refused, with who, what, when,
venue, outcome and reason.

This module only inserts and reads: there is no code path that updates or deletes an audit row, and
migration 0003 installs triggers that refuse UPDATE and DELETE on the table (PostgreSQL and SQLite).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.control.schema import audit_log
from cloudsync.control.store import as_utc, utcnow

log = logging.getLogger(__name__)

OUTCOMES = ("allowed", "refused", "error")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    staff: str | None
    action: str
    venue_id: str | None
    job_id: int | None
    outcome: str
    reason: str | None
    details: dict[str, Any] | None


def record(control: Engine, action: str, outcome: str, *, staff: str | None = None, venue_id: str | None = None,
           job_id: int | None = None, reason: str | None = None, details: dict[str, Any] | None = None,
           at: dt.datetime | None = None) -> int:
    """Append one entry; returns its id. Never raises for a bad outcome name: it records `error` instead."""
    if outcome not in OUTCOMES:
        reason = f"{reason or ''} (outcome {outcome!r})".strip()
        outcome = "error"
    with control.begin() as conn:
        key = conn.execute(audit_log.insert().values(
            at=at or utcnow(), staff=_cut(staff), action=action[:64], venue_id=_cut(venue_id), job_id=job_id,
            outcome=outcome, reason=reason, details=details)).inserted_primary_key
    entry_id = key[0] if key else 0
    log.info("audit staff=%s action=%s venue=%s job=%s outcome=%s reason=%s", staff, action, venue_id, job_id,
             outcome, reason)
    return int(entry_id)


def _cut(text: str | None, limit: int = 64) -> str | None:
    """Whatever someone typed as a staff code or venue still gets recorded, within the column's size."""
    return None if text is None else str(text)[:limit]


def read(control: Engine, *, venue_id: str | None = None, since: dt.datetime | None = None,
         staff: str | None = None, action: str | None = None, outcome: str | None = None,
         limit: int = 1000) -> list[AuditEntry]:
    """Entries oldest first, filtered; the newest `limit` of them."""
    c = audit_log.c
    stmt = sa.select(audit_log).order_by(c.id.desc()).limit(limit)
    if venue_id is not None:
        stmt = stmt.where(c.venue_id == venue_id)
    if since is not None:
        stmt = stmt.where(c.at >= since)
    if staff is not None:
        stmt = stmt.where(c.staff == staff)
    if action is not None:
        stmt = stmt.where(c.action == action)
    if outcome is not None:
        stmt = stmt.where(c.outcome == outcome)
    with control.connect() as conn:
        rows = conn.execute(stmt).all()
    return [AuditEntry(r.id, as_utc(r.at) or r.at, r.staff, r.action, r.venue_id, r.job_id, r.outcome, r.reason,
                       r.details) for r in reversed(rows)]
