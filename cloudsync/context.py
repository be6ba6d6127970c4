"""What every engine call needs: settings, the control database and the cloud target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import redis
from sqlalchemy.engine import Engine

from cloudsync.control.store import control_engine
from cloudsync.embedded import ensure_embedded_redis
from cloudsync.settings import Settings, load_settings
from cloudsync.targets import Target, open_target

if TYPE_CHECKING:
    from cloudsync.control.jobs import Job


class Dispatcher(Protocol):
    """How the engine asks for more work without knowing about Celery (worker/dispatch.py does)."""

    def plan_job(self, job_id: int) -> None: ...

    def run_chunks(self, job_id: int, chunk_ids: list[int]) -> None: ...

    def finish_job(self, job_id: int, job: Job | None = None) -> None:
        """`job`: the job as the caller just read it, if it did (saves reading it again)."""
        ...


@dataclass
class Context:
    settings: Settings
    control: Engine
    _redis: redis.Redis | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Context:
        settings = settings or load_settings()
        return cls(settings, control_engine(settings.control_dsn))

    @property
    def redis_url(self) -> str:
        """The configured Redis, or this HOME's embedded one (started on first use)."""
        return self.settings.redis_url or ensure_embedded_redis(self.settings.home_path)

    @property
    def redis(self) -> redis.Redis:
        """A client for leases, rate limits and state other services read (not the Celery broker)."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=5)
        return self._redis

    @property
    def target(self) -> Target:
        return open_target(self.settings.cloud_dsn)
