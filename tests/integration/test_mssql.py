"""The SQL Server path for real: runs only when CLOUDSYNC_TEST_MSSQL_URL points at a SQL Server.

E.g. the compose SQL Server (docs/beyond-one-machine.md):
    CLOUDSYNC_TEST_MSSQL_URL='mssql+pyodbc://sa:…@127.0.0.1:1433/master?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes'

Each test creates its own database on that server and drops it afterwards. The demo venue is built
there by `cloudsync demo-venue --change-tracking`, the engine's keyset reads run against it (composite
keys, the expanded OR form, TOP pages), every parameterless query of the SQL Server dialect package
runs, a full resync to PostgreSQL leaves the cloud equal to the venue, and so do incremental syncs
through Change Tracking and through the changelog triggers after a writer changed the venue, with
the in-database range checksums of `cloudsync verify` finding no drift.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import cloudsync.dialects.mssql as mssql_package
from cloudsync import incremental, resync
from cloudsync.cli import cli
from cloudsync.control.venues import add_venue
from cloudsync.demo.venue import TABLES
from cloudsync.dialects.mssql import keyset, setup
from cloudsync.sources import open_source
from cloudsync.verify import compare
from tests.conftest import MSSQL_URL, server_database
from tests.helpers import run_job_inline
from tests.writers import write

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not MSSQL_URL, reason="CLOUDSYNC_TEST_MSSQL_URL is not set (no SQL Server to test against)"),
]


@pytest.fixture
def mssql_db() -> Iterator[Callable[[], str]]:
    """Factory: a fresh database on the test SQL Server per call, dropped after the test."""
    import pyodbc

    url = sa.make_url(MSSQL_URL)
    driver = url.query.get("driver")
    assert driver in pyodbc.drivers(), f"ODBC driver {driver!r} is not installed (have {pyodbc.drivers()})"
    yield from server_database(url.set(database="master"), "SQL Server",
                               create=lambda name: [setup.create_database(name)], drop=setup.drop_database)


def _demo_venue(dsn: str, rows: int, *extra: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, ["demo-venue", "--dsn", dsn, "--rows", str(rows), *extra], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_venue_with_change_tracking_then_full_resync_to_postgresql(
        mssql_db: Callable[[], str], pg_db: Callable[[], str], redis_url: str, make_ctx: Callable[..., Any],
        target_equals_source: Callable[..., None], tmp_path: Path) -> None:
    dsn = mssql_db()
    out = _demo_venue(dsn, 3000, "--change-tracking")
    assert "created:" in out and f"change tracking on for {len(TABLES)} tables" in out
    engine = sa.create_engine(dsn)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(setup.DATABASE_TRACKED).first() is not None
            tracked = sorted(r.table_name for r in conn.exec_driver_sql(setup.TRACKED_TABLES))
            types = {r[0]: r[1] for r in conn.exec_driver_sql(
                "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'products'")}
    finally:
        engine.dispose()
    assert tracked == sorted(TABLES)
    assert types["image_hash"] == "varbinary" and types["name"] == "nvarchar" and types["price"] == "numeric"

    # the compose seed's second run: keeps the venue and its Change Tracking (idempotent statements),
    # and registers it with the change_tracking feed checked against the server
    out = _demo_venue(dsn, 3000, "--change-tracking", "--keep-existing", "--register", "seeded",
                      env={"CLOUDSYNC_HOME": str(tmp_path / "home")})
    assert "kept:" in out and "venue seeded registered" in out and "feed change_tracking" in out, out

    ctx = make_ctx(redis_url=redis_url, cloud_url=pg_db())
    add_venue(ctx.control, "mssql1", dsn, feed="change_tracking")
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "mssql1", requested_by="test"))
    assert job.state == "done", job.error
    assert (job.verification or {}).get("match") is True
    target_equals_source(ctx, "mssql1")


def test_keyset_reads_on_a_composite_key(mssql_db: Callable[[], str]) -> None:
    dsn = mssql_db()
    _demo_venue(dsn, 2000)
    source = open_source("mssql-keys", dsn)
    table = source.table("transaction_lines")
    pk = [c.name for c in table.primary_key.columns]
    assert pk == ["location_id", "txn_id", "line_no"]
    every = [tuple(row[:3]) for batch in source.read_range(table, None, None, 500) for row in batch]
    assert every == sorted(every) and len(every) > 600
    lo, hi = every[100], every[500]
    inside = [tuple(row[:3]) for batch in source.read_range(table, lo, hi, 97) for row in batch]
    assert inside == every[101:501]

    count, bounds = source.plan(table, 250)
    assert count == len(every)
    expected = every[249::250]
    if count % 250 == 0:
        expected = expected[:-1]
    assert bounds == expected

    wanted = [every[3], every[77], (99, 99, 99)]
    assert sorted(tuple(r[:3]) for r in source.read_keys(table, wanted)) == sorted(wanted[:2])

    with source.engine.connect() as conn:
        page = [tuple(r[:3]) for r in conn.exec_driver_sql(keyset.page_sql(table, lo, 50))]
        assert page == every[101:151]


def _parameterless_queries() -> dict[str, str]:
    out = {}
    for info in pkgutil.iter_modules(mssql_package.__path__):
        module = importlib.import_module(f"{mssql_package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if (name.isupper() and isinstance(value, str) and re.match(r"\s*SELECT\b", value, re.IGNORECASE)
                    and not re.search(r"(?<![:\w]):\w|\?", value)):
                out[f"{info.name}.{name}"] = value
    return out


def test_every_parameterless_dialect_query_runs(mssql_db: Callable[[], str]) -> None:
    dsn = mssql_db()
    _demo_venue(dsn, 500, "--change-tracking")
    queries = _parameterless_queries()
    assert {"setup.TRACKED_TABLES", "setup.DATABASE_TRACKED"} <= set(queries)
    engine = sa.create_engine(dsn)
    try:
        with engine.connect() as conn:
            for name, sql in queries.items():
                conn.exec_driver_sql(sql).fetchall()  # raises with the statement's name in the traceback
    finally:
        engine.dispose()


@pytest.mark.parametrize("feed", ["change_tracking", "changelog"])
def test_incremental_sync_and_verify_on_sql_server(feed: str, mssql_db: Callable[[], str], pg_db: Callable[[], str],
                                                   redis_url: str, make_ctx: Callable[..., Any],
                                                   target_equals_source: Callable[..., None]) -> None:
    dsn = mssql_db()
    _demo_venue(dsn, 2000, *(["--change-tracking"] if feed == "change_tracking" else []))
    ctx = make_ctx(redis_url=redis_url, cloud_url=pg_db())
    add_venue(ctx.control, "v1", dsn)
    if feed == "changelog":
        incremental.install_changelog(ctx, "v1")  # the changelog table and one trigger per table
    incremental.configure_feed(ctx, "v1", feed)
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1", requested_by="test"))
    assert job.state == "done", job.error

    assert write(dsn, threading.Event(), seconds=3) > 0  # inserts, updates and deletes at the venue
    result = incremental.sync_venue(ctx, "v1")
    assert result.state == "applied" and result.changed_keys > 0, result
    target_equals_source(ctx, "v1")
    assert incremental.sync_venue(ctx, "v1").changed_keys == 0  # applied once, nothing left behind

    report = compare.verify_venue(ctx, "v1")  # range checksums computed in SQL Server and PostgreSQL
    assert not report.drift, report.as_dict()
