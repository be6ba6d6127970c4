"""SQL Server's half of the key-range checksum (`cloudsync/verify/rangehash.py`): a HASHBYTES aggregate.

Each row's normalised text is built as UTF-8 bytes (through a `_UTF8` collation, SQL Server 2019+),
hashed with `HASHBYTES('MD5', …)`, and its first 8 bytes read as a BIGINT; a range's checksum is the
SUM of those as DECIMAL(20,0) (no overflow), taken modulo 2**64 by the caller. Decimals lose trailing
zeros with `TRIM(TRAILING …)` (SQL Server 2022), timestamps become `yyyy-mm-dd hh:mi:ss.ffffff` in UTC
(style 121 of DATETIME2(6)), binary becomes `\\x` + lowercase hex: the same text
`cloudsync.checksums.normalise` gives in Python, so equal rows hash equally against PostgreSQL.

Known gap: legacy DATETIME values (1/300 s ticks) convert to DATETIME2 with more digits than pyodbc
returns; such a table is compared exactly only when both sides are SQL Server or both Python.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.sql.elements import ColumnElement

from cloudsync.verify.rangehash import ColumnKind, RowHashSQL, TrimTrailing

UTF8_COLLATION = "Latin1_General_100_CI_AS_SC_UTF8"


def _convert(type_sql: str, expr: ColumnElement[Any], style: int) -> ColumnElement[Any]:
    return sa.func.convert(sa.literal_column(type_sql), expr, sa.literal_column(str(style)))


class MssqlRowHash(RowHashSQL):
    def piece(self, col: ColumnElement[Any], kind: ColumnKind) -> ColumnElement[Any] | None:
        k = kind.kind
        if k in ("text", "char"):
            wide = sa.cast(col, mssql.NVARCHAR("max")).collate(UTF8_COLLATION)  # type: ignore[arg-type]
            return sa.cast(wide, mssql.VARCHAR("max"))  # type: ignore[arg-type]
        if k in ("int", "bool"):
            return sa.cast(col, mssql.VARCHAR(20))
        if k in ("decimal", "money"):
            number = sa.cast(col, mssql.DECIMAL(19, 4)) if k == "money" else col
            text = sa.cast(number, mssql.VARCHAR(60))
            if kind.scale == 0:
                return text
            return TrimTrailing(TrimTrailing(text, "0"), ".")
        if k == "datetime":
            return _convert("VARCHAR(26)", sa.cast(col, mssql.DATETIME2(6)), 121)
        if k == "datetimetz":
            utc = sa.func.switchoffset(col, sa.literal_column("'+00:00'"))
            return _convert("VARCHAR(26)", sa.cast(utc, mssql.DATETIME2(6)), 121)
        if k == "date":
            return _convert("VARCHAR(10)", col, 23)
        if k == "binary":
            return sa.func.concat(sa.literal_column("'\\x'"), sa.func.lower(_convert("VARCHAR(MAX)", col, 2)))
        if k == "uuid":
            return sa.func.lower(sa.cast(col, mssql.VARCHAR(36)))
        return None  # float, real, xml, sql_variant, time: Python

    def digest(self, pieces: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        data: ColumnElement[Any] | None = None
        for piece in pieces:
            part = sa.func.coalesce(sa.cast(piece, mssql.VARBINARY("max")), sa.literal_column("0x004E"))
            data = part if data is None else data.op("+")(sa.literal_column("0x1F")).op("+")(part)
        md5 = sa.func.hashbytes(sa.literal_column("'MD5'"), data)
        return sa.cast(sa.func.substring(md5, 1, 8), sa.BigInteger)

    def total(self, digest: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.sum(sa.cast(digest, mssql.DECIMAL(20, 0)))


def example_table() -> sa.Table:
    """A table shaped like one reflected from a venue's SQL Server, with every kind of column."""
    md = sa.MetaData()
    return sa.Table(
        "TransactionLines", md,
        sa.Column("LocationId", mssql.SMALLINT, primary_key=True),
        sa.Column("TxnId", mssql.INTEGER, primary_key=True),
        sa.Column("Name", mssql.NVARCHAR(120)),
        sa.Column("Code", mssql.CHAR(4)),
        sa.Column("Price", mssql.DECIMAL(12, 2)),
        sa.Column("Whole", mssql.DECIMAL(12, 0)),
        sa.Column("Tip", mssql.MONEY),
        sa.Column("Paid", mssql.BIT),
        sa.Column("OpenedAt", mssql.DATETIME2(7)),
        sa.Column("Legacy", mssql.DATETIME),
        sa.Column("ClosedAt", mssql.DATETIMEOFFSET),
        sa.Column("Day", mssql.DATE),
        sa.Column("Image", mssql.VARBINARY("max")),
        sa.Column("Guid", mssql.UNIQUEIDENTIFIER),
    )


def render(stmt: sa.ClauseElement) -> str:
    return str(stmt.compile(dialect=mssql.dialect(), compile_kwargs={"literal_binds": True}))


def tsql_statements() -> dict[str, str]:
    """The range checksum and row digest statements as SQL Server receives them (for the T-SQL tests)."""
    from cloudsync import keys
    from cloudsync.verify.rangehash import bucket_of

    table = example_table()
    hasher = MssqlRowHash()
    digest = hasher.row_digest(list(table.columns))
    assert digest is not None
    pk = list(table.primary_key.columns)
    where = keys.in_range(pk, (1, 100), (2, 5000))
    rn = sa.func.row_number().over(order_by=pk).label("cs_rn")
    inner = sa.select(*pk, rn).where(where).subquery("cs_split")
    outer = [inner.c[c.name] for c in pk]
    bounds = [(1, 900), (2, 100), (2, 2500), (2, 4000)]
    grouped = sa.select(bucket_of(pk, bounds).label("cs_b"), digest.label("cs_d")).select_from(table).where(
        where).subquery("cs_g")
    return {
        "range_sums": render(sa.select(grouped.c.cs_b, sa.func.count(), hasher.total(grouped.c.cs_d))
                             .group_by(grouped.c.cs_b)),
        "key_extent": render(sa.select(sa.func.min(pk[1]), sa.func.max(pk[1]))),
        "range_sum": render(sa.select(sa.func.count(), hasher.total(digest)).select_from(table).where(where)),
        "row_digests": render(sa.select(*pk, digest).where(where)),
        "split_points": render(sa.select(*outer).where(inner.c.cs_rn % 4 == 0, inner.c.cs_rn < 16).order_by(*outer)),
    }
