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
import json
from collections.abc import Iterable
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection

from cloudsync.db import driver_error
from cloudsync.keys import Key
from cloudsync.sources.readers import CopyText, row_range
from cloudsync.targets.base import VENUE_COLUMN, Rows, Target, WriteStats


class PostgresTarget(Target):
    #: `write_range` takes `CopyText` batches as well as lists of rows
    takes_copy_text = True

    def _stage(self, conn: Connection, table: sa.Table) -> sa.Table:
        stage = sa.Table(
            "cs_stage", sa.MetaData(),
            *(sa.Column(c.name, c.type) for c in table.columns if c.name != VENUE_COLUMN),
            prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
        )
        stage.create(conn)
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
        empty = not conn.execute(sa.select(sa.exists().where(
            table.c[VENUE_COLUMN] == venue_id, row_range(self._key_cols(table), lo, hi)))).scalar()
        into = table if empty else self._stage(conn, table)
        stats.rows_written = self._copy(conn, into, venue_id if empty else None, batches)
        if not empty:
            # Right after a bulk load the cloud table's statistics say it is nearly empty, and the planner then
            # picks nested loops that scan the whole stage once per cloud row (minutes for one chunk).
            conn.execute(sa.text("SET LOCAL enable_nestloop = off"))
            self._merge(conn, table, into, venue_id, lo, hi)
            stats.rows_deleted = self._delete_missing(conn, table, into, venue_id, lo, hi)
        return stats

    def _merge(self, conn: Connection, table: sa.Table, stage: sa.Table, venue_id: str, lo: Key | None,
               hi: Key | None) -> None:
        """Update the range's rows that differ from the stage, then insert the stage's rows it lacks.

        Two hash joins over the chunk's key range. Unlike `INSERT … ON CONFLICT DO UPDATE … WHERE`, an
        unchanged row is never touched: ON CONFLICT locks every conflicting row (a write and WAL per row)
        even when its WHERE says there is nothing to do, which made a resync into a populated table
        twice as slow as the copy.
        """
        kcols = self._key_cols(table)
        names = [c.name for c in table.columns]
        pk = [c.name for c in table.primary_key.columns]
        rest = [n for n in names if n not in pk]
        in_range = [table.c[VENUE_COLUMN] == venue_id, row_range(kcols, lo, hi)]
        same_key = [stage.c[c.name] == c for c in kcols]
        if rest:
            changed = sa.tuple_(*(_comparable(table.c[n]) for n in rest)).is_distinct_from(
                sa.tuple_(*(_comparable(stage.c[n]) for n in rest)))
            conn.execute(sa.update(table).where(*in_range, *same_key, changed)
                         .values({table.c[n]: stage.c[n] for n in rest}))
        present = sa.select(sa.literal(1)).where(*in_range, *same_key).correlate_except(table).exists()
        venue = sa.literal(venue_id, table.c[VENUE_COLUMN].type)
        rows = sa.select(*(venue if n == VENUE_COLUMN else stage.c[n] for n in names)).where(~present)
        # a concurrent writer of the same range (a redelivered chunk) is refused at its fence check
        conn.execute(pg.insert(table).from_select(names, rows).on_conflict_do_nothing(index_elements=pk))

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

    def _delete_missing(
        self, conn: Connection, table: sa.Table, stage: sa.Table, venue_id: str, lo: Key | None, hi: Key | None
    ) -> int:
        """The venue's cloud rows in (lo, hi] that the chunk did not bring: one index range scan, one anti-join."""
        kcols = self._key_cols(table)
        present = sa.select(sa.literal(1)).where(*(stage.c[c.name] == c for c in kcols)).exists()
        stmt = sa.delete(table).where(table.c[VENUE_COLUMN] == venue_id, row_range(kcols, lo, hi), ~present)
        return conn.execute(stmt).rowcount or 0

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
