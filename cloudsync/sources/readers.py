"""Streaming readers, chosen from a registry keyed by driver: each yields batches of row tuples.

The default reader asks SQLAlchemy for a server-side cursor (`stream_results`); the pyodbc reader
uses the DBAPI cursor's `fetchmany` with a large array size and skips per-row result objects.

A PostgreSQL source can also hand a chunk over without any Python row objects: `read_copy_text`
runs the range's SQLAlchemy select as `COPY (SELECT …) TO STDOUT` and yields `CopyText` blocks that a
PostgreSQL target loads with `COPY … FROM STDIN` as they are (the profile of a PostgreSQL→PostgreSQL
resync was dominated by building, converting and re-formatting row tuples in Python).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from cloudsync.db import driver_error, source_errors
from cloudsync.keys import Key

if TYPE_CHECKING:
    from cloudsync.sources.base import Source


class Reader(abc.ABC):
    @abc.abstractmethod
    def stream(self, conn: Connection, stmt: sa.Select[Any], batch_rows: int) -> Iterator[list[Sequence[Any]]]:
        """Yield the statement's rows in batches of at most `batch_rows`."""


class StreamingReader(Reader):
    def stream(self, conn: Connection, stmt: sa.Select[Any], batch_rows: int) -> Iterator[list[Sequence[Any]]]:
        result = conn.execution_options(stream_results=True, max_row_buffer=batch_rows).execute(stmt)
        try:
            while batch := result.fetchmany(batch_rows):
                yield [tuple(r) for r in batch]
        finally:
            result.close()


class PyodbcReader(Reader):
    """pyodbc streams natively; fetch raw tuples and apply only the result processors that exist."""

    def stream(self, conn: Connection, stmt: sa.Select[Any], batch_rows: int) -> Iterator[list[Sequence[Any]]]:
        result = conn.execute(stmt)
        cursor = result.cursor
        cursor.arraysize = batch_rows
        processors = [
            col.type._cached_result_processor(conn.dialect, None) for col in stmt.selected_columns
        ]
        active = [(i, p) for i, p in enumerate(processors) if p is not None]
        try:
            while batch := cursor.fetchmany(batch_rows):
                if not active:
                    yield [tuple(r) for r in batch]
                    continue
                rows: list[Sequence[Any]] = []
                for raw in batch:
                    row = list(raw)
                    for i, proc in active:
                        row[i] = proc(row[i])
                    rows.append(row)
                yield rows
        finally:
            result.close()


@dataclass(frozen=True)
class CopyText:
    """A block of rows in PostgreSQL's COPY text format (one line per row), with its row count."""

    data: bytes
    rows: int
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return self.rows


#: Types whose COPY text is read back as the same value by the cloud column `cloud_type` gives them.
#: Floats (a real widened to double would differ from the Python path), JSON, intervals, arrays and
#: anything unknown take the row path.
_PASS_THROUGH = (sa.Boolean, sa.Integer, sa.String, sa.Date, sa.DateTime, sa.LargeBinary, sa.Uuid)

#: Output settings that make COPY text unambiguous for the target whatever the server's defaults.
#: One round trip: a chunk of a few rows spent more on four SETs than on its COPY.
_SESSION = ("SET LOCAL client_encoding = 'UTF8'; SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL bytea_output = 'hex'; "
            "SET LOCAL extra_float_digits = 3")


def passes_through(table: sa.Table) -> bool:
    """True if every column of the table survives a COPY text round trip unchanged."""
    from cloudsync.targets.types import generic

    for col in table.columns:
        gen = generic(col.type)
        if isinstance(gen, sa.Enum) or isinstance(gen, sa.Float):
            return False
        if isinstance(gen, sa.Numeric) and not gen.asdecimal:
            return False
        if not isinstance(gen, (*_PASS_THROUGH, sa.Numeric)):
            return False
    return True


#: a select compiled for COPY … TO STDOUT, and the names of its columns
CopyQuery = tuple[SQLCompiler, tuple[str, ...]]


class PostgresReader(StreamingReader):
    """Rows through a server-side cursor, or raw COPY text for a target that can load it as it is."""

    def stream_copy_text(self, conn: Connection, query: CopyQuery, batch_rows: int,
                         values: dict[str, Any]) -> Iterator[CopyText]:
        """The rows of a compiled select, its bound parameters given `values`, as COPY text blocks."""
        compiled, columns = query
        params = compiled.construct_params(values)
        for name, proc in (compiled._bind_processors or {}).items():
            if name in params and callable(proc):
                params[name] = proc(params[name])
        # the select's text is SQLAlchemy's (names quoted by it); values are bound by psycopg, client-side
        copy_out = sql.SQL("COPY ({}) TO STDOUT").format(sql.SQL(compiled.string))  # type: ignore[arg-type]
        raw = conn.connection.driver_connection
        try:
            with raw.cursor() as cur:  # type: ignore[union-attr]
                cur.execute(_SESSION)
                with cur.copy(copy_out, params) as copy:
                    # each row's message is copied into one buffer as it arrives: keeping the messages
                    # (a memoryview each, which the garbage collector tracks) until the block is joined
                    # made thousands of objects per block outlive a collection, and every few blocks the
                    # collector then walked the whole process (~150,000 objects, 80-150 ms)
                    block = bytearray()
                    rows = 0
                    for data in copy:  # one message per row
                        block += data
                        rows += 1
                        if rows >= batch_rows:
                            yield CopyText(bytes(block), rows, columns)
                            block.clear()
                            rows = 0
                    if rows:
                        yield CopyText(bytes(block), rows, columns)
        except psycopg.Error as err:  # as SQLAlchemy's wrapper, so `source_errors` tells transient from terminal
            raise driver_error(conn, compiled.string, err, psycopg.Error) from err


def row_range(cols: Sequence[ColumnElement[Any]], lo: Key | None, hi: Key | None,
              bound: bool = False) -> ColumnElement[bool]:
    """Keys in (lo, hi] as row-value comparisons, for PostgreSQL only.

    PostgreSQL turns `(a, b, c) > (x, y, z)` into one index range scan, whereas the expanded form that
    SQL Server needs (`cloudsync.keys.in_range`) is planned as an OR of index scans that starts at the
    table's first key: every chunk would read all the rows before its range.

    With `bound`, the values are named parameters (`range_params`), for a statement built once and run
    for many ranges; only whether `lo` and `hi` are given shapes it.
    """
    conds: list[ColumnElement[bool]] = []
    for edge, prefix, above in ((lo, "cs_lo", True), (hi, "cs_hi", False)):
        if edge is None:
            continue
        values = [sa.bindparam(f"{prefix}{i}", type_=c.type) if bound else sa.literal(v, c.type)
                  for i, (c, v) in enumerate(zip(cols, edge, strict=True))]
        conds.append(sa.tuple_(*cols) > sa.tuple_(*values) if above else sa.tuple_(*cols) <= sa.tuple_(*values))
    return sa.and_(sa.true(), *conds)


def range_params(lo: Key | None, hi: Key | None) -> dict[str, Any]:
    """The values of a `row_range(..., bound=True)`."""
    out = {f"cs_lo{i}": v for i, v in enumerate(lo or ())}
    out.update({f"cs_hi{i}": v for i, v in enumerate(hi or ())})
    return out


def read_copy_text(source: Source, table: sa.Table, lo: Key | None, hi: Key | None,
                   batch_rows: int) -> Iterator[CopyText] | None:
    """The range as COPY text blocks, or None when the source or the table's types do not allow it."""
    if not isinstance(source.reader, PostgresReader) or not passes_through(table):
        return None
    reader: PostgresReader = source.reader
    # compiled once per table and shape of range (compiling took longer than reading a small chunk)
    cache: dict[tuple[bool, bool], CopyQuery] = table.info.setdefault("cs_copy_out", {})
    query = cache.get((lo is None, hi is None))
    if query is None:
        # row order does not matter to a chunk's writer: let the planner pick the cheapest scan of the range
        stmt = sa.select(*table.columns).where(row_range(source.key_columns(table), lo, hi, bound=True))
        compiled = stmt.compile(dialect=source.engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        query = cache[(lo is None, hi is None)] = (compiled, tuple(c.name for c in stmt.selected_columns))

    def blocks() -> Iterator[CopyText]:
        with source_errors(source.venue_id), source.engine.connect() as conn:
            yield from reader.stream_copy_text(conn, query, batch_rows, range_params(lo, hi))

    return blocks()


_REGISTRY: dict[str, type[Reader]] = {"pyodbc": PyodbcReader, "psycopg": PostgresReader}


def reader_for(dialect: Dialect) -> Reader:
    return _REGISTRY.get(dialect.driver, StreamingReader)()
