"""The engine's own keyset statements as SQL Server receives them.

The engine builds its reads once, in SQLAlchemy Core (`Source.plan_statement`, `Source.range_statement`,
the `Source.read_keys` select); this module compiles them with SQLAlchemy's SQL Server dialect, as a
SQL Server 2022 connection would, for a table shaped like one reflected from a venue (composite key,
NVARCHAR, NUMERIC, DATETIME2, VARBINARY). The T-SQL tests parse every rendering and check what
SQL Server needs: keyset bounds in the expanded `a > x OR (a = x AND b > y)` form (T-SQL has no
row-value comparison), ROW_NUMBER() without an ORDER BY inside the derived table, and TOP for a
limited page. The same statements run for real against SQL Server in the integration suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from cloudsync import keys
from cloudsync.keys import Key
from cloudsync.sources.base import Source

#: SQL Server 2022's version, as `initialize()` would read it from a live connection
SERVER_VERSION = (16, 0, 1000)


def dialect() -> sa.Dialect:
    """A `mssql+pyodbc` dialect set up as on a SQL Server 2022 connection (VARBINARY(max), not IMAGE)."""
    d = mssql_pyodbc.dialect(paramstyle="qmark")  # what pyodbc uses; without the driver loaded it would be :named
    d.server_version_info = SERVER_VERSION  # type: ignore[assignment]  # typed as an empty tuple upstream
    d._setup_version_attributes()
    d._supports_nvarchar_max = True
    return d


def render(stmt: sa.ClauseElement, literal: bool = True) -> str:
    """T-SQL text of `stmt`: bound values inlined (`literal`) or as pyodbc's `?` markers."""
    compiled = stmt.compile(dialect=dialect(), compile_kwargs={"literal_binds": literal})
    return " ".join(str(compiled).split())


def sample_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """A table as reflection returns it from a venue's SQL Server: `dbo`, a three-column key."""
    return sa.Table(
        "transaction_lines", metadata or sa.MetaData(schema="dbo"),
        sa.Column("location_id", mssql.SMALLINT(), primary_key=True, autoincrement=False),
        sa.Column("txn_id", mssql.INTEGER(), primary_key=True, autoincrement=False),
        sa.Column("line_no", mssql.SMALLINT(), primary_key=True, autoincrement=False),
        sa.Column("product_id", mssql.INTEGER(), nullable=False),
        sa.Column("qty", mssql.NUMERIC(10, 3), nullable=False),
        sa.Column("amount", mssql.NUMERIC(12, 2), nullable=False),
        sa.Column("modifiers", mssql.NVARCHAR(None)),
        sa.Column("image_hash", mssql.VARBINARY(16)),
        sa.Column("changed_at", mssql.DATETIME2(), nullable=False),
    )


class _Renderer(Source):
    """`Source`'s statement builders without a connection: they only need the reflected table."""

    def __init__(self) -> None:  # no engine: nothing here touches a database
        self.venue_id = "mssql-render"
        self.schema = "dbo"


_SOURCE = _Renderer()


def plan_sql(table: sa.Table, chunk_rows: int) -> str:
    """Every `chunk_rows`-th key: ROW_NUMBER() over the key index, filtered outside the derived table."""
    return render(_SOURCE.plan_statement(table, chunk_rows))


def range_sql(table: sa.Table, lo: Key | None, hi: Key | None) -> str:
    """One chunk's rows, keys in (lo, hi], in key order."""
    return render(_SOURCE.range_statement(table, lo, hi))


def page_sql(table: sa.Table, after: Key | None, page_rows: int) -> str:
    """A keyset page: the next `page_rows` rows after `after` (SQL Server writes the limit as TOP)."""
    return render(_SOURCE.range_statement(table, after, None).limit(page_rows))


def read_keys_sql(table: sa.Table, wanted: Sequence[Key]) -> str:
    """The select `Source.read_keys` sends for changed keys (an OR of ANDs for a composite key)."""
    pk = _SOURCE.key_columns(table)
    return render(sa.select(*table.columns).where(keys.key_in(pk, wanted)))


def count_sql(table: sa.Table) -> str:
    return render(sa.select(sa.func.count()).select_from(table))


def tsql_statements() -> dict[str, str]:
    """Every keyset rendering, for the composite-key sample table (the T-SQL tests parse them)."""
    table = sample_table()
    lo: Key = (1, 1042, 3)
    hi: Key = (2, 77, 1)
    out: dict[str, Any] = {
        "plan": plan_sql(table, 20000),
        "range_first": range_sql(table, None, hi),
        "range_middle": range_sql(table, lo, hi),
        "range_last": range_sql(table, hi, None),
        "range_all": range_sql(table, None, None),
        "page": page_sql(table, lo, 5000),
        "read_keys": read_keys_sql(table, [lo, hi, (3, 5, 2)]),
        "count": count_sql(table),
    }
    return out
