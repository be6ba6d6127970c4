"""The change-feed abstraction: where a venue's changes start now, and which keys changed since then.

A feed never carries row values: it names changed keys per table, and incremental sync re-reads
those keys from the source. That is what makes applying a batch twice, or out of order, converge to
the source's current state. A position is plain JSON, stored in the control database.
"""

from __future__ import annotations

import abc
import datetime as dt
import decimal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa

from cloudsync.errors import TerminalError
from cloudsync.keys import Key
from cloudsync.sources import Source

Position = Any  # JSON-serialisable


class FeedExpired(TerminalError):
    """The stored position is older than what the feed still holds: changes may be lost."""

    def __init__(self, venue: str, feed: str, detail: str) -> None:
        super().__init__(
            f"venue {venue}: {feed} position expired ({detail}): full resync required "
            f"(`cloudsync resync start {venue}`)",
            venue=venue, feed=feed, detail=detail,
        )


class FeedNotReady(TerminalError):
    """The feed is not usable as configured (not installed, column missing, tracking disabled)."""

    def __init__(self, venue: str, feed: str, detail: str) -> None:
        super().__init__(f"venue {venue}: {feed} feed not ready: {detail}", venue=venue, feed=feed, detail=detail)


@dataclass
class Changes:
    """Changed keys per table since a position, and the position to continue from."""

    keys: dict[str, list[Key]] = field(default_factory=dict)
    position: Position = None
    more: bool = False  # True: a limit cut the read short; ask again from `position`

    @property
    def count(self) -> int:
        return sum(len(k) for k in self.keys.values())


class ChangeFeed(abc.ABC):
    """One venue's change feed over its synced tables."""

    kind: ClassVar[str]

    def __init__(self, source: Source, tables: Sequence[str] | Callable[[], Sequence[str]],
                 options: dict[str, Any] | None = None) -> None:
        self.source = source
        self.venue_id = source.venue_id
        self._tables = tables
        self.options = dict(options or {})

    @property
    def tables(self) -> list[str]:
        """The synced tables; given as a callable, resolved only when a feed needs them (an idle
        changelog poll never does, so it never reflects the venue's schema)."""
        if callable(self._tables):
            self._tables = list(self._tables())
        return list(self._tables)

    @abc.abstractmethod
    def position(self) -> Position:
        """Where the feed stands now: every change committed after this call comes after it."""

    @abc.abstractmethod
    def changes_since(self, position: Position, limit_keys: int = 50_000) -> Changes:
        """Keys changed after `position` (FeedExpired if the feed no longer reaches back that far)."""

    def check(self) -> None:  # noqa: B027 - an optional hook
        """Raise FeedNotReady when the feed cannot work as configured."""

    def install(self) -> None:  # noqa: B027 - an optional hook
        """Create what the feed needs at the venue (only the changelog has something to create)."""

    def remove(self) -> None:  # noqa: B027 - an optional hook
        """Undo `install`."""

    def acknowledge(self, position: Position) -> None:  # noqa: B027 - an optional hook
        """Everything up to `position` is applied in the cloud; the feed may forget it."""


def coerce_key(table: sa.Table, raw: Sequence[Any]) -> Key:
    """A key read back from JSON, with each value turned into its column's Python type."""
    cols = list(table.primary_key.columns)
    return tuple(_coerce(col, value) for col, value in zip(cols, raw, strict=True))


def _coerce(col: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        kind = col.type.python_type
    except NotImplementedError:
        return value
    if kind is int and not isinstance(value, bool):
        return int(value)
    if kind is str:
        return str(value)
    if kind is decimal.Decimal:
        return decimal.Decimal(str(value))
    if kind is dt.datetime and isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace(" ", "T"))
    if kind is dt.date and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return value
