"""The PostgreSQL→PostgreSQL fast path: COPY text passed through, straight into empty key ranges.

Rows travel as COPY text (no Python objects) for tables whose types allow it, and by rows otherwise
(floats, JSON); the venue id is spliced into every line (escaped for COPY's text format); a second
resync into the populated cloud applies updates and deletes through the staging table.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudsync import resync
from cloudsync.control.venues import add_venue
from cloudsync.db import engine_for
from cloudsync.sources import open_source
from cloudsync.sources.readers import passes_through, read_copy_text
from cloudsync.targets.postgresql import _copy_text_field
from tests.helpers import run_job_inline

pytestmark = pytest.mark.integration

VENUE = "venue.1-x_Y"


def _fill(dsn: str) -> None:
    with engine_for(dsn).begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE lines (loc smallint, txn int, line smallint, amount numeric(12,2), note text, "
            "at timestamptz, blob bytea, ok boolean, PRIMARY KEY (loc, txn, line))"))
        conn.execute(sa.text(
            "INSERT INTO lines SELECT 1 + i % 3, i / 3, 1 + i % 2, i / 7.0, "
            "CASE WHEN i % 5 = 0 THEN NULL ELSE E'tab\\there\\nnew \\\\ line ' || i || ' 🍜' END, "
            "timestamptz '2026-03-01 00:00+10' + i * interval '1 minute', "
            "CASE WHEN i % 2 = 0 THEN decode(md5(i::text), 'hex') END, i % 3 = 0 "
            "FROM generate_series(1, 3000) i"))
        conn.execute(sa.text("CREATE TABLE readings (id int PRIMARY KEY, value float8, doc jsonb)"))
        conn.execute(sa.text("INSERT INTO readings SELECT i, i / 3.0, jsonb_build_object('i', i) "
                             "FROM generate_series(1, 1200) i"))


def test_venue_ids_are_escaped_for_copy_text():
    assert _copy_text_field("a\\b\tc\nd\re") == b"a\\\\b\\tc\\nd\\re"


def test_copy_text_pass_through_and_populated_resync(pg_db, make_ctx, target_equals_source):
    src, cloud = pg_db(), pg_db()
    _fill(src)
    ctx = make_ctx(cloud_url=cloud, chunk_rows=400)
    add_venue(ctx.control, VENUE, src)
    source = open_source(VENUE, src)
    assert passes_through(source.table("lines"))
    assert not passes_through(source.table("readings"))  # floats and JSON take the row path
    blocks = list(read_copy_text(source, source.table("lines"), None, (2, 100, 1), 50))
    assert sum(len(b) for b in blocks) == sum(b.data.count(b"\n") for b in blocks) > 0

    job = run_job_inline(ctx, resync.request_full_resync(ctx, VENUE))
    assert job.state == "done" and job.verification["match"], job.verification
    target_equals_source(ctx, VENUE)

    with engine_for(src).begin() as conn:
        conn.execute(sa.text("DELETE FROM lines WHERE txn % 7 = 0"))
        conn.execute(sa.text("UPDATE lines SET note = note || ' ✓', ok = NOT ok WHERE txn % 5 = 1"))
        conn.execute(sa.text("UPDATE readings SET value = value + 1 WHERE id % 4 = 0"))
        # new rows inside ranges the cloud already holds (line 3 of existing transactions), and past the end
        conn.execute(sa.text("INSERT INTO lines SELECT loc, txn, 3, amount + 1, 'added', at, NULL, true "
                             "FROM lines WHERE line = 1 AND txn % 9 = 2"))
        conn.execute(sa.text("INSERT INTO readings SELECT i, i, NULL FROM generate_series(1201, 1300) i"))
        conn.execute(sa.text("DELETE FROM readings WHERE id % 11 = 0"))
    job = run_job_inline(ctx, resync.request_full_resync(ctx, VENUE))
    assert job.state == "done" and job.verification["match"], job.verification
    target_equals_source(ctx, VENUE)
    with engine_for(cloud).connect() as conn:
        venues = conn.execute(sa.text("SELECT DISTINCT venue_id FROM lines")).scalars().all()
    assert venues == [VENUE]


def test_copy_text_blocks_hold_no_object_per_row(pg_db):
    """A block of COPY text is one bytes object: the reader must not keep each row's message (a memoryview
    the garbage collector tracks) alive until the block is handed over. Thousands of tracked objects per
    block pushed full collections of the whole worker (80-150 ms each) into nearly every chunk."""
    import gc

    src = pg_db()
    _fill(src)
    source = open_source(VENUE, src)
    stream = read_copy_text(source, source.table("lines"), None, None, 1000)
    assert stream is not None
    seen = 0
    for block in stream:
        assert type(block.data) is bytes and block.data.count(b"\n") == len(block)
        alive = sum(1 for o in gc.get_objects() if isinstance(o, memoryview))
        assert alive < 50, f"{alive} memoryviews alive while a block of {len(block)} rows is out"
        seen += len(block)
    assert seen == 3000


def test_end_of_job_verification_sees_a_cloud_row_that_differs(pg_db, make_ctx):
    """The job's closing check (PostgreSQL's own row hash on both sides) is not fooled by a changed value."""
    src, cloud = pg_db(), pg_db()
    _fill(src)
    ctx = make_ctx(cloud_url=cloud, chunk_rows=400)
    add_venue(ctx.control, VENUE, src)
    job_id = resync.request_full_resync(ctx, VENUE)
    for chunk_id in resync.plan_job(ctx, job_id):
        resync.run_chunk(ctx, job_id, chunk_id, owner="t")
    with engine_for(cloud).begin() as conn:  # drift after the copy, before the check: one value, one row
        changed = conn.execute(sa.text("UPDATE lines SET amount = amount + 0.01 "
                                       "WHERE loc = 1 AND txn = 500 AND line = 1")).rowcount
    assert changed == 1
    job = resync.finish_job(ctx, job_id)
    assert job.state == "done" and not job.verification["match"]
    tables = job.verification["tables"]
    assert not tables["lines"]["match"] and tables["readings"]["match"]
    assert tables["lines"]["source"]["rows"] == tables["lines"]["target"]["rows"]
