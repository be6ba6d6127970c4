"""What every cloudsync task shares: the per-process engine context and the retry policy."""

from __future__ import annotations

import os
import random

from cloudsync.context import Context
from cloudsync.processes import settle_heap
from worker.dispatch import CeleryDispatcher

_ctx: dict[int, Context] = {}


def context() -> Context:
    """One engine context per worker process (created after the fork)."""
    pid = os.getpid()
    if pid not in _ctx:
        _ctx[pid] = Context.from_settings()
        settle_heap()  # the engines and settings live as long as the process
    return _ctx[pid]


def dispatcher() -> CeleryDispatcher:
    return CeleryDispatcher(context())


def backoff_s(retries: int, ceiling_s: int) -> float:
    """Exponential backoff with full jitter: 1, 2, 4 … seconds, capped."""
    return random.uniform(0.5, 1.0) * min(2 ** retries, ceiling_s)
