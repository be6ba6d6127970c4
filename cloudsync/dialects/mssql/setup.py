"""T-SQL that prepares a SQL Server venue database: creating it and turning Change Tracking on.

The `change_tracking` feed reads `CHANGETABLE(CHANGES …)`, which needs Change Tracking enabled on the
database and on every synced table; snapshot isolation lets a reader see the tracked version and the
rows at one consistent point. Every statement is idempotent (guarded by `IF`), so a seed or an
operator can run it again. Names are quoted by SQLAlchemy's SQL Server identifier preparer, never
pasted in raw, and must pass `NAME` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection

from cloudsync.errors import ConfigError

#: the names cloudsync will put into DDL: letters, digits, `_`, `-` (no quotes or brackets to escape)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")
DEFAULT_RETENTION_DAYS = 3
_PREPARER = mssql.dialect().identifier_preparer


def _name(kind: str, value: str) -> str:
    if not NAME.match(value):
        raise ConfigError(kind, f"{value!r} is not a plain SQL Server name (letters, digits, '_' or '-')")
    return value


def quote(value: str, kind: str = "name") -> str:
    """`[value]`, after checking that it is a plain name."""
    return str(_PREPARER.quote_identifier(_name(kind, value)))


def qualified(table: str, schema: str | None = None) -> str:
    return f"{quote(schema, 'schema')}.{quote(table, 'table')}" if schema else quote(table, "table")


def create_database(database: str) -> str:
    """Create the database unless it exists (run on `master`, outside a transaction)."""
    name = _name("database", database)
    return f"IF DB_ID(N'{name}') IS NULL CREATE DATABASE {quote(name, 'database')}"


def drop_database(database: str) -> list[str]:
    """Drop the database if it exists, closing its sessions first (tests clean up with this)."""
    name = _name("database", database)
    return [f"IF DB_ID(N'{name}') IS NOT NULL ALTER DATABASE {quote(name, 'database')} "
            "SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
            f"DROP DATABASE IF EXISTS {quote(name, 'database')}"]


def enable_snapshot_isolation() -> str:
    """Readers of the change feed see one consistent version (Microsoft's advice for Change Tracking)."""
    return "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON"


def enable_database_tracking(retention_days: int = DEFAULT_RETENTION_DAYS) -> str:
    """Change Tracking on for the current database, unless it already is."""
    if not 1 <= int(retention_days) <= 365:
        raise ConfigError("retention days", f"must be between 1 and 365, got {retention_days}")
    guard = "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())"
    alter = (f"ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = {int(retention_days)} DAYS, "
             "AUTO_CLEANUP = ON)")
    return f"{guard} {alter}"


def enable_table_tracking(table: str, schema: str | None = None) -> str:
    """Change Tracking on for one table (it needs a primary key), unless it already is."""
    name = qualified(table, schema)  # checked and quoted: no raw name reaches the statement
    guard = "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'{}'))"
    return guard.format(name) + f" ALTER TABLE {name} ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF)"


#: the id of the database named :name, NULL when there is none
DATABASE_ID = "SELECT DB_ID(:name) AS database_id"
#: the tables of the current database that have Change Tracking on
TRACKED_TABLES = (
    "SELECT s.name AS schema_name, t.name AS table_name FROM sys.change_tracking_tables AS ct "
    "JOIN sys.tables AS t ON t.object_id = ct.object_id JOIN sys.schemas AS s ON s.schema_id = t.schema_id "
    "ORDER BY s.name, t.name"
)
#: whether the current database has Change Tracking on (one row) or not (no row)
DATABASE_TRACKED = (
    "SELECT retention_period, retention_period_units_desc FROM sys.change_tracking_databases "
    "WHERE database_id = DB_ID()"
)


def change_tracking_statements(tables: Iterable[str], schema: str | None = None,
                               retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Everything that turns Change Tracking on for `tables`, in order."""
    return [enable_snapshot_isolation(), enable_database_tracking(retention_days),
            *(enable_table_tracking(t, schema) for t in tables)]


def enable_change_tracking(conn: Connection, tables: Iterable[str], schema: str | None = None,
                           retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Run `change_tracking_statements` on an AUTOCOMMIT connection (ALTER DATABASE refuses a
    transaction); returns the tables that are tracked afterwards."""
    for sql in change_tracking_statements(tables, schema, retention_days):
        conn.execute(sa.text(sql))
    return [row.table_name for row in conn.execute(sa.text(TRACKED_TABLES))]


def tsql_statements() -> dict[str, str]:
    """Every statement this module sends, rendered with example names (the T-SQL tests parse them)."""
    return {
        "create_database": create_database("venue_demo"),
        **{f"drop_database_{i}": sql for i, sql in enumerate(drop_database("venue_demo"))},
        "enable_snapshot_isolation": enable_snapshot_isolation(),
        "enable_database_tracking": enable_database_tracking(),
        "enable_table_tracking": enable_table_tracking("transaction_lines", "dbo"),
        "enable_table_tracking_default_schema": enable_table_tracking("clerks"),
        "tracked_tables": TRACKED_TABLES,
        "database_tracked": DATABASE_TRACKED,
    }
