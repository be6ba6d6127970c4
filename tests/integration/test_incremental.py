"""Incremental sync against real databases, with a real concurrent writer process, a real full resync
in the middle, real Celery workers and a real `celery beat`.

The outcome asserted is the one an operator cares about: after the writer stops and one more sync,
the cloud equals the venue exactly, and no change made while a full resync ran is lost.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
import sqlalchemy as sa

from cloudsync import incremental, resync
from cloudsync.cli.sync import beat_command
from cloudsync.context import Context
from cloudsync.control.schema import chunks, jobs, sync_runs
from cloudsync.control.store import utcnow
from cloudsync.control.venues import add_venue
from cloudsync.db import engine_for
from cloudsync.errors import TerminalError
from cloudsync.feeds import FeedExpired
from cloudsync.feeds.changelog import ChangelogFeed
from cloudsync.processes import process_env, start, stop
from tests.helpers import run_job_inline, wait_for_job
from tests.writers import write, writer_process
from worker.app import client_app

pytestmark = pytest.mark.integration

SOURCES = ["pg_db", "mysql_db", "odbc_db"]


def writer(dsn: str, seconds: float = 60, **kwargs: object) -> AbstractContextManager[Any]:
    """A writer in its own process, stopped (and joined) when the block ends."""
    return writer_process(write, dsn, seconds, **kwargs)


def changelog_venue(ctx: Context, make_venue: Callable[..., object], dsn: str, rows: int = 2000,
                    interval_s: int | None = None) -> None:
    make_venue(ctx, dsn, rows=rows)
    incremental.install_changelog(ctx, "v1")
    incremental.configure_feed(ctx, "v1", "changelog", interval_s=interval_s)


def runs(ctx: Context, venue_id: str = "v1") -> list[sa.Row]:
    with ctx.control.connect() as conn:
        return conn.execute(sa.select(sync_runs).where(sync_runs.c.venue_id == venue_id,
                                                       sync_runs.c.kind == "incremental")
                            .order_by(sync_runs.c.started_at)).all()


def keep_syncing(ctx: Context, stop_event: threading.Event, states: list[str]) -> None:
    while not stop_event.is_set():
        states.append(incremental.sync_venue(ctx, "v1", wait_s=5).state)
        time.sleep(0.05)


@pytest.mark.parametrize("source_kind", SOURCES)
def test_no_change_lost_with_a_concurrent_writer_and_a_full_resync(request, make_ctx, make_venue, pg_db, sqlite_db,
                                                                   target_equals_source, source_kind):
    src = request.getfixturevalue(source_kind)()
    # the PostgreSQL cloud (COPY/upsert path) for the PostgreSQL venue, SQLite for the others
    ctx = make_ctx(cloud_url=pg_db() if source_kind == "pg_db" else sqlite_db(), chunk_rows=400)
    changelog_venue(ctx, make_venue, src, rows=1500)
    first = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert first.state == "done" and first.feed_position["feed"] == "changelog"
    states: list[str] = []
    with writer(src, seed=3):
        time.sleep(0.5)
        done = threading.Event()
        syncing = threading.Thread(target=keep_syncing, args=(ctx, done, states))
        syncing.start()
        try:
            time.sleep(1.5)
            # a full resync while the writer writes and incremental syncs keep being attempted
            job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
            assert job.state == "done", job.error
            time.sleep(1.5)
        finally:
            done.set()
            syncing.join(60)
    result = incremental.sync_venue(ctx, "v1")
    assert result.state == "applied"
    target_equals_source(ctx, "v1")
    assert "suspended" in states, "incremental sync was not suspended during the full resync"
    applied = [r for r in runs(ctx) if r.ok]
    assert sum(r.rows_applied for r in applied) > 50, "the writer's changes were not applied incrementally"
    assert all(r.ok for r in runs(ctx)), [r.error for r in runs(ctx) if not r.ok]


def test_rows_changed_during_a_resync_reach_the_cloud_from_its_recorded_position(pg_db, make_ctx, make_venue,
                                                                                  target_equals_source):
    """Changes made between the resync's recorded position and its reads are applied afterwards."""
    src = pg_db()
    ctx = make_ctx(cloud_url=pg_db(), chunk_rows=300)
    changelog_venue(ctx, make_venue, src, rows=1500)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_ids = resync.plan_job(ctx, job_id)  # the position is recorded here, before any chunk reads
    assert incremental.sync_venue(ctx, "v1").state == "suspended"
    for i, chunk_id in enumerate(chunk_ids):
        resync.run_chunk(ctx, job_id, chunk_id, owner="t")
        if i == len(chunk_ids) // 2:
            with engine_for(src).begin() as conn:  # behind and ahead of the chunks already copied
                conn.execute(sa.text("UPDATE products SET price = price + 7"))
                conn.execute(sa.text("DELETE FROM transaction_lines WHERE line_no = 1"))
                conn.execute(sa.text("UPDATE members SET member_no = 'X' || member_no WHERE points < 3000"))
    assert resync.finish_job(ctx, job_id).state == "done"
    assert incremental.sync_venue(ctx, "v1").changed_keys > 0
    target_equals_source(ctx, "v1")


def test_an_expired_position_says_a_full_resync_is_required(sqlite_db, make_ctx, make_venue, target_equals_source):
    src = sqlite_db()
    ctx = make_ctx(cloud_url=sqlite_db())
    changelog_venue(ctx, make_venue, src, rows=800)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("UPDATE products SET price = price + 1"))
    stored = incremental.get_position(ctx.control, "v1")
    venue = incremental.get_venue(ctx.control, "v1")
    feed = incremental.feed_for(venue)
    assert isinstance(feed, ChangelogFeed)
    feed.prune(stored[1]["id"] + 5)  # retention dropped changes the stored position has not applied
    with pytest.raises(FeedExpired, match="full resync required"):
        incremental.sync_venue(ctx, "v1")
    last = runs(ctx)[-1]
    assert not last.ok and "full resync required" in last.error  # what `cloudsync status` shows
    # it never resyncs silently: the cloud still has the old prices until someone runs the resync
    with pytest.raises(AssertionError):
        target_equals_source(ctx, "v1")
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert incremental.sync_venue(ctx, "v1").state == "applied"
    target_equals_source(ctx, "v1")


def test_no_position_yet_requires_a_full_resync(sqlite_db, make_ctx, make_venue):
    src = sqlite_db()
    ctx = make_ctx(cloud_url=sqlite_db())
    changelog_venue(ctx, make_venue, src, rows=300)
    with pytest.raises(TerminalError, match="no changelog position recorded yet: full resync required"):
        incremental.sync_venue(ctx, "v1")


def test_never_two_incremental_syncs_of_a_venue_at_once(pg_db, make_ctx, make_venue, target_equals_source):
    src = pg_db()
    ctx = make_ctx(cloud_url=pg_db())
    changelog_venue(ctx, make_venue, src, rows=1000)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    with incremental.venue_lock(ctx, "v1"):
        assert incremental.sync_venue(ctx, "v1").state == "busy"
    states: list[str] = []
    with writer(src, seed=5):
        time.sleep(0.5)

        def hammer() -> None:
            for _ in range(8):
                states.append(incremental.sync_venue(ctx, "v1").state)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    incremental.sync_venue(ctx, "v1")
    target_equals_source(ctx, "v1")
    assert "busy" in states and "applied" in states
    spans = sorted((r.started_at, r.finished_at) for r in runs(ctx))
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        assert begin >= end, "two incremental syncs of the venue overlapped"


def test_cursor_feed_with_a_concurrent_writer(pg_db, make_ctx, target_equals_source):
    src = pg_db()
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("CREATE TABLE tabs (location_id int, tab_no int, amount numeric(12,2), "
                             "updated_at timestamp NOT NULL DEFAULT LOCALTIMESTAMP, "
                             "PRIMARY KEY (location_id, tab_no))"))
        conn.execute(sa.text("INSERT INTO tabs SELECT i % 3, i, i / 10.0, LOCALTIMESTAMP - interval '1 day' "
                             "FROM generate_series(1, 2000) i"))
    ctx = make_ctx(cloud_url=pg_db())
    add_venue(ctx.control, "v1", src)
    incremental.configure_feed(ctx, "v1", "cursor", {"column": "updated_at", "lag_s": 1})
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    stop_event = threading.Event()

    def write_tabs() -> None:
        n = 3000
        while not stop_event.is_set():
            with engine_for(src).begin() as conn:
                conn.execute(sa.text("INSERT INTO tabs VALUES (1, :n, 1.5, LOCALTIMESTAMP)"), {"n": n})
                conn.execute(sa.text("UPDATE tabs SET amount = amount + 1, updated_at = LOCALTIMESTAMP "
                                     "WHERE tab_no = :k"), {"k": n % 2000 + 1})
                time.sleep(0.01)  # a commit that lands after others with later timestamps
            n += 1

    t = threading.Thread(target=write_tabs)
    t.start()
    try:
        for _ in range(15):
            incremental.sync_venue(ctx, "v1")
            time.sleep(0.2)
    finally:
        stop_event.set()
        t.join(30)
    time.sleep(1.2)  # past the lag window
    incremental.sync_venue(ctx, "v1")
    target_equals_source(ctx, "v1")


def test_a_real_beat_dispatches_incremental_syncs_and_the_reaper_resends_lost_chunks(
        pg_db, sqlite_db, make_settings, make_venue, redis_url, workers, tmp_path, target_equals_source):
    src = pg_db()
    settings = make_settings(cloud_url=pg_db(), redis_url=redis_url, dispatch_interval_ms=500, chunk_rows=300)
    ctx = Context.from_settings(settings)
    changelog_venue(ctx, make_venue, src, rows=600, interval_s=1)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    # a second venue with a resync whose chunk messages were lost: planned, never sent
    make_venue(ctx, sqlite_db(), rows=900, venue_id="v2")
    job_id = resync.request_full_resync(ctx, "v2")
    chunk_ids = resync.plan_job(ctx, job_id)
    long_ago = utcnow() - dt.timedelta(hours=1)
    with ctx.control.begin() as conn:
        conn.execute(chunks.update().where(chunks.c.job_id == job_id).values(updated_at=long_ago))
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=long_ago))
    workers(settings, redis_url, count=1, concurrency=2)
    beat_log = tmp_path / "logs" / "beat.log"
    beat = start(beat_command("INFO"), process_env(settings, redis_url), beat_log)
    try:
        with engine_for(src).begin() as conn:
            conn.execute(sa.text("UPDATE products SET name = 'beat ✓' WHERE product_id = 3"))
            conn.execute(sa.text("DELETE FROM payments WHERE txn_id = 5"))
        deadline = time.monotonic() + 60
        while sum(r.rows_applied for r in runs(ctx) if r.ok) < 2:
            assert beat.poll() is None, beat_log.read_text()[-2000:]
            assert time.monotonic() < deadline, "beat did not get the change applied: " + beat_log.read_text()[-2000:]
            time.sleep(0.3)
        target_equals_source(ctx, "v1")
        # the reaper, as beat sends it every 30 s (sent here at once), re-sends the lost chunks
        reaped = client_app(settings).send_task("cloudsync.control.reap").get(timeout=60)
        assert sorted(reaped["chunks"][str(job_id)]) == chunk_ids
        job = wait_for_job(ctx, job_id, timeout_s=120)
        assert job.state == "done", job.error
        target_equals_source(ctx, "v2")
        # the venue's interval is 1 s: within a few seconds more runs must have been dispatched
        deadline = time.monotonic() + 15
        while len(runs(ctx)) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(runs(ctx)) >= 3, "the dispatcher did not keep dispatching at the venue's interval"
    finally:
        stop(beat)


@pytest.mark.parametrize("source_kind", ["pg_db", "mysql_db"])
def test_a_change_committed_after_a_later_one_is_not_skipped(request, make_ctx, make_venue, sqlite_db,
                                                             target_equals_source, source_kind):
    """Changelog ids are handed out at insert time but become visible at commit: a lower id can appear
    after a higher one was applied. The position keeps that gap open until it does."""
    src = request.getfixturevalue(source_kind)()
    ctx = make_ctx(cloud_url=sqlite_db())
    changelog_venue(ctx, make_venue, src, rows=500)
    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    engine = engine_for(src)
    slow = engine.connect()
    try:
        slow_tx = slow.begin()
        slow.execute(sa.text("UPDATE products SET price = 111.11 WHERE product_id = 1"))  # takes the lower id
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET price = 222.22 WHERE product_id = 2"))
        first = incremental.sync_venue(ctx, "v1")
        assert first.changed_keys == 1
        stored = incremental.get_position(ctx.control, "v1")[1]
        assert stored["gaps"], "the uncommitted lower id was not kept as a gap"
        slow_tx.commit()
    finally:
        slow.close()
    second = incremental.sync_venue(ctx, "v1")
    assert second.changed_keys == 1
    assert not incremental.get_position(ctx.control, "v1")[1]["gaps"]
    target_equals_source(ctx, "v1")
