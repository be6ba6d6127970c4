"""Venue databases as sources."""

from __future__ import annotations

from cloudsync.db import engine_for
from cloudsync.sources.base import OWN_PREFIX, Source

_cache: dict[tuple[str, str], Source] = {}


def open_source(venue_id: str, dsn: str, schema: str | None = None) -> Source:
    """The process-wide source for a venue (re-created when the engine was disposed)."""
    key = (venue_id, dsn)
    source = _cache.get(key)
    if source is None or source.engine is not engine_for(dsn) or source.schema != (schema or None):
        source = _cache[key] = Source(venue_id, dsn, schema)
    return source


__all__ = ["OWN_PREFIX", "Source", "open_source"]
