"""Asking the broker which workers are alive."""

from __future__ import annotations

import time

from celery import Celery


def wait_for_workers(redis_url: str, count: int, timeout_s: float = 60) -> list[str]:
    """Block until `count` workers answer a ping; returns their node names."""
    probe = Celery(broker=redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            replies = probe.control.ping(timeout=1.0) or []
            if len(replies) >= count:
                return [name for reply in replies for name in reply]
        raise TimeoutError(f"{count} worker(s) did not answer within {timeout_s:.0f}s")
    finally:
        probe.close()
