"""One resync per venue: a Redis lease with heartbeat, fenced by a token kept on the job row.

The lease `cloudsync:lease:VENUE` holds `JOB:TOKEN`, where TOKEN is the job's `jobs.fence_token`
when it took the lease. Requesting a resync takes the lease first (SET NX), so of many simultaneous
requests exactly one goes on to create a job; the others are told which job is running. The control
database's partial unique index stays the last word: a lease that expired while its job is still
active (every worker crashed) does not let a second job in, and `resume` takes the lease again with
a new token.

Every chunk renews the lease before it starts. A chunk whose job no longer holds it with its current
token — another job owns the venue, or a resume took a newer token — is a stale holder: its write is
refused with `StaleFence`. The lease expires by itself `lease_ttl_s` after the last heartbeat, so a
crashed worker never blocks a venue for long.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cloudsync.errors import AlreadyRunning, StaleFence

log = logging.getLogger(__name__)

LEASE_TTL_S = 600  # longer than a chunk normally takes; renewed by every chunk of the job
PENDING_WAIT_S = 10.0  # how long a loser waits to learn the winner's job id

# KEYS[1] lease, KEYS[2] a key read in the same round trip; ARGV: job id, token, ttl ms.
# Returns {status, current value, KEYS[2]'s value}:
#   1 renewed or taken, 0 another holder (current value), -1 this job with a newer token (we are stale)
_HEARTBEAT = """
local seen = redis.call('GET', KEYS[2])
local cur = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. ':' .. ARGV[2]
if cur == false or cur == mine then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[3])
  return {1, mine, seen}
end
local job, token = string.match(cur, '^(%d+):(%d+)$')
if job == ARGV[1] then
  if tonumber(token) > tonumber(ARGV[2]) then
    return {-1, cur, seen}
  end
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[3])
  return {1, mine, seen}
end
return {0, cur, seen}
"""

# KEYS[1] lease; ARGV: expected value, new value, ttl ms.  Replaces the value only if it is the expected one.
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] lease; ARGV: value prefix ("JOB:" or "pending:ID").  Deletes only our own lease.
_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(venue_id: str) -> str:
    return f"cloudsync:lease:{venue_id}"


@dataclass(frozen=True)
class Claim:
    """A request's hold on the venue before its job exists."""

    venue_id: str
    marker: str


def holder(client: redis.Redis, venue_id: str) -> tuple[int | None, int | None]:
    """(job id, token) holding the venue's lease; (None, None) when free or still being requested."""
    raw = client.get(lease_key(venue_id))
    if raw is None:
        return None, None
    value = raw.decode() if isinstance(raw, bytes) else str(raw)
    if value.startswith("pending:"):
        return None, None
    job, _, token = value.partition(":")
    return int(job), int(token)


def claim(client: redis.Redis, venue_id: str, still_active: Callable[[int], bool], ttl_s: float = 60) -> Claim:
    """Take the venue's lease for a request about to create a job, or raise AlreadyRunning.

    A lease naming a job that `still_active` says has ended (failed while planning, or its release was
    lost) is taken over.
    """
    marker = f"pending:{uuid.uuid4().hex}"
    if client.set(lease_key(venue_id), marker, nx=True, px=int(ttl_s * 1000)):
        return Claim(venue_id, marker)
    deadline = time.monotonic() + PENDING_WAIT_S
    while True:
        job_id, token = holder(client, venue_id)
        if job_id is not None:
            if still_active(job_id):
                raise AlreadyRunning(venue_id, job_id)
            if client.eval(_SWAP, 1, lease_key(venue_id), f"{job_id}:{token}", marker, str(int(ttl_s * 1000))):
                log.info("venue=%s lease of ended job %s taken over", venue_id, job_id)
                return Claim(venue_id, marker)
            continue
        if client.set(lease_key(venue_id), marker, nx=True, px=int(ttl_s * 1000)):
            return Claim(venue_id, marker)  # the other request gave up
        if time.monotonic() > deadline:
            raise AlreadyRunning(venue_id, -1)
        time.sleep(0.05)


def bind(client: redis.Redis, held: Claim, job_id: int, token: int, ttl_s: float = LEASE_TTL_S) -> None:
    """Turn a request's claim into the job's lease, fenced by the job's token."""
    client.set(lease_key(held.venue_id), f"{job_id}:{token}", px=int(ttl_s * 1000))
    log.info("venue=%s job=%s lease taken (token %s)", held.venue_id, job_id, token)


def abandon(client: redis.Redis, held: Claim) -> None:
    """Give back a claim whose request did not create a job."""
    client.eval(_RELEASE, 1, lease_key(held.venue_id), held.marker)


def heartbeat(client: redis.Redis, venue_id: str, job_id: int, token: int, chunk_id: int, also_get: str,
              ttl_s: float = LEASE_TTL_S) -> bytes | None:
    """Renew (or re-take after expiry) the job's lease; StaleFence when someone newer holds the venue.

    Returns the value of the key `also_get` (None if unset), read in the same round trip.
    """
    status, current, seen = client.eval(_HEARTBEAT, 2, lease_key(venue_id), also_get, str(job_id), str(token),
                                        str(int(ttl_s * 1000)))
    if int(status) == 1:
        return seen
    value = current.decode() if isinstance(current, bytes) else str(current)
    if value.startswith("pending:"):
        return seen  # a request is checking the venue; the control database will refuse its job
    other_job, _, other_token = value.partition(":")
    log.warning("venue=%s job=%s chunk=%s lease held by %s: write refused", venue_id, job_id, chunk_id, value)
    raise StaleFence(job_id, chunk_id, token, int(other_token) if int(other_job) == job_id else -1)


def release(client: redis.Redis, venue_id: str, job_id: int) -> None:
    """Drop the job's lease (after it finished or was cancelled); someone else's lease is left alone."""
    client.eval(_RELEASE, 1, lease_key(venue_id), f"{job_id}:")
