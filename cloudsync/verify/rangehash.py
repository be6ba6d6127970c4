"""Checksums of key ranges, computed inside each database, that agree across dialects for equal data.

A range's checksum is its row count and the sum, modulo 2**64, of a 64-bit digest per row: the first
8 bytes of the MD5 of the row's normalised UTF-8 text (`cloudsync.checksums.row_digest64`). The sum
does not depend on row order, so no database has to sort anything to agree with another.

Each dialect builds the normalised text in SQL the way `cloudsync.checksums.normalise` does in Python:
decimals without trailing zeros, timestamps in UTC as `YYYY-MM-DD HH:MM:SS.ffffff`, booleans as 1/0,
binary as `\\x` + hex, NULL as its own marker, fields joined by U+001F and hashed as UTF-8 bytes.
A table with a column whose type a dialect cannot normalise exactly (floats on MariaDB, JSON, time)
is hashed in Python on that side, as is every table on SQLite: the digests are the same either way.

PostgreSQL to PostgreSQL (the usual venue-to-cloud pair when both are PostgreSQL) skips the text
normalisation and MD5: both sides hash each row with PostgreSQL's own 64-bit type hashes
(`hash_record_extended` over the row, seeded per row so a sum cannot be fooled by values swapped
between rows), about 4 times cheaper. Both sides must use it or neither:
`pair_hashers` chooses it only when every column has the same kind on both sides, a kind whose
PostgreSQL hash depends only on the value (not enums, money, json, collations), the servers are 14 or
later and share an encoding; otherwise the pair keeps the normalised MD5 that agrees across dialects.

Many ranges are summed in one query per side (`RangeSide.range_sums`): each row's range is found by a
binary search of CASE expressions over the boundaries (or arithmetically, `EvenCuts`), and rows are
grouped by it. On PostgreSQL with a single integer key, each range is instead summed on its own through
the key index (a lateral aggregate per range over an array of bounds, one query), and a PostgreSQL pair
XORs each column's hashes separately (each row's seeded by its key) and weights the results in Python:
no record built per row, and a 64-bit aggregate state instead of `sum`'s 128-bit one.
"""

from __future__ import annotations

import abc
import logging
import threading
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
INT8_MIN, INT8_MAX = -(1 << 63), (1 << 63) - 1
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


class PgNativeRowHash(RowHashSQL):
    """PostgreSQL's own type hashes over the row; only ever used on both sides of a PostgreSQL pair.

    `hash_record_extended` combines the columns' seeded 64-bit hashes linearly, so with one seed for
    every row a table's sum would only depend on each column's multiset of values (values swapped
    between rows would go unseen). Each row's hashes are therefore seeded by the row's own key when it
    is a single integer (every row a different seed, at no cost); otherwise the row's hash is put
    through `hashtextextended` once more before summing.
    """

    name = "pg-native"
    ZERO: ColumnElement[Any] = sa.literal_column("0")

    def piece(self, col: ColumnElement[Any], kind: ColumnKind) -> ColumnElement[Any] | None:
        return col if kind.kind in NATIVE_KINDS else None

    def digest(self, pieces: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        record = sa.func.hash_record_extended(sa.func.row(*pieces), self.ZERO)
        return sa.func.hashtextextended(sa.cast(record, sa.Text), self.ZERO)

    def keyed_digest(self, cols: Sequence[sa.Column[Any]], key: Sequence[sa.Column[Any]]) -> ColumnElement[Any] | None:
        if len(key) != 1 or column_kind(key[0].type).kind != "int":
            return self.row_digest(cols)
        pieces = [self.piece(c, column_kind(c.type)) for c in cols]
        if any(p is None for p in pieces):
            return None
        return sa.func.hash_record_extended(sa.func.row(*pieces), sa.cast(key[0], sa.BigInteger))

    def column_hashes(self, cols: Sequence[sa.Column[Any]], key: Sequence[sa.Column[Any]]) -> Weighted | None:
        """Each column's seeded hash with its weight, for a range checksum aggregated per column.

        `hash_record_extended(row(c1 … cn), seed)` is Σ 31**(n-i) × h_i(ci, seed) mod 2**64, h_i being the
        extended hash function of ci's type (0 for NULL). A range's checksum is Σ 31**(n-i) × x_i mod 2**64,
        x_i being the XOR of column i's hashes over the range's rows: no record built per row (about a fifth
        of the cost of a checksum query), and `bit_xor` keeps a plain 64-bit state where `sum` keeps a
        128-bit one (another 6-7 %). Every row's hashes are seeded by its own key, so equal values in
        different rows never cancel, and a changed value changes its column's x_i (the weights are odd,
        so no x_i's change is lost in the weighted sum). Each h_i is called directly where it takes the
        column's value as SQL can pass it (the same function the record hash looks up, or one that hashes
        every value alike), else through a one-column record, which is h_i exactly; bytea alone is hashed
        as its hex text (the same on every server, like every other h_i). Single integer keys only (the
        seed); None otherwise or for tables too wide for it to pay.
        """
        if len(key) != 1 or column_kind(key[0].type).kind != "int" or len(cols) > MAX_COLUMN_SUMS:
            return None
        seed = sa.cast(key[0], sa.BigInteger)
        n = len(cols)
        out: Weighted = []
        for i, col in enumerate(cols):
            if self.piece(col, column_kind(col.type)) is None:
                return None
            out.append(((31 ** (n - 1 - i)) % MOD_64, _column_hash(col, seed)))
        return out


#: more columns than this: one record hash per row (an aggregate per column would cost more than it saves)
MAX_COLUMN_SUMS = 32

Weighted = list[tuple[int, ColumnElement[Any]]]


def _column_hash(col: sa.Column[Any], seed: ColumnElement[Any]) -> ColumnElement[Any]:
    """The extended hash PostgreSQL's record hash applies to `col` (seeded by `seed`), called directly.

    int2/int4/int8 hash alike (hashint8extended folds its high half away for values that fit 32 bits),
    float4 as float8, a boolean as the integer 0/1 (its "char" hash), a zoned timestamp as its UTC
    wall clock (the same microseconds, hashed by the same function); anything else through a one-column record.
    """
    col_type = col.type
    kind = column_kind(col_type).kind
    f = sa.func
    if kind == "int":
        return f.hashint8extended(sa.cast(col, sa.BigInteger), seed)
    if kind == "bool":
        return f.hashint4extended(sa.cast(col, sa.Integer), seed)
    if kind == "decimal" and type(col_type).__name__.upper() in ("NUMERIC", "DECIMAL"):
        return f.hash_numeric_extended(col, seed)
    if kind == "float" and isinstance(col_type, sa.Float):
        return f.hashfloat8extended(sa.cast(col, postgresql.DOUBLE_PRECISION), seed)
    if kind == "text" and type(col_type).__name__.upper() in _PLAIN_TEXT:
        return f.hashtextextended(col, seed)
    if kind == "datetime":
        return f.timestamp_hash_extended(col, seed)
    if kind == "datetimetz":
        # AT TIME ZONE a zero interval: the UTC wall clock, the same microseconds (no zone name to look up)
        return f.timestamp_hash_extended(f.timezone(sa.literal_column("INTERVAL '0'"), col), seed)
    if kind == "uuid" and type(col_type).__name__.upper() == "UUID":
        return f.uuid_hash_extended(col, seed)
    if kind == "binary":  # bytea's own hash takes no SQL argument: its hex text's (a one-column record costs
        # more); encode() makes the text in one step, where a cast to text also parses its output again
        return f.hashtextextended(f.encode(col, sa.literal_column("'hex'")), seed)
    return f.hash_record_extended(f.row(col), seed)  # date, char(n), …: the record hash of one column


#: string types whose PostgreSQL hash is hashtextextended (not citext, which folds case)
_PLAIN_TEXT = frozenset({"STRING", "TEXT", "VARCHAR", "UNICODE", "UNICODETEXT", "NVARCHAR"})


#: kinds whose PostgreSQL hash is a function of the value alone, the same for every type of the kind
#: (int2/int4/int8 hash alike; numeric ignores scale; timestamps hash their instant; text its bytes)
NATIVE_KINDS = frozenset({"text", "char", "int", "bool", "decimal", "float", "datetime", "datetimetz", "date",
                          "binary", "uuid"})
NATIVE_MIN_VERSION = (14,)  # hash_record_extended


def _native_column(col: sa.Column[Any]) -> str | None:
    """The column's kind if PostgreSQL's native hash of it can be compared with another server's."""
    col_type = col.type
    if isinstance(col_type, (sa.Enum, TypeDecorator)) or getattr(col_type, "collation", None):
        return None  # enums hash their OID; a collation may hash a sort key
    kind = column_kind(col_type).kind
    return kind if kind in NATIVE_KINDS else None


_server_facts: dict[str, tuple[tuple[int, ...], str]] = {}
_facts_lock = threading.Lock()


def _pg_facts(engine: Engine, errors: Callable[[], AbstractContextManager[None]]) -> tuple[tuple[int, ...], str]:
    """(server version, server encoding) of a PostgreSQL engine, asked once per database."""
    where = str(engine.url)
    with _facts_lock:
        known = _server_facts.get(where)
    if known is not None:
        return known
    with errors(), engine.connect() as conn:
        encoding = str(conn.execute(sa.text("SHOW server_encoding")).scalar_one())
        version = tuple(int(v) for v in engine.dialect.server_version_info or (0,) if isinstance(v, int))
    with _facts_lock:
        _server_facts[where] = (version, encoding.upper())
    return version, encoding.upper()


def pair_hashers(src: RangeSide, dst: RangeSide) -> bool:
    """Switch both sides to PostgreSQL's native row hash where they can agree on it. True if switched."""
    if src.forced_python or dst.forced_python:
        return False
    if src.engine.dialect.name != "postgresql" or dst.engine.dialect.name != "postgresql":
        return False
    if len(src.columns) != len(dst.columns):
        return False
    for a, b in zip(src.columns, dst.columns, strict=True):
        kind = _native_column(a)
        if kind is None or kind != _native_column(b):
            return False
    facts = [_pg_facts(side.engine, side._errors) for side in (src, dst)]
    if any(version < NATIVE_MIN_VERSION for version, _ in facts) or facts[0][1] != facts[1][1]:
        return False
    native = PgNativeRowHash()
    src.use_hasher(native)
    dst.use_hasher(native)
    return True


def bucket_of(key_columns: Sequence[ColumnElement[Any]], bounds: Sequence[Key]) -> ColumnElement[Any]:
    """The index of the range (bounds[i-1], bounds[i]] a row's key falls in (0 … len(bounds)), by a
    binary search of nested CASE expressions: log2(len(bounds)) key comparisons per row."""

    def node(first: int, last: int) -> ColumnElement[Any]:
        if first == last:
            return sa.literal_column(str(first))
        mid = (first + last) // 2
        return sa.case((keys.at_or_before(key_columns, bounds[mid]), node(first, mid)),
                       else_=node(mid + 1, last))

    return node(0, len(bounds))


@dataclass(frozen=True)
class EvenCuts:
    """Integer keys from `low` on, cut every `span / parts` values: the bounds `low - 1 + span*i // parts`
    (i = 1 … parts-1), so a key's range is arithmetic instead of a search over the bounds."""

    low: int
    span: int
    parts: int

    #: beyond this, (key - low + 1) * parts could overflow a BIGINT: the bounds are searched instead
    LIMIT = 1 << 62

    def __post_init__(self) -> None:
        if not 1 <= self.parts <= self.span:
            raise ValueError(f"cannot cut {self.span} keys into {self.parts} ranges")

    @property
    def bounds(self) -> list[Key]:
        return [(self.low - 1 + self.span * i // self.parts,) for i in range(1, self.parts)]

    def bucket(self, col: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
        """Range index of `col`: for x = key - low in [0, span), ((x + 1) * parts - 1) div span."""
        if self.span * self.parts >= self.LIMIT:
            return bucket_of([col], self.bounds)
        scaled = (col - self.low + 1) * self.parts - 1
        # integer division: truncating `/` on PostgreSQL, SQL Server and SQLite; MariaDB's `/` is decimal
        quotient = scaled.op("DIV", precedence=8)(self.span) if dialect in ("mysql", "mariadb") else scaled // self.span
        last = self.low + self.span - 1
        return sa.case((col < self.low, sa.literal_column("0")),
                       (col > last, sa.literal_column(str(self.parts - 1))), else_=quotient)


Cuts = Sequence[Key] | EvenCuts

#: bind parameters one grouped query spends on range bounds at most
MAX_PARAMETERS = 1500


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


def _plan_for_checksums(conn: sa.Connection, grouped: bool = False, by_index: bool = False) -> None:
    """PostgreSQL settings for this transaction's checksum query.

    No JIT: compiling the expressions first costs more than it saves (a CASE over a thousand range
    boundaries takes seconds to compile). Grouped by range, the planner cannot tell that the ranges are
    few (it expects a group per key), so it would sort every row, spilling to disk, and hash the rows
    in one process after a Gather: a hash aggregate in one scan is several times cheaper. Summed range
    by range (`by_index`), each range is read through the key index (a bitmap scan of it): never a scan
    of the whole table per range.
    """
    if conn.dialect.name != "postgresql":
        return
    settings = {"jit": "off"}
    if grouped or by_index:
        settings.update(enable_sort="off", max_parallel_workers_per_gather="0")
    if by_index:  # a bitmap scan of the range's index entries reads each heap page once, in page order:
        # 7-14 % cheaper than a plain index scan, which goes back to the page for every row
        settings.update(enable_seqscan="off", enable_indexscan="off")
    conn.execute(sa.select(*(sa.func.set_config(name, value, True) for name, value in settings.items())))


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
        self.forced_python = force_python
        self._hasher: RowHashSQL | None = None
        self._digest: ColumnElement[Any] | None = None
        self._sums: Weighted = []
        self.use_hasher(None if force_python else hasher_for(engine.dialect.name))

    def use_hasher(self, hasher: RowHashSQL | None) -> None:
        columns: Weighted | None = None
        if isinstance(hasher, PgNativeRowHash):
            digest = hasher.keyed_digest(self.columns, self.key_columns)
            columns = hasher.column_hashes(self.columns, self.key_columns) if digest is not None else None
        else:
            digest = hasher.row_digest(self.columns) if hasher is not None else None
        self._hasher, self._digest = (hasher, digest) if digest is not None else (None, None)
        if self._hasher is None or self._digest is None:
            self._sums = []
        elif columns is not None:  # a range's checksum: Σ weight × (XOR of the column's hashes)
            self._sums = [(weight, sa.func.bit_xor(h)) for weight, h in columns]
        else:
            self._sums = [(1, self._hasher.total(self._digest))]

    def _checksum(self, totals: Sequence[Any]) -> int:
        return sum(weight * int(total or 0) for (weight, _), total in zip(self._sums, totals, strict=True)) % MOD_64

    @property
    def method(self) -> str:
        if self._digest is None:
            return "python"
        return "pg-native" if isinstance(self._hasher, PgNativeRowHash) else "sql"

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
        stmt = sa.select(sa.func.count(), *(agg for _, agg in self._sums)).select_from(self.table).where(
            self._where(lo, hi))
        with self._errors(), self.engine.connect() as conn:
            _plan_for_checksums(conn)
            count, *totals = conn.execute(stmt).one()
        return RangeSum(int(count), self._checksum(totals))

    def range_sums(self, lo: Key | None, hi: Key | None, cuts: Cuts) -> list[RangeSum]:
        """Checksums of the consecutive ranges (lo, b1], (b1, b2], …, (bn, hi]: one query, one pass."""
        bounds = cuts.bounds if isinstance(cuts, EvenCuts) else list(cuts)
        if not bounds:
            return [self.range_sum(lo, hi)]
        edges = [lo, *bounds, hi]
        if self._digest is None or self._hasher is None:
            return [self.range_sum(a, b) for a, b in zip(edges, edges[1:], strict=False)]
        if self.by_index:
            return self.sums_by_index(list(zip(edges, edges[1:], strict=False)))
        if isinstance(cuts, EvenCuts) and self.integer_key:
            bucket = cuts.bucket(self.key_columns[0], self.engine.dialect.name)
        else:
            # each bound is a few bind parameters (SQL Server takes at most 2,100 in a statement)
            n = len(self.key_columns)
            most = max(MAX_PARAMETERS // (n * (n + 1) // 2), 1)
            if len(bounds) > most:  # several grouped queries, each over a run of the ranges
                out: list[RangeSum] = []
                for first in range(0, len(bounds) + 1, most + 1):
                    last = min(first + most + 1, len(bounds) + 1)  # ranges first … last-1
                    out += self.range_sums(edges[first], edges[last], bounds[first:last - 1])
                return out
            bucket = bucket_of(self.key_columns, bounds)
        inner = sa.select(bucket.label("cs_b"), self._digest.label("cs_d")).select_from(
            self.table).where(self._where(lo, hi)).subquery("cs_g")
        stmt = sa.select(inner.c.cs_b, sa.func.count(), self._hasher.total(inner.c.cs_d)).group_by(inner.c.cs_b)
        found: dict[int, RangeSum] = {}
        with self._errors(), self.engine.connect() as conn:
            _plan_for_checksums(conn, grouped=True)
            for bucket, count, total in conn.execute(stmt):
                found[int(bucket)] = RangeSum(int(count), int(total or 0) % MOD_64)
        return [found.get(i, RangeSum(0, 0)) for i in range(len(bounds) + 1)]

    def sums_by_index(self, pairs: Sequence[tuple[Key | None, Key | None]]) -> list[RangeSum]:
        """PostgreSQL, a single integer key (`by_index`): each range (lo, hi] summed on its own, all in one
        query (a lateral aggregate per range over an array of bounds), each read through the key index.
        The ranges need not be adjacent.

        About a fifth cheaper than grouping every row of the table by its range (no hash lookup of each
        row's range), and on a cloud table that many venues share it reads this venue's rows only.
        """
        key = self.key_columns[0]
        lows: list[int] = []
        highs: list[int] = []
        for a, b in pairs:
            low = INT8_MIN if a is None else int(a[0]) + 1
            high = INT8_MAX if b is None else int(b[0])
            if low > high:
                low, high = 1, 0  # empty (nothing lies after the largest bigint)
            lows.append(low)
            highs.append(high)
        array = postgresql.ARRAY(sa.BigInteger)
        ranges = sa.func.unnest(sa.bindparam("cs_lows", lows, type_=array),
                                sa.bindparam("cs_highs", highs, type_=array)).table_valued(
            "cs_lo", "cs_hi", with_ordinality="cs_i").render_derived("cs_r")
        aggregates = [sa.func.count().label("cs_n"), *(agg.label(f"cs_t{i}") for i, (_, agg) in enumerate(self._sums))]
        per_range = sa.select(*aggregates).select_from(self.table).where(
            *self.filters, key >= ranges.c.cs_lo, key <= ranges.c.cs_hi).lateral("cs_s")
        stmt = sa.select(ranges.c.cs_i, *per_range.c).select_from(ranges.join(per_range, sa.true()))
        found: dict[int, RangeSum] = {}
        with self._errors(), self.engine.connect() as conn:
            _plan_for_checksums(conn, by_index=True)
            for number, count, *totals in conn.execute(stmt):
                found[int(number) - 1] = RangeSum(int(count), self._checksum(totals))
        return [found.get(i, RangeSum(0, 0)) for i in range(len(lows))]

    def key_extent(self) -> tuple[int, int] | None:
        """(smallest, largest) key of a single integer key (from the key index), None when empty."""
        stmt = sa.select(sa.func.min(self.key_columns[0]), sa.func.max(self.key_columns[0])).where(*self.filters)
        with self._errors(), self.engine.connect() as conn:
            low, high = conn.execute(stmt).one()
        return None if low is None else (int(low), int(high))

    @property
    def integer_key(self) -> bool:
        return len(self.key_columns) == 1 and self.integer_keys

    @property
    def by_index(self) -> bool:
        """Ranges summed one by one through the key index (`sums_by_index`): any run of them is a query
        that reads only its own keys."""
        return self._digest is not None and self.integer_key and self.engine.dialect.name == "postgresql"

    @property
    def integer_keys(self) -> bool:
        """Every key column is an integer: keys order alike on every side (no collation)."""
        return all(column_kind(c.type).kind == "int" for c in self.key_columns)

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
            _plan_for_checksums(conn)
            for row in conn.execute(stmt).all():
                out[tuple(normalise(v) for v in row[:-1])] = int(row[-1]) % MOD_64
        return out

    def int_digests(self, ranges: Sequence[tuple[Key | None, Key | None]]) -> dict[tuple[int, ...], int]:
        """`row_digests` of every row in any of `ranges`, for integer keys (`integer_keys`), keyed by the key
        itself: comparable and ordered alike on every side, with no per-row normalising. One query."""
        n = len(self.key_columns)
        if self._digest is None:
            return {tuple(int(row[i]) for i in self._key_idx): row_digest64(row)
                    for lo, hi in ranges for batch in self._read(lo, hi) for row in batch}
        stmt = sa.select(*self.key_columns, self._digest).where(
            *self.filters, sa.or_(*(keys.in_range(self.key_columns, lo, hi) for lo, hi in ranges)))
        with self._errors(), self.engine.connect() as conn:
            _plan_for_checksums(conn)
            return {tuple(map(int, row[:n])): int(row[n]) % MOD_64 for row in conn.execute(stmt).all()}

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
