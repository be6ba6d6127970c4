"""Cloud targets, chosen from a registry keyed by dialect name."""

from __future__ import annotations

from cloudsync.db import engine_for
from cloudsync.targets.base import VENUE_COLUMN, Target, WriteStats
from cloudsync.targets.postgresql import PostgresTarget

_REGISTRY: dict[str, type[Target]] = {"sqlite": Target, "postgresql": PostgresTarget}
_cache: dict[str, Target] = {}


def open_target(dsn: str) -> Target:
    """The process-wide target for the cloud database at `dsn`."""
    target = _cache.get(dsn)
    if target is None or target.engine is not engine_for(dsn, role="t"):
        dialect = engine_for(dsn, role="t").dialect.name
        target = _cache[dsn] = _REGISTRY[dialect](dsn)
    return target


__all__ = ["VENUE_COLUMN", "Target", "WriteStats", "open_target"]
