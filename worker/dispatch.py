"""The engine's Dispatcher, implemented with Celery messages."""

from __future__ import annotations

from typing import Any

from cloudsync.access.grants import job_grant
from cloudsync.context import Context
from cloudsync.control.jobs import Job, get_chunks, get_job, job_or_read
from cloudsync.keys import encode_key
from worker.app import client_app


class CeleryDispatcher:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def plan_job(self, job_id: int) -> None:
        job = get_job(self.ctx.control, job_id)
        self._send("cloudsync.resync.plan", [job_id], kwargs={"venue": job.venue_id, "grant": self.grant(job_id)})

    def run_chunks(self, job_id: int, chunk_ids: list[int]) -> None:
        job = get_job(self.ctx.control, job_id)
        grant = self.grant(job_id, job)
        for c in get_chunks(self.ctx.control, chunk_ids):
            self._send("cloudsync.resync.chunk", [job_id, c.id], {
                "venue": job.venue_id, "table": c.table_name, "lo": encode_key(c.lo), "hi": encode_key(c.hi),
                "grant": grant})

    def finish_job(self, job_id: int, job: Job | None = None) -> None:
        job = job_or_read(self.ctx.control, job_id, job)
        self._send("cloudsync.resync.finish", [job_id], {"venue": job.venue_id, "grant": self.grant(job_id, job)})

    def _send(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        client_app(self.ctx.settings).send_task(name, args=args, kwargs=kwargs)

    def grant(self, job_id: int, job: Job | None = None) -> str:
        """The job's signed grant (signed when the job was created; re-signed if missing or near expiry)."""
        return job_grant(self.ctx.settings, self.ctx.control, job_id, job)
