"""Venue limits shared by every worker on every machine: a Redis token bucket and a chunk semaphore.

Celery's own `rate_limit` counts per worker process; a venue's database feels the sum, so the budget
lives in Redis and is spent atomically by a Lua script (Redis' own clock, so workers' clocks do not
matter).

Tokens are rows. A chunk asks for its estimated rows before it starts. While the bucket is not in
debt the chunk may go ahead and take them all, possibly driving the bucket negative; the next chunk
waits until the refill has paid the debt back. So a chunk larger than one second's budget still runs,
and over any longer stretch the rows read per second stay at the configured rate. A chunk that may not
start is told how long to wait, and its task re-queues itself with that countdown instead of holding
a worker process.

The semaphore caps the chunks of one venue running at once; each holder's slot expires by itself so
a killed worker cannot keep one for ever.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "cloudsync:"
MIN_WAIT_S = 0.05
MAX_WAIT_S = 30.0

# KEYS[1] bucket hash; ARGV: rate tokens/s, capacity tokens, tokens wanted.
# Returns {granted 0|1, seconds to wait (string), tokens left (string)}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local granted = 0
local wait = 0
if tokens > 0 then
  tokens = tokens - want
  granted = 1
else
  wait = (-tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local idle = math.ceil((math.max(0, -tokens) + capacity) / rate) + 60
redis.call('EXPIRE', KEYS[1], idle)
return {granted, tostring(wait), tostring(tokens)}
"""

# KEYS[1] sorted set of holders scored by expiry; ARGV: holder, limit, ttl seconds.
# Returns {acquired 0|1, holders now}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 60)
  return {1, redis.call('ZCARD', KEYS[1])}
end
return {0, redis.call('ZCARD', KEYS[1])}
"""


def bucket_key(venue_id: str) -> str:
    return f"{KEY_PREFIX}rate:{venue_id}"


def slots_key(venue_id: str) -> str:
    return f"{KEY_PREFIX}chunks:{venue_id}"


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait_s: float  # how long to wait before asking again (0 when granted)
    tokens_left: float


def take_rows(client: redis.Redis, venue_id: str, rows: int, rows_per_s: float, burst_s: float = 1.0) -> Grant:
    """Spend `rows` tokens of the venue's bucket (rate `rows_per_s`, capacity `burst_s` seconds of it)."""
    if rows_per_s <= 0:
        raise ValueError("rows_per_s must be positive")
    capacity = max(rows_per_s * burst_s, 1.0)
    granted, wait, left = client.eval(_TAKE, 1, bucket_key(venue_id), repr(float(rows_per_s)), repr(capacity),
                                      str(max(int(rows), 1)))
    wait_s = float(wait)
    if int(granted):
        return Grant(True, 0.0, float(left))
    return Grant(False, min(max(wait_s, MIN_WAIT_S), MAX_WAIT_S), float(left))


def acquire_slot(client: redis.Redis, venue_id: str, holder: str, limit: int, ttl_s: float) -> bool:
    """Take one of the venue's `limit` concurrent-chunk slots for `holder` (re-entrant)."""
    acquired, _ = client.eval(_ACQUIRE, 1, slots_key(venue_id), holder, str(int(limit)), repr(float(ttl_s)))
    return bool(int(acquired))


def release_slot(client: redis.Redis, venue_id: str, holder: str) -> None:
    client.zrem(slots_key(venue_id), holder)


def slots_in_use(client: redis.Redis, venue_id: str) -> int:
    return int(client.zcount(slots_key(venue_id), time.time(), math.inf))
