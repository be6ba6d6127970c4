"""Asking the broker which workers are alive."""

from __future__ import annotations

import time

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError


def wait_for_workers(redis_url: str, count: int, timeout_s: float = 60) -> list[str]:
    """Block until `count` workers answer a ping; returns their node names."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # a fresh probe each round: a connection broken by a Redis restart is never reused
        probe = Celery(broker=redis_url)
        try:
            replies = probe.control.ping(timeout=1.0) or []
        except (OperationalError, RedisConnectionError, OSError):
            replies = []  # the broker is (re)starting: ask again until the deadline
            time.sleep(0.2)
        finally:
            probe.close()
        if len(replies) >= count:
            return [name for reply in replies for name in reply]
    raise TimeoutError(f"{count} worker(s) did not answer within {timeout_s:.0f}s")
