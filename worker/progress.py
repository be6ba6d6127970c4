"""Progress of a running task, as Flower sees it: a custom `task-progress` event (state PROGRESS)
carrying the fields and a readable line, at most every half second.

Only the event: Flower's state comes from events, and a chunk stores no result (`ignore_result`), so
a PROGRESS written to the result backend was never replaced by the task's end and read, days later,
as still running; it also cost two more Redis round trips a report (the backend reads the stored
state before each write).

Progress is best-effort: a broker outage must never fail the chunk that reports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task

INTERVAL_S = 0.5
log = logging.getLogger(__name__)


def reporter(task: Task) -> Callable[[dict[str, Any]], None]:
    last = [0.0]

    def report(meta: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] < INTERVAL_S or not task.request.id:
            return
        last[0] = now
        try:
            # Flower lists only standard task fields: `result` carries a readable line while the task runs
            task.send_event("task-progress", result=progress_text(meta), **meta)
        except Exception as err:  # noqa: BLE001 - progress must not break the work it reports on
            log.debug("job=%s chunk=%s progress not sent: %s", meta.get("job"), meta.get("chunk"), err)

    return report


def progress_text(meta: dict[str, Any]) -> str:
    """`transaction_lines: 1,500/2,000 rows (75%), 3,100 rows/s, ETA 0.2s` for Flower's result column."""
    done, est = int(meta.get("rows_done") or 0), int(meta.get("rows_est") or 0)
    pct = f" ({100 * done / est:.0f}%)" if est else ""
    eta = meta.get("eta_s")
    return (f"{meta.get('table', '?')}: {done:,}/{est:,} rows{pct}, {float(meta.get('rows_per_s') or 0):,.0f} rows/s"
            + (f", ETA {eta}s" if eta is not None else ""))
