"""The `change_tracking` feed: SQL Server Change Tracking.

The position is a Change Tracking version. The current version is read *before* the changes, so a
change committed while they are read is read again next time rather than skipped. Every table is
checked against `CHANGE_TRACKING_MIN_VALID_VERSION`: a position older than it means the retention
period dropped changes, which is a terminal "full resync required", never a silent resync.
Run the venue database with snapshot isolation so the version and the changes agree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cloudsync.db import source_errors
from cloudsync.dialects.mssql import changes as tsql
from cloudsync.feeds.base import ChangeFeed, Changes, FeedExpired, FeedNotReady, Position


class ChangeTrackingFeed(ChangeFeed):
    kind = "change_tracking"

    def _require_mssql(self) -> None:
        if self.source.dialect != "mssql":
            raise FeedNotReady(self.venue_id, self.kind, f"Change Tracking needs SQL Server, not {self.source.dialect}")

    def check(self) -> None:
        self._require_mssql()
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            for name in self.tables:
                if conn.exec_driver_sql(tsql.ct_min_valid_version(name, self.source.schema)).scalar() is None:
                    raise FeedNotReady(self.venue_id, self.kind, f"Change Tracking is not enabled on table {name!r}")

    def position(self) -> Position:
        self._require_mssql()
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            version = conn.exec_driver_sql(tsql.CT_CURRENT_VERSION).scalar()
        if version is None:
            raise FeedNotReady(self.venue_id, self.kind, "Change Tracking is not enabled on the database")
        return {"version": int(version)}

    def changes_since(self, position: Position, limit_keys: int = 50_000) -> Changes:
        self._require_mssql()
        since = int(position["version"])
        out = Changes(position=self.position())
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            for name in self.tables:
                min_valid = conn.exec_driver_sql(tsql.ct_min_valid_version(name, self.source.schema)).scalar()
                if min_valid is None:
                    raise FeedNotReady(self.venue_id, self.kind, f"Change Tracking is not enabled on table {name!r}")
                if since < int(min_valid):
                    raise FeedExpired(self.venue_id, self.kind, f"table {name!r}: position {since} is older than "
                                      f"the minimum valid version {min_valid}")
                keys = [c.name for c in self.source.table(name).primary_key.columns]
                rows: Any = conn.execute(sa.text(tsql.ct_changes(name, keys, self.source.schema)), {"since": since})
                found = list(dict.fromkeys(tuple(r[:-1]) for r in rows))
                if found:
                    out.keys[name] = found
        return out
