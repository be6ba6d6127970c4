"""Change feeds, chosen from a registry keyed by the venue's configured feed kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cloudsync.errors import ConfigError
from cloudsync.feeds.base import ChangeFeed, Changes, FeedExpired, FeedNotReady, Position
from cloudsync.feeds.change_tracking import ChangeTrackingFeed
from cloudsync.feeds.changelog import ChangelogFeed
from cloudsync.feeds.cursor import CursorFeed
from cloudsync.sources import Source

REGISTRY: dict[str, type[ChangeFeed]] = {
    ChangelogFeed.kind: ChangelogFeed,
    CursorFeed.kind: CursorFeed,
    ChangeTrackingFeed.kind: ChangeTrackingFeed,
}


def open_feed(kind: str, source: Source, tables: Sequence[str] | Callable[[], Sequence[str]],
              options: dict[str, Any] | None = None) -> ChangeFeed:
    try:
        cls = REGISTRY[kind]
    except KeyError:
        raise ConfigError("feed", f"unknown change feed {kind!r} (one of {', '.join(sorted(REGISTRY))})") from None
    return cls(source, tables, options)


__all__ = ["REGISTRY", "ChangeFeed", "Changes", "FeedExpired", "FeedNotReady", "Position", "open_feed"]
