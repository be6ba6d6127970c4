"""A demo venue on a database server: creating its database, filling it once, turning Change Tracking on.

`cloudsync demo-venue` (and the compose file's one-shot seed service) use this to stand up a venue
database that looks like a real point-of-sale back office, on SQL Server as in production, or on
PostgreSQL, MariaDB or SQLite. The seed runs on every `docker compose up`, so with `keep_existing`
a demo venue that is already filled is left as it is (its change positions stay valid).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from cloudsync.db import engine_for, source_errors
from cloudsync.demo.venue import TABLES, create_demo_venue
from cloudsync.dialects.mssql import setup as mssql_setup
from cloudsync.dsn import mask_dsn, parse_dsn
from cloudsync.errors import ConfigError

log = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: the database each server lets a login connect to before the wanted one exists
_ADMIN_DATABASE = {"mssql": "master", "postgresql": "postgres", "mysql": "mysql"}
_LABEL = "demo-venue"


@dataclass
class SeedResult:
    counts: dict[str, int]
    kept: bool = False
    created_database: bool = False
    tracked_tables: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` unless it exists; True if it was created."""
    url = parse_dsn(dsn, "s")
    backend = url.get_backend_name()
    if backend == "sqlite":
        return False  # the file is created on first connect
    name = url.database or ""
    if not _DB_NAME.match(name):
        raise ConfigError("--dsn", f"cannot create database {name!r} from {mask_dsn(dsn)}: "
                          "name it in the URL with letters, digits and '_'")
    admin = sa.create_engine(_admin_url(url, backend), isolation_level="AUTOCOMMIT")
    try:
        with source_errors(_LABEL), admin.connect() as conn:
            return _create(conn, backend, name)
    finally:
        admin.dispose()


def _admin_url(url: URL, backend: str) -> URL:
    return url.set(database=_ADMIN_DATABASE[backend])


def _create(conn: sa.Connection, backend: str, name: str) -> bool:
    quoted = conn.dialect.identifier_preparer.quote_identifier(name)
    if backend == "mssql":
        existed = conn.execute(sa.text(mssql_setup.DATABASE_ID), {"name": name}).scalar() is not None
        conn.exec_driver_sql(mssql_setup.create_database(name))
        return not existed
    if backend == "postgresql":
        if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first():
            return False
        conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        return True
    existed = conn.execute(sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
                           {"name": name}).first() is not None
    conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {quoted}")
    return not existed


def existing_counts(dsn: str) -> dict[str, int] | None:
    """Rows per demo table when every demo table exists and has rows, else None."""
    engine = engine_for(dsn, role="s")
    with source_errors(_LABEL), engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        if not set(TABLES) <= present:
            return None
        meta = sa.MetaData()
        counts = {}
        for name in TABLES:
            table = sa.Table(name, meta, autoload_with=conn)
            counts[name] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    return counts if all(counts.values()) else None


def _require_mssql(dsn: str) -> None:
    backend = parse_dsn(dsn, "s").get_backend_name()
    if backend != "mssql":
        raise ConfigError("--change-tracking", f"Change Tracking is a SQL Server feature, not {backend} "
                          "(other databases use the changelog or cursor feed)")


def enable_change_tracking(dsn: str, schema: str | None = None) -> list[str]:
    """Turn SQL Server Change Tracking on for the database and every demo table; the tables tracked."""
    _require_mssql(dsn)
    engine = engine_for(dsn, role="s").execution_options(isolation_level="AUTOCOMMIT")
    with source_errors(_LABEL), engine.connect() as conn:
        return mssql_setup.enable_change_tracking(conn, TABLES, schema)


def seed_demo_venue(dsn: str, rows: int, seed: int = 7, *, create_database: bool = False,
                    change_tracking: bool = False, keep_existing: bool = False,
                    progress: Callable[[int], None] | None = None) -> SeedResult:
    """Create (optionally) and fill the demo venue database at `dsn`, then turn Change Tracking on."""
    if change_tracking:
        _require_mssql(dsn)  # before any work is done
    created = ensure_database(dsn) if create_database else False
    counts = existing_counts(dsn) if keep_existing and not created else None
    result = SeedResult(counts or {}, kept=counts is not None, created_database=created)
    if counts is None:
        log.info("demo venue %s: creating %d rows", mask_dsn(dsn), rows)
        result.counts = create_demo_venue(dsn, rows=rows, seed=seed, progress=progress)
    if change_tracking:
        result.tracked_tables = enable_change_tracking(dsn)
    return result
