"""Chaos fixtures: a private PostgreSQL cluster for the cloud (restartable) and a private Redis per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.faults import PG_BIN, PrivatePostgres, RedisServer
from tests.conftest import need


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this module's own: the cloud database, restarted by one scenario."""
    if not (PG_BIN / "initdb").exists():
        need("PostgreSQL server binaries", f"{PG_BIN}/initdb not found (set CLOUDSYNC_TEST_PG_BIN)")
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, without persistence, so a restart loses every key."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()
