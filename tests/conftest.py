"""Shared fixtures: real services, isolated per test, and factories for venues and workers.

Services (override with environment variables):
    CLOUDSYNC_TEST_REDIS_URL   redis://127.0.0.1:6379
    CLOUDSYNC_TEST_PG_URL      postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    CLOUDSYNC_TEST_MYSQL_URL   mysql+pymysql://root@127.0.0.1:3306/mysql
    CLOUDSYNC_TEST_ODBC_DRIVER MariaDB Unicode   (unixODBC driver name for the pyodbc path)
    CLOUDSYNC_TEST_MSSQL_URL   mssql+pyodbc://…  (a real SQL Server; tests that need it run only then)

A test that needs a service skips when it is missing, except with CLOUDSYNC_REQUIRE_SERVICES=1
(as in CI), where a missing service fails the test instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from cloudsync.context import Context
from cloudsync.control.venues import Venue, add_venue
from cloudsync.db import dispose_all
from cloudsync.demo.venue import create_demo_venue
from cloudsync.embedded import stop_embedded_redis
from cloudsync.processes import process_env, start, stop, worker_command
from cloudsync.settings import Settings, load_settings
from tests.helpers import assert_target_equals_source, spare_redis_db

REDIS_URL = os.environ.get("CLOUDSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_URL = os.environ.get("CLOUDSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_URL = os.environ.get("CLOUDSYNC_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
ODBC_DRIVER = os.environ.get("CLOUDSYNC_TEST_ODBC_DRIVER", "MariaDB Unicode")
MSSQL_URL = os.environ.get("CLOUDSYNC_TEST_MSSQL_URL", "")
REQUIRE = os.environ.get("CLOUDSYNC_REQUIRE_SERVICES") == "1"
KEEP_ENV = {"CLOUDSYNC_REQUIRE_SERVICES"}


def need(service: str, reason: str) -> None:
    """Skip (locally) or fail (CI) when a service is missing."""
    message = f"{service} unavailable: {reason}"
    if REQUIRE:
        pytest.fail(message + " (CLOUDSYNC_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("CLOUDSYNC_") and not key.startswith("CLOUDSYNC_TEST_") and key not in KEEP_ENV:
            monkeypatch.delenv(key)
    try:
        yield
    finally:
        dispose_all()
        # a test on the embedded default started its own Redis under its home: stop it with the test
        for home in {tmp_path / "home", tmp_path}:
            if (home / "redis.url").exists():
                stop_embedded_redis(home)


# -- Redis --------------------------------------------------------------------------------------

@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own (see `tests.helpers.spare_redis_db`)."""
    try:
        redis.Redis.from_url(f"{REDIS_URL.rstrip('/')}/0", socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        need("Redis", str(err))
    with spare_redis_db(REDIS_URL, hold_s=900) as url:
        yield url


# -- databases ------------------------------------------------------------------------------------

def _plain_create(name: str) -> list[str]:
    return [f"CREATE DATABASE {name}"]


def _plain_drop(backend: str) -> Callable[[str], list[str]]:
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    return lambda name: [f"DROP DATABASE IF EXISTS {name}{force}"]


def server_database(admin_url: str | sa.URL, service: str, prefix: str = "cs_test",
                    create: Callable[[str], list[str]] = _plain_create,
                    drop: Callable[[str], list[str]] | None = None) -> Iterator[Callable[[], str]]:
    """Factory of fresh databases on a server (reached through `admin_url`), all dropped afterwards.

    `create` and `drop` give the statements for a generated name (a dialect module's, for SQL Server).
    """
    made: list[str] = []
    url = sa.make_url(admin_url)
    drop = drop or _plain_drop(url.get_backend_name())
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as err:
        admin.dispose()
        need(service, str(err.orig).splitlines()[0])

    def make() -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            for sql in create(name):
                conn.exec_driver_sql(sql)
        made.append(name)
        return url.set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        dispose_all()
        with admin.connect() as conn:
            for name in made:
                for sql in drop(name):
                    conn.exec_driver_sql(sql)
        admin.dispose()


@pytest.fixture
def pg_db() -> Iterator[Callable[[], str]]:
    """Factory: a fresh PostgreSQL database per call, dropped after the test."""
    yield from server_database(PG_URL, "PostgreSQL")


@pytest.fixture
def mysql_db() -> Iterator[Callable[[], str]]:
    """Factory: a fresh MariaDB database per call, dropped after the test."""
    yield from server_database(MYSQL_URL, "MariaDB")


@pytest.fixture
def odbc_db(mysql_db: Callable[[], str]) -> Callable[[], str]:
    """Factory: a fresh MariaDB database reached through pyodbc and unixODBC (`mysql+pyodbc`)."""
    try:
        import pyodbc
    except ImportError as err:
        need("pyodbc/unixODBC", str(err))
    if ODBC_DRIVER not in pyodbc.drivers():
        need("ODBC driver", f"{ODBC_DRIVER!r} not registered with unixODBC (have {pyodbc.drivers()})")

    def make() -> str:
        url = sa.make_url(mysql_db())
        return (f"mysql+pyodbc://{url.username}@{url.host}:{url.port or 3306}/{url.database}"
                f"?driver={ODBC_DRIVER.replace(' ', '+')}&charset=utf8mb4")

    return make


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Callable[[], str]:
    counter = iter(range(1000))

    def make() -> str:
        return f"sqlite:///{tmp_path / f'db{next(counter)}.db'}"

    return make


# -- engine context ---------------------------------------------------------------------------------

@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("home", str(tmp_path / "home"))
        overrides.setdefault("chunk_rows", 1000)
        overrides.setdefault("read_batch_rows", 500)
        return load_settings(environ={}, **overrides)

    return make


@pytest.fixture
def make_ctx(make_settings: Callable[..., Settings]) -> Callable[..., Context]:
    def make(**overrides: Any) -> Context:
        return Context.from_settings(make_settings(**overrides))

    return make


@pytest.fixture
def make_venue() -> Callable[..., Venue]:
    """Factory: fill a demo venue database at `dsn` and register it in `ctx`'s control database."""

    def make(ctx: Context, dsn: str, rows: int = 2000, venue_id: str = "v1", seed: int = 7,
             tables: list[str] | None = None) -> Venue:
        create_demo_venue(dsn, rows=rows, seed=seed)
        venue, _ = add_venue(ctx.control, venue_id, dsn, tables=tables, replace=True)
        return venue

    return make


# -- worker processes -------------------------------------------------------------------------------

@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., list[subprocess.Popen[bytes]]]]:
    """Factory: start real `celery worker` processes for `settings`; all are stopped after the test."""
    from worker.health import wait_for_workers

    procs: list[subprocess.Popen[bytes]] = []

    def make(settings: Settings, redis_url: str, count: int = 1, concurrency: int = 1,
             queues: str = "resync,incremental,control") -> list[subprocess.Popen[bytes]]:
        env = process_env(settings, redis_url)
        started = []
        for _ in range(count):
            name = f"w{len(procs) + 1}-{uuid.uuid4().hex[:4]}"
            proc = start(worker_command(name, queues=queues, concurrency=concurrency), env,
                         tmp_path / "logs" / f"{name}.log")
            procs.append(proc)
            started.append(proc)
        wait_for_workers(redis_url, sum(p.poll() is None for p in procs), timeout_s=60)
        return started

    try:
        yield make
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture
def target_equals_source() -> Callable[[Context, str], None]:
    return assert_target_equals_source
