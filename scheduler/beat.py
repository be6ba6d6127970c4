"""The Celery beat schedule: run it as exactly one process (`cloudsync beat`).

Choice: Celery's default beat (PersistentScheduler, its state in HOME/celerybeat-schedule), run as
exactly one process, not celery-redbeat with a standby. A second beat would only double the sends,
and every entry here is safe against that anyway, so a standby buys little:

- `dispatch` (every `dispatch_interval_ms`, at most a second): enqueues the incremental sync of each
  active venue with a change feed whose `venues.sync_interval_s` has elapsed, in batches of up to
  `cloudsync.scheduling.BATCH_VENUES` venues per `cloudsync.incremental.sync_batch` message (an idle
  venue's sync costs less than Celery's handling of one message; a venue lately slow in a batch is
  sent alone). The due venues are claimed atomically in Redis (a Lua script over a sorted set of
  next-due times), so two dispatchers cannot both enqueue a venue; the sync itself takes the venue's
  lock, so two syncs of a venue never run at once; outside trading hours a venue with a
  `closed_interval_s` feed option runs less often (`cloudsync.guards.trading_now`).
- `reap` (every 30 s): re-sends resync chunks whose lease expired (worker died) and pending chunks
  of a running job that made no progress for five leases (message lost), and plans or finishes that
  never ran. A chunk's lease and fencing token in the control database make a duplicate harmless.
- `verify-nightly` (02:30 UTC): sends `cloudsync.verify.nightly` by name (`send_task`; the verify
  feature defines the task, nothing is imported here).

If the one beat dies, nothing is lost: no state lives in beat. Restart it (systemd, compose
`restart: always`); incremental syncs resume at the next tick from their stored positions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery.schedules import crontab

from cloudsync.settings import Settings, load_settings
from worker.app import app

REAP_INTERVAL_S = 30.0
NIGHTLY_VERIFY = crontab(hour=2, minute=30)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    tick_s = settings.dispatch_interval_ms / 1000
    return {
        "dispatch": {
            "task": "cloudsync.incremental.dispatch",
            "schedule": dt.timedelta(seconds=tick_s),
            "options": {"expires": max(tick_s * 2, 1.0)},  # a stale tick is dropped, the next one comes
        },
        "reap": {
            "task": "cloudsync.control.reap",
            "schedule": dt.timedelta(seconds=REAP_INTERVAL_S),
            "options": {"expires": REAP_INTERVAL_S},
        },
        "verify-nightly": {
            "task": "cloudsync.verify.nightly",
            "schedule": NIGHTLY_VERIFY,
            "options": {"expires": 3600},
        },
    }


def configure(settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    settings.home_path.mkdir(parents=True, exist_ok=True)
    app.conf.beat_schedule = beat_schedule(settings)
    app.conf.beat_schedule_filename = str(settings.home_path / "celerybeat-schedule")
    app.conf.beat_max_loop_interval = max(settings.dispatch_interval_ms / 1000, 0.1)


configure()

__all__ = ["app", "beat_schedule", "configure"]
