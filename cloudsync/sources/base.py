"""A venue database as a source: reflected tables, key-range planning and streaming reads.

Names are never built into SQL: a table or column is used only if reflection found it, so a name
that is not in the schema is refused before any statement is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudsync import keys
from cloudsync.db import engine_for, source_errors
from cloudsync.errors import NoPrimaryKey, UnknownColumn, UnknownTable
from cloudsync.keys import Key
from cloudsync.sources.readers import reader_for

log = logging.getLogger(__name__)

#: tables cloudsync installs at a venue (change logs) are never synced themselves
OWN_PREFIX = "cloudsync_"


class Source:
    """One venue's database, reflected lazily and cached per table."""

    def __init__(self, venue_id: str, dsn: str, schema: str | None = None) -> None:
        self.venue_id = venue_id
        self.schema = schema or None
        self.engine: Engine = engine_for(dsn, role="s")
        self.metadata = sa.MetaData(schema=self.schema)
        self._tables: dict[str, sa.Table] = {}
        self.reader = reader_for(self.engine.dialect)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def connect(self) -> Connection:
        with source_errors(self.venue_id):
            return self.engine.connect()

    # -- schema -----------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        with source_errors(self.venue_id), self.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names(schema=self.schema)
        return sorted(n for n in names if not n.lower().startswith(OWN_PREFIX))

    def syncable_tables(self) -> tuple[list[str], list[str]]:
        """(tables with a primary key, tables without one) in the source schema."""
        with_pk: list[str] = []
        without: list[str] = []
        with source_errors(self.venue_id), self.engine.connect() as conn:
            insp = sa.inspect(conn)
            for name in self.table_names():
                pk = insp.get_pk_constraint(name, schema=self.schema).get("constrained_columns") or []
                (with_pk if pk else without).append(name)
        return with_pk, without

    def table(self, name: str) -> sa.Table:
        """The reflected table; refuses names not in the schema and tables without a primary key.

        Only what a sync uses is reflected: the columns (names, types, nullability) and the primary key,
        two catalogue queries (a full reflection also reads indexes, foreign keys, constraints and
        comments, about four times the cost, paid by every worker process for every table).
        """
        if name in self._tables:
            return self._tables[name]
        if name.lower().startswith(OWN_PREFIX):
            raise UnknownTable(self.venue_id, name)
        with source_errors(self.venue_id), self.engine.connect() as conn:
            insp = sa.inspect(conn)
            try:
                columns = insp.get_columns(name, schema=self.schema)
            except sa.exc.NoSuchTableError:
                columns = []
            if not columns:
                raise UnknownTable(self.venue_id, name)
            pk = insp.get_pk_constraint(name, schema=self.schema).get("constrained_columns") or []
        if not pk:
            raise NoPrimaryKey(self.venue_id, name)
        stale = self.metadata.tables.get(f"{self.schema}.{name}" if self.schema else name)
        if stale is not None:
            self.metadata.remove(stale)
        cols = [sa.Column(c["name"], c["type"], nullable=bool(c.get("nullable", True)), autoincrement=False)
                for c in columns]
        table = sa.Table(name, self.metadata, *cols, sa.PrimaryKeyConstraint(*pk))
        for col in table.columns:  # MySQL's DOUBLE reflects as asdecimal: a lossy 10-digit Decimal, not the float
            if isinstance(col.type, sa.Float) and col.type.asdecimal:
                col.type.asdecimal = False
        self._tables[name] = table
        return table

    def refresh(self) -> None:
        self.metadata.clear()
        self._tables.clear()

    def key_columns(self, table: sa.Table) -> list[sa.Column[Any]]:
        return list(table.primary_key.columns)

    def column(self, table: sa.Table, name: str) -> sa.Column[Any]:
        if name not in table.c:
            raise UnknownColumn(self.venue_id, table.name, name)
        return table.c[name]

    # -- planning -----------------------------------------------------------------------------

    def plan_statement(self, table: sa.Table, chunk_rows: int) -> sa.Select[Any]:
        """Every `chunk_rows`-th key in key order, computed in the database from the key index."""
        pk = self.key_columns(table)
        rn = sa.func.row_number().over(order_by=pk).label("cs_rn")
        inner = sa.select(*pk, rn).subquery("cs_keys")
        outer_pk = [inner.c[c.name] for c in pk]
        return sa.select(*outer_pk).where(inner.c.cs_rn % chunk_rows == 0).order_by(*outer_pk)

    def plan(self, table: sa.Table, chunk_rows: int) -> tuple[int, list[Key]]:
        """(row count, inclusive upper bounds of all chunks but the last).

        One pass over the key index: every bound closes `chunk_rows` rows, so the count is those plus
        the rows after the last bound (counted through the index, at most a chunk's worth).
        """
        pk = self.key_columns(table)
        with source_errors(self.venue_id), self.engine.connect() as conn:
            bounds = [tuple(row) for row in conn.execute(self.plan_statement(table, chunk_rows))]
            after = keys.in_range(pk, bounds[-1], None) if bounds else sa.true()
            tail = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(after)).scalar_one())
        if bounds and not tail:
            bounds.pop()  # the last bound is the last key: the open-ended final chunk covers it
            tail = chunk_rows
        return chunk_rows * len(bounds) + tail, bounds

    # -- reading ------------------------------------------------------------------------------

    def range_statement(self, table: sa.Table, lo: Key | None, hi: Key | None) -> sa.Select[Any]:
        pk = self.key_columns(table)
        return sa.select(*table.columns).where(keys.in_range(pk, lo, hi)).order_by(*pk)

    def read_range(
        self, table: sa.Table, lo: Key | None, hi: Key | None, batch_rows: int
    ) -> Iterator[list[Sequence[Any]]]:
        """Rows with keys in (lo, hi], in key order, a batch at a time; memory stays flat."""
        with source_errors(self.venue_id), self.engine.connect() as conn:
            yield from self.reader.stream(conn, self.range_statement(table, lo, hi), batch_rows)

    def read_keys(self, table: sa.Table, wanted: Sequence[Key]) -> list[Sequence[Any]]:
        """The current rows for `wanted` keys (missing keys were deleted at the venue)."""
        pk = self.key_columns(table)
        with source_errors(self.venue_id), self.engine.connect() as conn:
            stmt = sa.select(*table.columns).where(keys.key_in(pk, wanted))
            return [tuple(r) for r in conn.execute(stmt)]

    def count(self, table: sa.Table) -> int:
        with source_errors(self.venue_id), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
