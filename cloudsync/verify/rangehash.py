"""Checksums of key ranges, computed inside each database, that agree across dialects for equal data.

A range's checksum is its row count and the sum, modulo 2**64, of a 64-bit digest per row: the first
8 bytes of the MD5 of the row's normalised UTF-8 text (`cloudsync.checksums.row_digest64`). The sum
does not depend on row order, so no database has to sort anything to agree with another.

Each dialect builds the normalised text in SQL the way `cloudsync.checksums.normalise` does in Python:
decimals without trailing zeros, timestamps in UTC as `YYYY-MM-DD HH:MM:SS.ffffff`, booleans as 1/0,
binary as `\\x` + hex, NULL as its own marker, fields joined by U+001F and hashed as UTF-8 bytes.
A table with a column whose type a dialect cannot normalise exactly (floats on MariaDB, JSON, time)
is hashed in Python on that side, as is every table on SQLite: the digests are the same either way.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from cloudsync import keys
from cloudsync.checksums import normalise, row_digest64
from cloudsync.db import source_errors, target_errors
from cloudsync.keys import Key
from cloudsync.sources import Source
from cloudsync.targets import VENUE_COLUMN, Target

log = logging.getLogger(__name__)

MOD_64 = 1 << 64
TIMESTAMP_UTC = "UTC"
Rows = list[Sequence[Any]]
NormKey = tuple[str, ...]


@dataclass(frozen=True)
class RangeSum:
    """Row count and order-independent checksum of one key range on one side."""

    rows: int
    checksum: int

    def hex(self) -> str:
        return f"{self.checksum:016x}"


# -- column kinds -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnKind:
    #: text | char | int | bool | decimal | money | float | real | datetime | datetimetz | date | binary | uuid | other
    kind: str
    scale: int = 0


def column_kind(col_type: TypeEngine[Any]) -> ColumnKind:
    """What a reflected (or cloud) column holds, for choosing its SQL normalisation."""
    if isinstance(col_type, TypeDecorator):
        return ColumnKind("other")  # SQLite's text-backed cloud types: hashed in Python
    name = type(col_type).__name__.upper()
    if name in {"MONEY", "SMALLMONEY"}:
        return ColumnKind("money", 4)
    if name in {"TIMESTAMP", "ROWVERSION"} and type(col_type).__module__.endswith("mssql.base"):
        return ColumnKind("binary")
    if isinstance(col_type, sa.Boolean):
        return ColumnKind("bool")
    if isinstance(col_type, sa.Integer):
        return ColumnKind("int")
    if isinstance(col_type, sa.Float):
        precision = getattr(col_type, "precision", None)
        return ColumnKind("real" if name == "REAL" or (precision is not None and precision <= 24) else "float")
    if isinstance(col_type, sa.Numeric):
        if not col_type.asdecimal:
            return ColumnKind("float")
        return ColumnKind("decimal", int(col_type.scale or 0) if col_type.scale is not None else -1)
    if isinstance(col_type, sa.DateTime):
        zoned = bool(getattr(col_type, "timezone", False)) or "OFFSET" in name
        return ColumnKind("datetimetz" if zoned else "datetime")
    if isinstance(col_type, sa.Date):
        return ColumnKind("date")
    if isinstance(col_type, sa.types._Binary):
        return ColumnKind("binary")
    if isinstance(col_type, sa.Uuid):
        return ColumnKind("uuid")
    if isinstance(col_type, (sa.JSON, sa.Time, sa.Interval, sa.ARRAY)):
        return ColumnKind("other")
    if isinstance(col_type, sa.CHAR) or name in {"CHAR", "NCHAR", "BPCHAR"}:
        return ColumnKind("char")
    if isinstance(col_type, sa.String):
        return ColumnKind("text")
    return ColumnKind("other")


# -- per-dialect SQL ------------------------------------------------------------------------------------

class TrimTrailing(ColumnElement[str]):
    """`TRIM(TRAILING 'c' FROM expr)` (MariaDB, SQL Server 2022)."""

    inherit_cache = True
    type = sa.String()

    def __init__(self, expr: ColumnElement[Any], char: str) -> None:
        self.expr = expr
        self.char = char


@compiles(TrimTrailing)
def _trim_trailing(element: TrimTrailing, compiler: Any, **kw: Any) -> str:
    return f"TRIM(TRAILING '{element.char}' FROM {compiler.process(element.expr, **kw)})"


class RowHashSQL(abc.ABC):
    """Builds, for one dialect, the SQL of a row's 64-bit digest and of a range's checksum sum."""

    @abc.abstractmethod
    def piece(self, col: ColumnElement[Any], kind: ColumnKind) -> ColumnElement[Any] | None:
        """The column's normalised text (NULL stays NULL), or None if this dialect cannot normalise it."""

    @abc.abstractmethod
    def digest(self, pieces: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        """The row's 64-bit digest (signed or unsigned: sums are taken modulo 2**64)."""

    def total(self, digest: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.sum(digest)

    def row_digest(self, cols: Sequence[sa.Column[Any]]) -> ColumnElement[Any] | None:
        pieces = []
        for col in cols:
            piece = self.piece(col, column_kind(col.type))
            if piece is None:
                return None
            pieces.append(piece)
        return self.digest(pieces)


class PostgresRowHash(RowHashSQL):
    TS_FORMAT = "YYYY-MM-DD HH24:MI:SS.US"

    def piece(self, col: ColumnElement[Any], kind: ColumnKind) -> ColumnElement[Any] | None:
        k = kind.kind
        if k in ("text", "int", "uuid"):
            return sa.cast(col, sa.Text)
        if k == "bool":
            return sa.case((col.is_(sa.true()), sa.literal_column("'1'")),
                           (col.is_(sa.false()), sa.literal_column("'0'")))
        if k in ("decimal", "money"):
            return sa.cast(sa.func.trim_scale(col), sa.Text)
        if k == "float":  # float8's text is the shortest round-trip form, as Python's repr
            return sa.cast(sa.func.trim_scale(sa.cast(sa.cast(col, sa.Text), sa.Numeric)), sa.Text)
        if k == "datetime":
            return sa.func.to_char(col, sa.literal_column(f"'{self.TS_FORMAT}'"))
        if k == "datetimetz":
            return sa.func.to_char(sa.func.timezone(sa.literal_column(f"'{TIMESTAMP_UTC}'"), col),
                                   sa.literal_column(f"'{self.TS_FORMAT}'"))
        if k == "date":
            return sa.func.to_char(col, sa.literal_column("'YYYY-MM-DD'"))
        if k == "binary":
            return sa.literal_column("'\\x'", sa.Text).op("||")(sa.func.encode(col, sa.literal_column("'hex'")))
        return None  # char(n) (padding), real, json, time: Python

    def digest(self, pieces: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        null: ColumnElement[Any] = sa.literal_column("'\\x004e'::bytea")
        sep: ColumnElement[Any] = sa.literal_column("'\\x1f'::bytea")
        data: ColumnElement[Any] | None = None
        for piece in pieces:
            part = sa.func.coalesce(sa.func.convert_to(piece, sa.literal_column("'UTF8'")), null)
            data = part if data is None else data.op("||")(sep).op("||")(part)
        hex16 = sa.func.left(sa.func.md5(data), 16)
        return sa.cast(sa.cast(sa.literal_column("'x'", sa.Text).op("||")(hex16), postgresql.BIT(64)), sa.BigInteger)


class MariaDBRowHash(RowHashSQL):
    def piece(self, col: ColumnElement[Any], kind: ColumnKind) -> ColumnElement[Any] | None:
        k = kind.kind
        utf8 = mysql.CHAR(charset="utf8mb4")
        if k in ("text", "char", "int", "bool"):  # MariaDB's BOOLEAN is TINYINT(1): it reads as 0/1 too
            return sa.cast(col, utf8)
        if k in ("decimal", "money"):
            text = sa.cast(col, utf8)
            if kind.scale == 0:
                return text
            return sa.func.regexp_replace(text, sa.literal("[.]?0+$"), sa.literal(""))
        if k == "datetime":
            return sa.func.date_format(col, sa.literal("%Y-%m-%d %H:%i:%s.%f"))
        if k == "date":
            return sa.func.date_format(col, sa.literal("%Y-%m-%d"))
        if k == "binary":
            return sa.func.concat(sa.literal("\\x"), sa.func.lower(sa.func.hex(col)))
        return None  # float/double (no shortest round-trip text), json, time: Python

    def digest(self, pieces: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        null = sa.func.concat(sa.func.char(0), sa.literal_column("'N'"))
        sep = sa.func.char(31)
        parts: list[ColumnElement[Any]] = []
        for piece in pieces:
            if parts:
                parts.append(sep)
            parts.append(sa.func.coalesce(sa.cast(piece, mysql.BINARY()), null))
        hex16 = sa.func.left(sa.func.md5(sa.func.concat(*parts)), 16)
        return sa.cast(sa.func.conv(hex16, 16, 10), mysql.INTEGER(unsigned=True))


def _registry() -> dict[str, RowHashSQL]:
    from cloudsync.dialects.mssql.checksum import MssqlRowHash

    return {"postgresql": PostgresRowHash(), "mysql": MariaDBRowHash(), "mariadb": MariaDBRowHash(),
            "mssql": MssqlRowHash()}


_HASHERS: dict[str, RowHashSQL] | None = None


def hasher_for(dialect: str) -> RowHashSQL | None:
    """The dialect's SQL row hasher; None (SQLite and unknown dialects) means hash in Python."""
    global _HASHERS
    if _HASHERS is None:
        _HASHERS = _registry()
    return _HASHERS.get(dialect)


# -- one side of a comparison ------------------------------------------------------------------------

class RangeSide:
    """One table on one side (venue source or cloud target): range sums, row digests, split points."""

    def __init__(self, label: str, engine: Engine, table: sa.Table, columns: Sequence[sa.Column[Any]],
                 key_columns: Sequence[sa.Column[Any]], filters: Sequence[ColumnElement[bool]],
                 errors: Callable[[], AbstractContextManager[None]],
                 read: Callable[[Key | None, Key | None], Iterator[Rows]], force_python: bool = False) -> None:
        self.label = label
        self.engine = engine
        self.table = table
        self.columns = list(columns)
        self.key_columns = list(key_columns)
        self.filters = list(filters)
        self._errors = errors
        self._read = read
        names = [c.name for c in self.columns]
        self._key_idx = [names.index(c.name) for c in self.key_columns]
        hasher = None if force_python else hasher_for(engine.dialect.name)
        self._hasher = hasher
        self._digest = hasher.row_digest(self.columns) if hasher is not None else None

    @property
    def method(self) -> str:
        return "sql" if self._digest is not None else "python"

    def _where(self, lo: Key | None, hi: Key | None) -> ColumnElement[bool]:
        return sa.and_(*self.filters, keys.in_range(self.key_columns, lo, hi))

    def range_sum(self, lo: Key | None, hi: Key | None) -> RangeSum:
        if self._digest is None or self._hasher is None:
            rows = checksum = 0
            for batch in self._read(lo, hi):
                for row in batch:
                    rows += 1
                    checksum += row_digest64(row)
            return RangeSum(rows, checksum % MOD_64)
        stmt = sa.select(sa.func.count(), self._hasher.total(self._digest)).select_from(self.table).where(
            self._where(lo, hi))
        with self._errors(), self.engine.connect() as conn:
            count, total = conn.execute(stmt).one()
        return RangeSum(int(count), int(total or 0) % MOD_64)

    def row_digests(self, lo: Key | None, hi: Key | None) -> dict[NormKey, int]:
        """Every row in the range: its normalised key → its digest (for counting missing/extra/different)."""
        out: dict[NormKey, int] = {}
        if self._digest is None:
            for batch in self._read(lo, hi):
                for row in batch:
                    out[tuple(normalise(row[i]) for i in self._key_idx)] = row_digest64(row)
            return out
        stmt = sa.select(*self.key_columns, self._digest).where(self._where(lo, hi))
        with self._errors(), self.engine.connect() as conn:
            for row in conn.execute(stmt):
                out[tuple(normalise(v) for v in row[:-1])] = int(row[-1]) % MOD_64
        return out

    def split_points(self, lo: Key | None, hi: Key | None, rows: int, parts: int) -> list[Key]:
        """Keys cutting the range's `rows` rows into about `parts` equal parts (index-only, in the database)."""
        step = max(-(-rows // parts), 1)
        rn = sa.func.row_number().over(order_by=self.key_columns).label("cs_rn")
        inner = sa.select(*self.key_columns, rn).where(self._where(lo, hi)).subquery("cs_split")
        outer = [inner.c[c.name] for c in self.key_columns]
        stmt = sa.select(*outer).where(inner.c.cs_rn % step == 0, inner.c.cs_rn < rows).order_by(*outer)
        with self._errors(), self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt)]


def source_side(source: Source, table: sa.Table, batch_rows: int, force_python: bool = False) -> RangeSide:
    def read(lo: Key | None, hi: Key | None) -> Iterator[Rows]:
        return source.read_range(table, lo, hi, batch_rows)

    return RangeSide(f"venue {source.venue_id}", source.engine, table, list(table.columns),
                     source.key_columns(table), [], lambda: source_errors(source.venue_id), read, force_python)


def target_side(target: Target, cloud: sa.Table, venue_id: str, names: Sequence[str], batch_rows: int,
                force_python: bool = False) -> RangeSide:
    """The venue's rows of a cloud table, columns in the source's order (`names`)."""
    columns = [cloud.c[n] for n in names]
    key_columns = [c for c in cloud.primary_key.columns if c.name != VENUE_COLUMN]

    def read(lo: Key | None, hi: Key | None) -> Iterator[Rows]:
        return target.read_range(cloud, venue_id, lo, hi, batch_rows)

    return RangeSide("cloud", target.engine, cloud, columns, key_columns, [cloud.c[VENUE_COLUMN] == venue_id],
                     target_errors, read, force_python)
