"""The `cursor` feed: an `updated_at` (or SQL Server rowversion) column that every write sets.

A row is visible only once its transaction commits, possibly after rows with a higher cursor value
were already read, so the high-water mark is held back to a point before which everything is known to
be committed: on SQL Server `MIN_ACTIVE_ROWVERSION()` (exact); elsewhere the database's clock minus a
lag window (`lag_s`, longer than any write transaction). Rows from the high-water mark on are read
again next time; the keys already applied there are remembered with their cursor values (de-duplication
at the boundary), so only rows that changed again are re-applied. Deletes leave no row behind: a cursor
feed does not see them (verification finds them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from cloudsync.db import source_errors
from cloudsync.dialects.mssql import changes as tsql
from cloudsync.errors import UnknownColumn
from cloudsync.feeds.base import ChangeFeed, Changes, FeedNotReady, Position
from cloudsync.keys import decode_key, decode_value, encode_key, encode_value

DEFAULT_LAG_S = 5.0


class CursorFeed(ChangeFeed):
    kind = "cursor"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.column = str(self.options.get("column") or "")
        self.lag_s = float(self.options.get("lag_s", DEFAULT_LAG_S))
        if not self.column:
            raise FeedNotReady(self.venue_id, self.kind, "no cursor column configured (--column)")

    @property
    def rowversion(self) -> bool:
        return self.source.dialect == "mssql" and self.options.get("rowversion", True) is not False and all(
            type(self.source.table(t).c[self.column].type).__name__.upper() in {"TIMESTAMP", "ROWVERSION"}
            for t in self.tables)

    def check(self) -> None:
        for name in self.tables:
            table = self.source.table(name)
            if self.column not in table.c:
                raise UnknownColumn(self.venue_id, name, self.column)
            kind = table.c[self.column].type
            if not self.rowversion and not isinstance(kind, (sa.DateTime, sa.Date)):
                raise FeedNotReady(self.venue_id, self.kind,
                                   f"column {self.column!r} of {name!r} is {kind}, not a timestamp or rowversion")

    def _safe_mark(self) -> Any:
        """Everything strictly below this cursor value is committed."""
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            if self.rowversion:
                return int(conn.exec_driver_sql(tsql.MIN_ACTIVE_ROWVERSION).scalar_one())
            dialect = self.source.dialect
            if dialect == "sqlite":
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            else:
                now = conn.execute(sa.select(sa.func.localtimestamp())).scalar_one()
                if isinstance(now, dt.datetime) and now.tzinfo is not None:
                    now = now.replace(tzinfo=None)
        return now - dt.timedelta(seconds=self.lag_s)

    def position(self) -> Position:
        mark = encode_value(self._safe_mark())
        return {"tables": {name: {"mark": mark, "seen": []} for name in self.tables}}

    def changes_since(self, position: Position, limit_keys: int = 50_000) -> Changes:
        self.check()
        mark = self._safe_mark()
        out = Changes(position={"tables": {}})
        stored = position.get("tables") or {}
        for name in self.tables:
            state = stored.get(name)
            if state is None:
                raise FeedNotReady(self.venue_id, self.kind, f"table {name!r} has no cursor position yet; "
                                   "a full resync starts one")
            keys, new_state = self._table_changes(name, state, mark)
            if keys:
                out.keys[name] = keys
            out.position["tables"][name] = new_state
        return out

    def _table_changes(self, name: str, state: dict[str, Any], mark: Any) -> tuple[list[Any], dict[str, Any]]:
        table = self.source.table(name)
        pk = list(table.primary_key.columns)
        since = decode_value(state["mark"])
        if self.rowversion:
            sql = tsql.rowversion_changes(name, [c.name for c in pk], self.column, self.source.schema)
            with source_errors(self.venue_id), self.source.engine.connect() as conn:
                rows = conn.execute(sa.text(sql), {"since": since, "upto": mark}).all()
            return [tuple(r) for r in rows], {"mark": encode_value(max(since, mark)), "seen": []}
        col = table.c[self.column]
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            rows = conn.execute(sa.select(*pk, col).where(col >= since)).all()
        seen = {tuple(decode_key(k)): decode_value(v) for k, v in state.get("seen") or []}  # type: ignore[arg-type]
        new_mark = max(since, mark)
        keys, boundary = [], []
        for row in rows:
            key, value = tuple(row[:-1]), row[-1]
            if seen.get(key) != value:
                keys.append(key)
            if value >= new_mark:
                boundary.append([encode_key(key), encode_value(value)])
        return keys, {"mark": encode_value(new_mark), "seen": boundary}
