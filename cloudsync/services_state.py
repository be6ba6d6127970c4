"""A venue's cloud services state: `available`, or `degraded` while a full resync rebuilds its copy.

The control database is the source of truth (`derive`: an active job of a degrading kind means
degraded). The same state is published for other services (online ordering, analytics…) in Redis,
so they can read it without access to the control database:

    key    cloudsync:venue:<venue_id>:services      (a hash, no expiry)
    fields state       available | degraded
           reason      why it is degraded ("full resync running"), empty when available
           job_id      the job degrading it, empty when available
           since       ISO-8601 UTC time the current state began
           updated_at  ISO-8601 UTC time the key was last written

The resync engine publishes when a job starts running, ends or is cancelled. Publishing is best
effort: a Redis outage never fails a job, and `derive` stays right whatever the key says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudsync.control.schema import JOB_ACTIVE_STATES, jobs
from cloudsync.control.store import as_utc, utcnow

if TYPE_CHECKING:
    from cloudsync.context import Context

log = logging.getLogger(__name__)

AVAILABLE = "available"
DEGRADED = "degraded"
KEY_TEMPLATE = "cloudsync:venue:{venue_id}:services"
# repairs and verification touch a few key ranges and leave the venue's services alone
DEGRADING_KINDS = frozenset({"full"})


def services_key(venue_id: str) -> str:
    return KEY_TEMPLATE.format(venue_id=venue_id)


@dataclass(frozen=True)
class ServicesState:
    venue_id: str
    state: str
    reason: str = ""
    job_id: int | None = None
    since: str = ""

    @property
    def degraded(self) -> bool:
        return self.state == DEGRADED

    def as_mapping(self) -> dict[str, str]:
        return {"state": self.state, "reason": self.reason, "job_id": "" if self.job_id is None else str(self.job_id),
                "since": self.since}


def derive(control: Engine, venue_id: str) -> ServicesState:
    """The state from the control database: degraded while a full resync of the venue is active."""
    stmt = (sa.select(jobs.c.id, jobs.c.kind, jobs.c.started_at, jobs.c.created_at)
            .where(jobs.c.venue_id == venue_id, jobs.c.state.in_(JOB_ACTIVE_STATES),
                   jobs.c.kind.in_(sorted(DEGRADING_KINDS)))
            .order_by(jobs.c.id.desc()))
    with control.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return ServicesState(venue_id, AVAILABLE)
    since = as_utc(row.started_at or row.created_at)
    return ServicesState(venue_id, DEGRADED, f"{row.kind} resync running", int(row.id),
                         since.isoformat() if since else "")


def _client(ctx: Context) -> redis.Redis | None:
    """The configured Redis, or the embedded one if it already runs; never starts one just for this."""
    if ctx.settings.redis_url:
        return ctx.redis
    url_file = ctx.settings.home_path / "redis.url"
    if not url_file.exists():
        return None
    return redis.Redis.from_url(url_file.read_text().strip(), socket_timeout=2, socket_connect_timeout=2)


def publish(ctx: Context, venue_id: str) -> ServicesState:
    """Write the derived state to the venue's Redis key (best effort) and return it."""
    state = derive(ctx.control, venue_id)
    try:
        client = _client(ctx)
        if client is None:
            return state
        key = services_key(venue_id)
        since = state.since
        if not since:  # available: since when it last became available
            kept = _text(client.hget(key, "since")) if _text(client.hget(key, "state")) == AVAILABLE else ""
            since = kept or utcnow().isoformat()
        mapping = {**state.as_mapping(), "since": since, "updated_at": utcnow().isoformat()}
        client.hset(key, mapping=mapping)  # type: ignore[arg-type]
    except (redis.RedisError, OSError) as err:
        log.warning("venue=%s services state not published to Redis: %s", venue_id, err)
    return state


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def read_published(client: redis.Redis, venue_id: str) -> ServicesState | None:
    """What another service sees in Redis; None if nothing was published for the venue yet."""
    raw = client.hgetall(services_key(venue_id))
    if not raw:
        return None
    data = {_text(k): _text(v) for k, v in raw.items()}
    job = data.get("job_id") or ""
    return ServicesState(venue_id, data.get("state", AVAILABLE), data.get("reason", ""),
                         int(job) if job.isdigit() else None, data.get("since", ""))
