"""`cloudsync demo-venue` on real servers: it creates the database, fills it once, and refuses bad input
in one line (SQL Server's own run, with Change Tracking, is in test_mssql.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cloudsync.cli import cli
from cloudsync.demo.databases import existing_counts
from cloudsync.demo.venue import TABLES, plan_sizes

pytestmark = pytest.mark.integration


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["demo-venue", *args])
    return result.exit_code, result.output


def test_creates_the_database_on_postgresql_and_keeps_a_filled_venue(pg_db: Callable[[], str]) -> None:
    base = sa.make_url(pg_db())
    name = f"cs_test_{uuid.uuid4().hex[:10]}"
    dsn = base.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        code, out = _run("--dsn", dsn, "--rows", "300", "--create-database")
        assert code == 0, out
        assert "database created" in out and "created:" in out
        counts = existing_counts(dsn)
        assert counts and sorted(counts) == sorted(TABLES) and f"created: {sum(counts.values()):,} rows" in out
        assert counts["clerks"] == plan_sizes(300)["clerks"]
        code, out = _run("--dsn", dsn, "--rows", "300", "--create-database", "--keep-existing")
        assert code == 0 and "kept:" in out and "database created" not in out, out
    finally:
        from cloudsync.db import dispose_all

        dispose_all()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.mark.parametrize("fixture", ["mysql_db", "odbc_db"])
def test_fills_mariadb_directly_and_through_pyodbc(fixture: str, request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue(fixture)()
    code, out = _run("--dsn", dsn, "--rows", "300")
    assert code == 0, out
    counts = existing_counts(dsn)
    assert counts and sorted(counts) == sorted(TABLES) and f"created: {sum(counts.values()):,} rows" in out


@pytest.mark.parametrize("args, message", [
    (["--dsn", "not a url"], "not a database URL"),
    (["--dsn", "sqlite:///{tmp}/v.db", "--change-tracking"], "Change Tracking is a SQL Server feature"),
    (["--dsn", "postgresql://cs:hunter2secret@127.0.0.1:1/x", "--rows", "100"], "error:"),
    (["--dsn", "postgresql://cs:hunter2secret@127.0.0.1:1/x-y", "--create-database"], "letters, digits"),
    (["--dsn", "sqlite:///{tmp}/v.db", "--rows", "5"], "5 is not in the range"),
])
def test_bad_input_is_one_line_without_password(args: list[str], message: str, tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "cloudsync", "demo-venue", *argv], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "hunter2secret" not in proc.stdout + proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:") or ln.startswith("Error:")]) == 1
