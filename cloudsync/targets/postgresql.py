"""PostgreSQL target fast path: COPY a chunk into a temporary table, then one upsert and one delete.

`INSERT … ON CONFLICT DO UPDATE … WHERE row IS DISTINCT FROM EXCLUDED` rewrites only the rows that
changed, so resyncing into a populated cloud table writes little WAL for unchanged rows.

A chunk whose key range holds no rows of the venue yet (the first full resync) skips the staging
table and is copied straight into the cloud table. Rows that a PostgreSQL source hands over as COPY
text (`cloudsync.sources.readers.CopyText`) are loaded as they are, without a Python object per row
(`venue_id` is spliced in front of each line with one bytes replace); rows from other sources are
formatted by psycopg's COPY writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

from cloudsync.db import driver_error, target_errors
from cloudsync.keys import Key
from cloudsync.sources.readers import CopyText, range_params, row_range
from cloudsync.targets.base import VENUE_COLUMN, Rows, Target, WriteStats


class PostgresTarget(Target):
    #: `write_range` takes `CopyText` batches as well as lists of rows
    takes_copy_text = True

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        super().__init__(dsn, schema)
        self._ensured: dict[tuple[str, Any], str] = {}

    def has_table(self, name: str) -> bool:
        return self._columns(name) is not None

    def _columns(self, name: str) -> str | None:
        """The cloud table's columns, types and nullability as one string; None if there is no such table."""
        with target_errors(), self.engine.connect() as conn:
            return conn.execute(_COLUMNS, {"schema": self.schema, "name": name}).scalar()

    def ensure_table(self, source: sa.Table) -> list[str]:
        """As `Target.ensure_table`, skipped when the cloud table's columns are as this process last found
        them right for the same source shape: one catalog query instead of a reflection (which asks for
        the table, its columns, defaults, comments, domains and enums, 10-20 ms a table)."""
        key = (source.name, tuple(self.cloud_table(source).info["source_shape"]))
        columns = self._columns(source.name)
        if columns is not None and self._ensured.get(key) == columns:
            return []
        added = super().ensure_table(source)
        if columns is not None and not added:
            self._ensured[key] = columns
        return added

    def _stage(self, conn: Connection, table: sa.Table) -> sa.Table:
        """The session's staging table for `table`'s current columns, created on the connection's first use.

        A temporary table that empties itself at every commit (`ON COMMIT DELETE ROWS`) and stays for
        the session: creating and dropping one per chunk wrote about twenty catalog rows each time (bloat
        in `pg_attribute` on a busy cloud) and cost more than merging a small chunk. Named after the
        table and its column types, so a table that gained a column gets a stage of its own.
        """
        known: tuple[sa.Table, str] | None = table.info.get("cs_stage")  # a new cloud table per source shape
        if known is None:
            columns = [c for c in table.columns if c.name != VENUE_COLUMN]
            shape = [(c.name, str(c.type.compile(self.engine.dialect))) for c in columns]
            digest = hashlib.blake2b(repr((table.schema, table.name, shape)).encode(), digest_size=8).hexdigest()
            stage = sa.Table(f"cs_stage_{digest}", sa.MetaData(),
                             *(sa.Column(c.name, c.type) for c in columns),
                             prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS")
            create = CreateTable(stage, if_not_exists=True).compile(dialect=self.engine.dialect)
            # Right after a bulk load the cloud table's statistics say it is nearly empty, and the planner then
            # picks nested loops that scan the whole stage once per cloud row (minutes for one chunk): they are
            # turned off for the merge, in the same round trip as the stage's creation
            known = table.info.setdefault("cs_stage", (stage, "; ".join([str(create).strip(), _NO_NESTLOOP])))
        stage, ddl = known
        conn.exec_driver_sql(ddl)  # a catalog lookup once it exists (rolled back with a failed chunk, made again)
        return stage

    def _write_range(
        self, conn: Connection, table: sa.Table, venue_id: str, batches: Iterable[Rows | CopyText],
        lo: Key | None, hi: Key | None,
    ) -> WriteStats:
        """COPY straight into the cloud table when the venue has no rows in the range (a first load),
        else COPY into a staging table, then upsert what changed and delete what the source no longer has.

        A concurrent writer of the same range (a redelivered chunk) cannot slip in between: the one
        that commits second fails on the primary key or on its fence, and is retried.
        """
        stats = WriteStats()
        params = {"cs_venue": venue_id, **range_params(lo, hi)}
        empty = not conn.execute(self._statements(table, None, lo, hi).exists, params).scalar()
        into = table if empty else self._stage(conn, table)
        stats.rows_written = self._copy(conn, into, venue_id if empty else None, batches)
        if not empty:
            merge = self._statements(table, into, lo, hi)
            if merge.update is not None:
                conn.execute(merge.update, params)
            # a concurrent writer of the same range (a redelivered chunk) is refused at its fence check
            conn.execute(merge.insert, params)
            stats.rows_deleted = conn.execute(merge.delete, params).rowcount or 0
        return stats

    def _statements(self, table: sa.Table, stage: sa.Table | None, lo: Key | None, hi: Key | None) -> _Merge:
        """The chunk's statements for `table` (and its stage), built once per shape of key range: building
        them took longer than running them on a small chunk. Values are bound: `cs_venue`, `range_params`."""
        cache: dict[Any, _Merge] = table.info.setdefault("cs_merge", {})
        shape = (None if stage is None else stage.name, lo is None, hi is None, len(lo or hi or ()))
        known = cache.get(shape)
        if known is None:
            known = cache[shape] = _Merge.build(table, stage, self._key_cols(table), lo, hi)
        return known

    def _copy(self, conn: Connection, into: sa.Table, venue_id: str | None, batches: Iterable[Rows | CopyText]) -> int:
        """COPY the batches into `into`, with `venue_id` as the leading column when it is given."""
        lead: tuple[str, ...] = (venue_id,) if venue_id is not None else ()
        cols = [c for c in into.columns if venue_id is not None or c.name != VENUE_COLUMN]
        names = [c.name for c in cols]
        json_idx = [i for i, c in enumerate(cols) if isinstance(c.type, sa.JSON)]
        prefix = _copy_text_field(venue_id) + b"\t" if venue_id is not None else b""
        rows = 0
        raw = conn.connection.driver_connection
        try:
            with raw.cursor() as cur, contextlib.ExitStack() as stack:  # type: ignore[union-attr]
                copy: psycopg.Copy | None = None
                for batch in batches:
                    if not batch:
                        continue
                    if copy is None:  # one COPY for the chunk; its columns are those the first batch brings
                        columns = names
                        if isinstance(batch, CopyText):
                            columns = [*names[:len(lead)], *batch.columns]
                            cur.execute(_UTF8)  # the source wrote the bytes as UTF-8
                        copy = stack.enter_context(cur.copy(_copy_in(into, columns)))
                    if isinstance(batch, CopyText):
                        # one line per row: the venue goes in front of each, in C, not per row in Python
                        copy.write(prefix + batch.data[:-1].replace(b"\n", b"\n" + prefix) + b"\n" if prefix
                                   else batch.data)
                    else:
                        self._write_rows(copy, batch, lead, json_idx)
                    rows += len(batch)
        except psycopg.Error as err:  # as SQLAlchemy's wrapper, so `target_errors` tells transient from terminal
            raise driver_error(conn, f"COPY {into.name}", err, psycopg.Error) from err
        return rows

    @staticmethod
    def _write_rows(copy: psycopg.Copy, rows: Rows, lead: tuple[str, ...], json_idx: list[int]) -> None:
        if not json_idx:
            if lead:
                for row in rows:
                    copy.write_row((*lead, *row))
            else:
                for row in rows:
                    copy.write_row(row)
            return
        for row in rows:
            values = [*lead, *row]
            for i in json_idx:
                values[i] = None if values[i] is None else Jsonb(_jsonable(values[i]))
            copy.write_row(values)

    def _upsert_statement(self, table: sa.Table, names: list[str]) -> Any:
        ins = pg.insert(table)
        pk = [c.name for c in table.primary_key.columns]
        updates = {n: ins.excluded[n] for n in names if n not in pk}
        if not updates:
            return ins.on_conflict_do_nothing(index_elements=pk)
        return ins.on_conflict_do_update(index_elements=pk, set_=updates)


_UTF8 = "SET LOCAL client_encoding = 'UTF8'"
_NO_NESTLOOP = "SET LOCAL enable_nestloop = off"
_COLUMNS = sa.text(
    "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null'"
    " ELSE '' END, ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = to_regclass(CASE WHEN"
    " CAST(:schema AS text) IS NULL THEN quote_ident(:name) ELSE quote_ident(:schema) || '.' || quote_ident(:name)"
    " END) AND attnum > 0 AND NOT attisdropped")


@dataclass(frozen=True)
class _Merge:
    """A chunk's statements against one cloud table, for one shape of key range."""

    exists: Any  # does the venue have rows in the range?
    update: Any | None  # rows of the range that differ from the stage (None: every column is key)
    insert: Any  # the stage's rows the range lacks
    delete: Any  # the range's rows the stage lacks

    @classmethod
    def build(cls, table: sa.Table, stage: sa.Table | None, kcols: list[sa.Column[Any]], lo: Key | None,
              hi: Key | None) -> _Merge:
        """Update the range's rows that differ from the stage, insert the stage's rows it lacks, delete the
        range's rows the stage lacks: hash joins and one anti-join over the chunk's key range.

        Unlike `INSERT … ON CONFLICT DO UPDATE … WHERE`, an unchanged row is never touched: ON CONFLICT
        locks every conflicting row (a write and WAL per row) even when its WHERE says there is nothing
        to do, which made a resync into a populated table twice as slow as the copy.
        """
        venue_col = table.c[VENUE_COLUMN]
        venue = sa.bindparam("cs_venue", type_=venue_col.type)
        in_range = [venue_col == venue, row_range(kcols, lo, hi, bound=True)]
        exists = sa.select(sa.exists().where(*in_range))
        if stage is None:
            return cls(exists, None, None, None)
        names = [c.name for c in table.columns]
        pk = [c.name for c in table.primary_key.columns]
        rest = [n for n in names if n not in pk]
        same_key = [stage.c[c.name] == c for c in kcols]
        update = None
        if rest:
            changed = sa.tuple_(*(_comparable(table.c[n]) for n in rest)).is_distinct_from(
                sa.tuple_(*(_comparable(stage.c[n]) for n in rest)))
            update = (sa.update(table).where(*in_range, *same_key, changed)
                      .values({table.c[n]: stage.c[n] for n in rest}))
        present = sa.select(sa.literal(1)).where(*in_range, *same_key).correlate_except(table).exists()
        rows = sa.select(*(venue if n == VENUE_COLUMN else stage.c[n] for n in names)).where(~present)
        insert = pg.insert(table).from_select(names, rows).on_conflict_do_nothing(index_elements=pk)
        staged = sa.select(sa.literal(1)).where(*(stage.c[c.name] == c for c in kcols)).exists()
        delete = sa.delete(table).where(*in_range, ~staged)
        return cls(exists, update, insert, delete)


def _comparable(col: Any) -> Any:
    """`json` has no equality operator: compare JSON columns as `jsonb`."""
    return sa.cast(col, pg.JSONB) if isinstance(col.type, sa.JSON) else col


def _copy_in(into: sa.Table, columns: Iterable[str]) -> sql.Composed:
    name = sql.Identifier(into.schema, into.name) if into.schema else sql.Identifier(into.name)
    return sql.SQL("COPY {} ({}) FROM STDIN").format(name, sql.SQL(", ").join(sql.Identifier(n) for n in columns))


def _copy_text_field(value: str) -> bytes:
    """A value escaped for COPY's text format."""
    escaped = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return escaped.encode("utf-8")


def _jsonable(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
