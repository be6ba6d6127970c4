"""File logging for workers: every line in HOME/logs/cloudsync-worker.log carries venue, job and chunk.

Connected to Celery's `after_setup_logger` / `after_setup_task_logger` signals, so it adds to what
`celery worker --loglevel …` sets up (stderr stays as it is). A filter fills the ids from the task
being executed (its `venue` keyword and its job/chunk arguments), so even a line from a library that
knows nothing of venues can be collected by `cloudsync logs VENUE`. Times are UTC, ISO-8601.

    2026-11-22T10:01:02.345Z INFO venue=v1 job=12 chunk=340 ForkPoolWorker-1 cloudsync.resync: …
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from typing import Any

from celery import current_task
from celery.signals import after_setup_logger, after_setup_task_logger

from cloudsync.errors import ConfigError
from cloudsync.settings import load_settings

LOG_FILE_NAME = "cloudsync-worker.log"
LOG_FORMAT = ("%(asctime)s.%(msecs)03dZ %(levelname)s venue=%(venue)s job=%(job)s chunk=%(chunk)s "
              "%(processName)s %(name)s: %(message)s")
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def task_ids() -> tuple[str, str, str]:
    """(venue, job, chunk) of the task running in this process, "-" where unknown."""
    try:
        task = current_task._get_current_object() if current_task else None
    except Exception:  # logging must never fail the work it describes
        return "-", "-", "-"
    if task is None:
        return "-", "-", "-"
    request = task.request
    kwargs: dict[str, Any] = request.kwargs or {}
    args = list(request.args or [])
    venue = kwargs.get("venue") or kwargs.get("venue_id")
    job = kwargs.get("job_id") or kwargs.get("job")
    chunk = kwargs.get("chunk_id") or kwargs.get("chunk")
    if (task.name or "").startswith("cloudsync.resync."):
        job = job if job is not None else (args[0] if args else None)
        if task.name == "cloudsync.resync.chunk" and chunk is None and len(args) > 1:
            chunk = args[1]
    return tuple("-" if v is None else str(v) for v in (venue, job, chunk))  # type: ignore[return-value]


class TaskIds(logging.Filter):
    """Adds `venue`, `job` and `chunk` to every record (kept if the caller set them with `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        venue, job, chunk = task_ids()
        for name, value in (("venue", venue), ("job", job), ("chunk", chunk)):
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _formatter() -> logging.Formatter:
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    return formatter


def file_handler(loglevel: int | str | None = None) -> logging.Handler | None:
    """The handler writing HOME/logs/cloudsync-worker.log; None if the settings cannot be read."""
    try:
        settings = load_settings()
    except ConfigError:
        return None
    folder = settings.home_path / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    # several worker processes append to one file: O_APPEND keeps lines whole; Watched copes with logrotate
    handler = logging.handlers.WatchedFileHandler(folder / LOG_FILE_NAME, encoding="utf-8")
    handler.setFormatter(_formatter())
    handler.addFilter(TaskIds())
    handler.setLevel(loglevel or settings.log_level.upper())
    handler._cloudsync = True  # type: ignore[attr-defined]
    return handler


def _attach(logger: logging.Logger, loglevel: int | str | None) -> None:
    if any(getattr(h, "_cloudsync", False) for h in logger.handlers):
        return
    handler = file_handler(loglevel)
    if handler is not None:
        logger.addHandler(handler)


@after_setup_logger.connect
def _root_to_file(logger: logging.Logger, loglevel: int | str | None = None, **_: Any) -> None:
    _attach(logger, loglevel)


@after_setup_task_logger.connect
def _task_logger_to_file(logger: logging.Logger, loglevel: int | str | None = None, **_: Any) -> None:
    # the task logger does not propagate to the root logger, so it gets the file too
    _attach(logger, loglevel)
