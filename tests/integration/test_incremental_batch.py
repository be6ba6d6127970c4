"""Batched incremental sync (`cloudsync.incremental.sync_batch`, `incremental_batch.sync_venues`) against real
databases, a real Redis and real Celery worker processes.

What is asserted is what an operator relies on: every venue the dispatcher found due is synced, the
changes reach the cloud, a venue with an active full resync is left alone until it finishes (and then
nothing made during it is lost), and two syncs of one venue never overlap, however batches collide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from cloudsync import incremental, incremental_batch, resync, scheduling
from cloudsync.context import Context
from cloudsync.control.schema import sync_runs, venues
from cloudsync.db import engine_for
from tests.helpers import run_job_inline
from tests.writers import write, writer_process
from worker.app import client_app

pytestmark = pytest.mark.integration

IDLE_COPIES = 29  # with v1, v2 and v3: 32 venues, more than one batch (scheduling.BATCH_VENUES)


def changelog_venue(ctx: Context, make_venue: Callable[..., object], dsn: str, venue_id: str,
                    rows: int = 600) -> None:
    make_venue(ctx, dsn, rows=rows, venue_id=venue_id)
    incremental.install_changelog(ctx, venue_id)
    incremental.configure_feed(ctx, venue_id, "changelog")
    run_job_inline(ctx, resync.request_full_resync(ctx, venue_id))


def add_copies(ctx: Context, of: str, count: int) -> list[str]:
    """Venues sharing `of`'s database and feed position (nothing is written there: they stay idle)."""
    ids = [f"{of}c{i:02d}" for i in range(1, count + 1)]
    feed, position = incremental.get_position(ctx.control, of)  # type: ignore[misc]
    with ctx.control.begin() as conn:
        row = dict(conn.execute(sa.select(venues).where(venues.c.id == of)).one()._mapping)
        conn.execute(venues.insert(), [{**row, "id": v, "name": v} for v in ids])
    for v in ids:
        incremental.save_position(ctx.control, v, feed, position)
    return ids


def runs(ctx: Context, venue_id: str | None = None) -> list[sa.Row[Any]]:
    query = sa.select(sync_runs).where(sync_runs.c.kind == "incremental").order_by(sync_runs.c.started_at)
    if venue_id is not None:
        query = query.where(sync_runs.c.venue_id == venue_id)
    with ctx.control.connect() as conn:
        return list(conn.execute(query).all())


def assert_never_overlapped(ctx: Context, venue_id: str) -> None:
    spans = sorted((r.started_at, r.finished_at) for r in runs(ctx, venue_id))
    for (_, end), (begin, _) in zip(spans, spans[1:], strict=False):
        assert begin >= end, f"two incremental syncs of {venue_id} overlapped"


def test_batches_through_real_workers(pg_db, sqlite_db, make_settings, make_venue, redis_url, workers,
                                      target_equals_source):
    src1, src3 = pg_db(), sqlite_db()
    settings = make_settings(cloud_url=pg_db(), redis_url=redis_url, chunk_rows=300)
    ctx = Context.from_settings(settings)
    changelog_venue(ctx, make_venue, src1, "v1")
    changelog_venue(ctx, make_venue, sqlite_db(), "v2")
    changelog_venue(ctx, make_venue, src3, "v3")
    copies = add_copies(ctx, "v2", IDLE_COPIES)
    # v3: a full resync is under way (planned, its position recorded; its chunks not run yet)
    job_id = resync.request_full_resync(ctx, "v3")
    chunk_ids = resync.plan_job(ctx, job_id)
    with engine_for(src3).begin() as conn:
        conn.execute(sa.text("UPDATE products SET price = price + 3 WHERE product_id <= 5"))
    with engine_for(src1).begin() as conn:
        conn.execute(sa.text("UPDATE products SET name = 'batched ✓' WHERE product_id = 2"))
        conn.execute(sa.text("DELETE FROM payments WHERE txn_id = 4"))
    workers(settings, redis_url, count=2, concurrency=2)
    app = client_app(settings)

    # 1. the dispatcher: every venue is due at once; they go out in batches, and each one is synced
    sent = app.send_task("cloudsync.incremental.dispatch", ignore_result=False).get(timeout=60)
    assert sent["enqueued"] == 3 + IDLE_COPIES and sent["batches"] >= 2, sent
    due = {"v1", "v2", *copies}
    deadline = time.monotonic() + 60
    while {r.venue_id for r in runs(ctx)} != due:
        assert time.monotonic() < deadline, f"not synced: {sorted(due - {r.venue_id for r in runs(ctx)})}"
        time.sleep(0.3)
    assert all(r.ok for r in runs(ctx)), [r.error for r in runs(ctx) if not r.ok]
    assert len(runs(ctx, "v1")) == 1 and runs(ctx, "v1")[0].rows_applied >= 2
    target_equals_source(ctx, "v1")
    assert not runs(ctx, "v3"), "an incremental sync ran while the venue's full resync was active"

    def batch(ids: list[str]) -> dict[str, Any]:
        return app.send_task("cloudsync.incremental.sync_batch", args=[ids], ignore_result=False).get(timeout=120)

    # 2. a venue whose sync is already running is skipped by a batch, not run twice
    with incremental.venue_lock(ctx, "v2"):
        assert batch(["v1", "v2", "v3"]) == {"applied": 1, "busy": 1, "suspended": 1, "changed_keys": 0}

    # 3. batches that collide while a writer changes v1: never two syncs of one venue at once
    with writer_process(write, src1, 60, seed=9):
        time.sleep(0.5)
        results: list[dict[str, Any]] = []
        senders = [threading.Thread(target=lambda: results.append(batch(["v1", "v2", "v3"]))) for _ in range(8)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(180)
    assert len(results) == 8 and not any("failed" in r for r in results), results
    assert sum(r.get("applied", 0) + r.get("busy", 0) + r.get("suspended", 0) for r in results) == 24
    assert any(r.get("suspended") for r in results)
    batch(["v1", "v2"])
    target_equals_source(ctx, "v1")
    target_equals_source(ctx, "v2")
    for venue_id in ("v1", "v2"):
        assert_never_overlapped(ctx, venue_id)
    assert all(r.ok for r in runs(ctx)), [r.error for r in runs(ctx) if not r.ok]

    # 4. v3's resync finishes: the next batch resumes it, and the change made during the resync is there
    assert not runs(ctx, "v3")
    for chunk_id in chunk_ids:
        resync.run_chunk(ctx, job_id, chunk_id, owner="t")
    assert resync.finish_job(ctx, job_id).state == "done"
    with engine_for(src3).begin() as conn:
        conn.execute(sa.text("DELETE FROM payments WHERE txn_id = 6"))
    assert batch(["v3"])["applied"] == 1
    target_equals_source(ctx, "v3")


def test_a_batch_records_each_venue_and_hands_a_big_backlog_on(sqlite_db, make_ctx, make_venue, redis_url,
                                                                target_equals_source):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    src = sqlite_db()
    changelog_venue(ctx, make_venue, src, "v1")
    changelog_venue(ctx, make_venue, sqlite_db(), "v2")
    make_venue(ctx, sqlite_db(), venue_id="v3")  # a feed but no position yet: needs a full resync
    incremental.install_changelog(ctx, "v3")
    incremental.configure_feed(ctx, "v3", "changelog")
    with engine_for(src).begin() as conn:
        changed = conn.execute(sa.text("UPDATE products SET price = price + 1")).rowcount
    assert changed > 10
    out = {r.venue_id: r for r in incremental_batch.sync_venues(ctx, ["v1", "v2", "v3", "nope"], limit_keys=10)}
    assert out["v1"].state == "applied" and out["v1"].changed_keys == 10 and out["v1"].more
    assert out["v2"].state == "applied" and out["v2"].changed_keys == 0 and not out["v2"].more
    assert out["v3"].state == "failed" and "full resync required" in (out["v3"].error or "")
    assert out["nope"].state == "failed" and "unknown venue" in (out["nope"].error or "")
    recorded = {r.venue_id: r for r in runs(ctx)}
    assert set(recorded) == {"v1", "v2", "v3"}
    assert recorded["v1"].ok and recorded["v2"].ok and not recorded["v3"].ok
    assert "full resync required" in recorded["v3"].error
    # the rest of v1's backlog, in a run of its own (what the batch task sends), then nothing is left
    assert incremental.sync_venue(ctx, "v1").changed_keys == changed - 10
    target_equals_source(ctx, "v1")
    assert incremental_batch.sync_venues(ctx, ["v1"])[0].changed_keys == 0
    # every lock was released: single runs of each venue are not busy
    assert {incremental.sync_venue(ctx, v).state for v in ("v1", "v2")} == {"applied"}


def test_a_venue_slow_in_a_batch_is_dispatched_on_its_own(pg_db, sqlite_db, make_ctx, make_venue, redis_url):
    src = pg_db()
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    changelog_venue(ctx, make_venue, src, "v1")
    changelog_venue(ctx, make_venue, sqlite_db(), "v2")
    copies = add_copies(ctx, "v2", 3)
    due = ["v1", "v2", *copies]
    assert scheduling.batches(ctx, due, size=3) == [["v1", "v2", copies[0]], copies[1:]]
    # v1's changelog is locked for a while (a long maintenance statement): its feed read waits
    blocker = engine_for(src).connect()
    try:
        tx = blocker.begin()
        blocker.execute(sa.text("LOCK TABLE cloudsync_changelog IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(incremental_batch.SLOW_VENUE_S + 0.5, tx.commit)
        release.start()
        states = {r.venue_id: r.state for r in incremental_batch.sync_venues(ctx, due)}
        release.join()
    finally:
        blocker.close()
    assert set(states.values()) == {"applied"}
    assert scheduling.batches(ctx, due, size=3) == [["v2", *copies[:2]], copies[2:], ["v1"]]
    # fast again (it runs alone, and its run is quick): back among the others
    assert incremental_batch.sync_venues(ctx, ["v1"])[0].state == "applied"
    assert scheduling.batches(ctx, due, size=3) == [["v1", "v2", copies[0]], copies[1:]]


def test_the_dispatcher_claims_each_due_venue_once_and_rebuilds_a_lost_schedule(sqlite_db, make_ctx, make_venue,
                                                                                 redis_url):
    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url)
    for venue_id in ("v1", "v2"):
        make_venue(ctx, sqlite_db(), rows=200, venue_id=venue_id)
        incremental.install_changelog(ctx, venue_id)
        incremental.configure_feed(ctx, venue_id, "changelog", interval_s=1)
    assert sorted(scheduling.due_venues(ctx)) == ["v1", "v2"]
    assert scheduling.due_venues(ctx) == []  # claimed until their interval has passed
    time.sleep(1.1)
    assert sorted(scheduling.due_venues(ctx)) == ["v1", "v2"]
    # Redis lost the schedule (restarted empty): the next refresh puts every venue back, due now
    ctx.redis.flushdb()
    time.sleep(scheduling.VENUES_TTL_S + 0.2)
    assert sorted(scheduling.due_venues(ctx)) == ["v1", "v2"]
    # a venue switched off leaves the schedule
    with ctx.control.begin() as conn:
        conn.execute(venues.update().where(venues.c.id == "v2").values(active=False))
    time.sleep(scheduling.VENUES_TTL_S + 0.2)
    assert scheduling.due_venues(ctx) == ["v1"]
    assert [m.decode() for m in ctx.redis.zrange(scheduling.DUE_KEY, 0, -1)] == ["v1"]
