"""The cloud database as a target: one table per source table, shared by every venue.

Each cloud table is the source table plus `venue_id`, which leads its primary key. Writes are
idempotent: a chunk upserts every row it read and removes the cloud rows in its key range that the
source no longer has, so applying a chunk twice leaves the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from cloudsync import keys
from cloudsync.db import engine_for, target_errors
from cloudsync.errors import SchemaDrift, TerminalError
from cloudsync.keys import Key
from cloudsync.targets.types import cloud_type, type_family

log = logging.getLogger(__name__)

VENUE_COLUMN = "venue_id"
Rows = list[Sequence[Any]]


@dataclass
class WriteStats:
    rows_written: int = 0
    rows_deleted: int = 0


def _key(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


class Target:
    """Generic SQLAlchemy target (used for SQLite); dialects override `_write_range` for speed."""

    #: True when `write_range` also takes `cloudsync.sources.readers.CopyText` batches (PostgreSQL)
    takes_copy_text = False

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        self.engine: Engine = engine_for(dsn, role="t")
        self.schema = schema
        self.metadata = sa.MetaData(schema=schema)
        self._tables: dict[str, sa.Table] = {}

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- schema -------------------------------------------------------------------------------

    def cloud_table(self, source: sa.Table) -> sa.Table:
        """The cloud table for a source table (not created; see `ensure_table`)."""
        shape = [(c.name, repr(c.type)) for c in source.columns]
        cached = self._tables.get(source.name)
        if cached is not None and cached.info.get("source_shape") == shape:
            return cached
        if VENUE_COLUMN in source.c:
            raise TerminalError(f"table {source.name!r} has its own {VENUE_COLUMN!r} column; cloudsync reserves it")
        cols = [sa.Column(VENUE_COLUMN, sa.String(64), primary_key=True)]
        for col in source.columns:
            cols.append(
                sa.Column(col.name, cloud_type(col.type, self.dialect), primary_key=col.primary_key,
                          nullable=not col.primary_key, autoincrement=False)
            )
        stale = self.metadata.tables.get(_key(self.schema, source.name))
        if stale is not None:
            self.metadata.remove(stale)
        table = sa.Table(source.name, self.metadata, *cols, info={"source_shape": shape})
        self._tables[source.name] = table
        return table

    def has_table(self, name: str) -> bool:
        """Whether the cloud table exists."""
        with target_errors(), self.engine.connect() as conn:
            return bool(sa.inspect(conn).has_table(name, schema=self.schema))

    def ensure_table(self, source: sa.Table) -> list[str]:
        """Create the cloud table, or add columns the source gained. Returns the added column names.

        A column the source dropped stays in the cloud (NULL for new rows); a column whose type
        changed to another family stops the table with `SchemaDrift`.
        """
        wanted = self.cloud_table(source)
        with target_errors(), self.engine.begin() as conn:
            insp = sa.inspect(conn)
            if not insp.has_table(source.name, schema=self.schema):
                wanted.create(conn, checkfirst=True)
                log.info("created cloud table %s", source.name)
                return []
            existing = {c["name"]: c["type"] for c in insp.get_columns(source.name, schema=self.schema)}
            added = []
            ops = Operations(MigrationContext.configure(conn))
            for col in wanted.columns:
                if col.name not in existing:
                    ops.add_column(source.name, sa.Column(col.name, col.type, nullable=True), schema=self.schema)
                    added.append(col.name)
                elif type_family(existing[col.name]) != type_family(col.type) and not self._compatible(
                    existing[col.name], col.type
                ):
                    raise SchemaDrift(source.name, col.name, str(source.c[col.name].type), str(existing[col.name]))
        if added:
            log.info("cloud table %s: added columns %s", source.name, ", ".join(added))
        return added

    def _compatible(self, existing: Any, wanted: Any) -> bool:
        # SQLite reports the storage type of the text-backed decorators; those are what we created.
        return self.dialect == "sqlite" and type_family(existing) == "text"

    # -- writing ------------------------------------------------------------------------------

    def write_range(
        self,
        table: sa.Table,
        venue_id: str,
        batches: Iterable[Rows],
        lo: Key | None,
        hi: Key | None,
        before_commit: Callable[[], None] = lambda: None,
    ) -> WriteStats:
        """Upsert every row of `batches` and delete the venue's cloud rows in (lo, hi] not among them.

        `before_commit` runs inside the transaction, last: a stale writer raises there and nothing
        it wrote is committed.
        """
        with target_errors(), self.engine.begin() as conn:
            stats = self._write_range(conn, table, venue_id, batches, lo, hi)
            before_commit()
        return stats

    def _key_cols(self, table: sa.Table) -> list[sa.Column[Any]]:
        return [c for c in table.primary_key.columns if c.name != VENUE_COLUMN]

    def _stage_keys(self, conn: Connection, table: sa.Table) -> sa.Table:
        md = sa.MetaData()
        stage = sa.Table(
            f"cs_keys_{table.name}"[:60], md,
            # keyed, so the anti-join in `_delete_missing` is an index lookup per cloud row
            *(sa.Column(c.name, c.type, primary_key=True) for c in self._key_cols(table)),
            prefixes=["TEMPORARY"],
        )
        stage.drop(conn, checkfirst=True)
        stage.create(conn)
        return stage

    def _delete_missing(
        self, conn: Connection, table: sa.Table, stage: sa.Table, venue_id: str, lo: Key | None, hi: Key | None
    ) -> int:
        kcols = self._key_cols(table)
        present = sa.select(sa.literal(1)).where(*(stage.c[c.name] == c for c in kcols)).exists()
        stmt = sa.delete(table).where(
            table.c[VENUE_COLUMN] == venue_id, keys.in_range(kcols, lo, hi), ~present
        )
        return conn.execute(stmt).rowcount or 0

    def _write_range(
        self, conn: Connection, table: sa.Table, venue_id: str, batches: Iterable[Rows],
        lo: Key | None, hi: Key | None,
    ) -> WriteStats:
        stats = WriteStats()
        stage = self._stage_keys(conn, table)
        names = [c.name for c in table.columns if c.name != VENUE_COLUMN]
        key_names = [c.name for c in self._key_cols(table)]
        key_idx = [names.index(k) for k in key_names]
        upsert = self._upsert_statement(table, names)
        for rows in batches:
            if not rows:
                continue
            params = [{VENUE_COLUMN: venue_id, **dict(zip(names, row, strict=True))} for row in rows]
            conn.execute(upsert, params)
            keys_only = [dict(zip(key_names, (row[i] for i in key_idx), strict=True)) for row in rows]
            conn.execute(stage.insert(), keys_only)
            stats.rows_written += len(rows)
        stats.rows_deleted = self._delete_missing(conn, table, stage, venue_id, lo, hi)
        stage.drop(conn)
        return stats

    def _upsert_statement(self, table: sa.Table, names: list[str]) -> Any:
        ins = sqlite_dialect.insert(table)
        pk = [c.name for c in table.primary_key.columns]
        updates = {n: ins.excluded[n] for n in names if n not in pk}
        if not updates:
            return ins.on_conflict_do_nothing(index_elements=pk)
        return ins.on_conflict_do_update(index_elements=pk, set_=updates)

    def upsert_rows(self, table: sa.Table, venue_id: str, rows: Rows) -> int:
        """Upsert rows outside any key range (incremental sync re-reads of changed keys)."""
        if not rows:
            return 0
        names = [c.name for c in table.columns if c.name != VENUE_COLUMN]
        with target_errors(), self.engine.begin() as conn:
            conn.execute(self._upsert_statement(table, names),
                         [{VENUE_COLUMN: venue_id, **dict(zip(names, row, strict=True))} for row in rows])
        return len(rows)

    def delete_keys(self, table: sa.Table, venue_id: str, gone: Sequence[Key]) -> int:
        if not gone:
            return 0
        with target_errors(), self.engine.begin() as conn:
            stmt = sa.delete(table).where(table.c[VENUE_COLUMN] == venue_id, keys.key_in(self._key_cols(table), gone))
            return conn.execute(stmt).rowcount or 0

    def purge_venue(self, table: sa.Table, venue_id: str) -> int:
        with target_errors(), self.engine.begin() as conn:
            return conn.execute(sa.delete(table).where(table.c[VENUE_COLUMN] == venue_id)).rowcount or 0

    # -- reading (verification) ----------------------------------------------------------------

    def read_range(
        self, table: sa.Table, venue_id: str, lo: Key | None, hi: Key | None, batch_rows: int
    ) -> Iterator[Rows]:
        kcols = self._key_cols(table)
        cols = [c for c in table.columns if c.name != VENUE_COLUMN]
        stmt = (sa.select(*cols).where(table.c[VENUE_COLUMN] == venue_id, keys.in_range(kcols, lo, hi))
                .order_by(*kcols))
        with target_errors(), self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=batch_rows).execute(stmt)
            while batch := result.fetchmany(batch_rows):
                yield [tuple(r) for r in batch]

    def count(self, table: sa.Table, venue_id: str) -> int:
        with target_errors(), self.engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(table).where(table.c[VENUE_COLUMN] == venue_id)
            return int(conn.execute(stmt).scalar_one())
