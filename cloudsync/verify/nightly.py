"""The nightly verification: every active venue compared with the cloud, outside its trading hours.

The scheduler runs it by task name (`cloudsync.verify.nightly`); each venue's result is recorded as a
`verify` sync run, so `cloudsync status` shows a venue whose cloud copy drifted in yellow. A venue
that is trading, or has a resync running, is left for the next night; one venue's failure (its
database unreachable) is recorded for it and does not stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging

from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.store import utcnow
from cloudsync.control.venues import list_venues
from cloudsync.errors import CloudSyncError
from cloudsync.verify.compare import record_verify, verify_venue

log = logging.getLogger(__name__)


def trading(ctx: Context, venue_id: str, at: dt.datetime | None = None) -> bool:
    """Whether the venue is trading now; always False where the trading-hours guard is not installed."""
    try:
        from cloudsync.guards import trading_now
    except ImportError:
        return False
    return bool(trading_now(ctx, venue_id, at))


def verify_all(ctx: Context, at: dt.datetime | None = None) -> dict[str, str]:
    """Verify every active venue that is neither trading nor resyncing. Returns venue → outcome."""
    outcomes: dict[str, str] = {}
    for venue in list_venues(ctx.control):
        if not venue.active:
            continue
        if trading(ctx, venue.id, at):
            outcomes[venue.id] = "skipped: trading hours"
            continue
        running = jobrepo.active_job(ctx.control, venue.id)
        if running is not None:
            outcomes[venue.id] = f"skipped: job {running.id} is {running.state}"
            continue
        started = utcnow()
        try:
            report = verify_venue(ctx, venue.id)
        except CloudSyncError as err:
            jobrepo.record_sync_run(ctx.control, venue.id, "verify", started, False, error=str(err))
            jobrepo.log_event(ctx.control, venue.id, f"nightly verify failed: {err}", level="ERROR")
            log.warning("venue=%s nightly verify failed: %s", venue.id, err)
            outcomes[venue.id] = f"error: {err}"
            continue
        record_verify(ctx, report)
        outcomes[venue.id] = f"drift: {len(report.diffs)} range(s)" if report.drift else "ok"
        log.info("venue=%s nightly verify: %s", venue.id, outcomes[venue.id])
    return outcomes
