"""Keep a worker alive when Redis goes away (a work-around for kombu's Redis transport, 5.x).

When the broker connection drops, Celery closes the consumer's connection and reconnects. Closing a
Redis channel first drops its connection pool, then re-queues the messages it had delivered but not
acknowledged; re-queueing needs a new pool, whose parameters come from `channel.connection.client`,
which kombu has already detached. The resulting `AttributeError` escapes `maybe_close_channel` (it
ignores connection errors only), and the worker exits with "Unrecoverable error".

Raising the transport's own connection error instead lets kombu ignore it and reconnect as designed.
Nothing is lost by skipping that re-queue: the messages stay in Redis's unacked index and come back
after the visibility timeout, or were lost with Redis itself, in which case the reaper re-enqueues
their chunks from the control database.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_original_connparams = kombu_redis.Channel._connparams


def _connparams(self: Any, asynchronous: bool = False) -> Any:
    if self.connection is None or self.connection.client is None:
        raise redis.exceptions.ConnectionError("the broker connection is closed")
    return _original_connparams(self, asynchronous=asynchronous)


def apply() -> None:
    """Install the work-around once per process (idempotent)."""
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
