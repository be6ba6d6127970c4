"""Assertions and small tools shared by tests (importable, so worker processes can use them too)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
import sqlalchemy as sa

from cloudsync.checksums import normalise
from cloudsync.context import Context
from cloudsync.control.jobs import Job, get_job
from cloudsync.control.venues import get_venue, resolve_tables
from cloudsync.db import engine_for
from cloudsync.sources import open_source


def _normalised(batches: object) -> list[tuple[str, ...]]:
    return [tuple(normalise(v) for v in row) for rows in batches for row in rows]  # type: ignore[attr-defined]


def assert_target_equals_source(ctx: Context, venue_id: str) -> None:
    """Every synced table: the cloud rows for the venue equal the source rows, row for row."""
    venue = get_venue(ctx.control, venue_id)
    source = open_source(venue.id, venue.source_dsn, venue.source_schema)
    source.refresh()
    target = ctx.target
    tables, _ = resolve_tables(venue)
    assert tables, "the venue has no tables"
    for name in tables:
        table = source.table(name)
        cloud = target.cloud_table(table)
        src = _normalised(source.read_range(table, None, None, 5000))
        dst = _normalised(target.read_range(cloud, venue.id, None, None, 5000))
        assert len(dst) == len(set(dst)), f"{name}: duplicate rows in the cloud"
        if src != dst:
            missing = set(src) - set(dst)
            extra = set(dst) - set(src)
            raise AssertionError(f"{name}: source {len(src)} rows, cloud {len(dst)}; "
                                 f"{len(missing)} missing/different e.g. {sorted(missing)[:2]}, "
                                 f"{len(extra)} extra e.g. {sorted(extra)[:2]}")


def wait_for_job(ctx: Context, job_id: int, timeout_s: float = 120,
                 until: Callable[[Job], bool] = lambda j: not j.active) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job(ctx.control, job_id)
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {timeout_s}s "
                                 f"({job.chunks_done}/{job.chunks_total} chunks)")
        time.sleep(0.2)


def run_job_inline(ctx: Context, job_id: int) -> Job:
    """Run a planned job's work in this process, in order (no Celery): the engine on its own."""
    from cloudsync import resync

    for chunk_id in resync.plan_job(ctx, job_id):
        resync.run_chunk(ctx, job_id, chunk_id, owner="inline")
    return resync.finish_job(ctx, job_id)


@contextmanager
def spare_redis_db(base_url: str, hold_s: int = 7200) -> Iterator[str]:
    """A Redis database of one's own, claimed with a lock in db 0 so concurrent test runs and benchmarks
    never share one (and flushed before and after)."""
    base = base_url.rstrip("/")
    locks = redis.Redis.from_url(f"{base}/0", socket_connect_timeout=2)
    token = uuid.uuid4().hex
    db = None
    for _ in range(600):
        for candidate in random.sample(range(1, 16), 15):
            if locks.set(f"cloudsync-test-db:{candidate}", token, nx=True, ex=hold_s):
                db = candidate
                break
        if db is not None:
            break
        time.sleep(0.5)
    if db is None:
        raise RuntimeError("no spare Redis database")
    url = f"{base}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if locks.get(f"cloudsync-test-db:{db}") == token.encode():
            locks.delete(f"cloudsync-test-db:{db}")
        locks.close()


def create_ledger(dsn: str, rows: int) -> None:
    """A one-table PostgreSQL venue of `rows` rows, made in the database (fast at any size)."""
    with engine_for(dsn).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS ledger"))
        conn.execute(sa.text(
            "CREATE TABLE ledger (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), "
            "at timestamptz, blob bytea, flag boolean, note text)"))
        conn.execute(sa.text(
            "INSERT INTO ledger SELECT i, 'item ' || i || ' ü🍕', (i % 10000) / 100.0, "
            "timestamptz '2026-01-01 00:00+10' + i * interval '1 second', decode(md5(i::text), 'hex'), "
            "i % 3 = 0, CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END FROM generate_series(1, :n) i"),
            {"n": rows})
        conn.execute(sa.text("ANALYZE ledger"))
