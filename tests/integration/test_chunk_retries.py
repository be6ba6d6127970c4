"""A chunk's retries after transient errors are its own: waits for a guard (a trading-hours rate limit can
hold a chunk many times) do not use them up. Runs the chunk task in this process against real services:
Redis as the broker, the control database, and a venue database that refuses connections."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from celery.exceptions import Retry

from cloudsync import resync
from cloudsync.control import jobs as jobrepo
from cloudsync.control.schema import venues
from cloudsync.errors import SourceUnavailable
from cloudsync.processes import process_env
from tests.chaos.faults import free_port
from worker.config import celery_config
from worker.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration

RETRY_MAX = 2


@pytest.fixture
def chunk_task(redis_url, sqlite_db, make_ctx, make_venue, monkeypatch):
    """The chunk task, configured for this test's settings, and a planned job whose venue then goes away."""
    import tasks.base
    from tasks.resync import chunk
    from worker.app import app

    ctx = make_ctx(cloud_url=sqlite_db(), redis_url=redis_url, retry_max=RETRY_MAX, chunk_rows=500)
    make_venue(ctx, sqlite_db(), rows=600)
    job_id = resync.request_full_resync(ctx, "v1")
    chunk_id = resync.plan_job(ctx, job_id)[0]
    # the venue's database stops answering: every attempt is a transient "source unavailable"
    with ctx.control.begin() as conn:
        conn.execute(venues.update().where(venues.c.id == "v1").values(
            source_dsn=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone"))
    for name, value in process_env(ctx.settings, redis_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tasks.base, "_ctx", {})
    app.conf.update(celery_config(ctx.settings, redis_url))
    shown = {"venue": "v1", "grant": CeleryDispatcher(ctx).grant(job_id)}
    return chunk, ctx, job_id, chunk_id, shown


def _run(chunk, job_id: int, chunk_id: int, retries: int, kwargs: dict) -> BaseException:
    chunk.push_request(id=f"test-{chunk_id}", retries=retries, kwargs=kwargs, args=[job_id, chunk_id],
                       called_directly=False, delivery_info={"routing_key": "resync"})
    try:
        with pytest.raises((Retry, SourceUnavailable)) as caught:
            chunk.run(job_id, chunk_id, **kwargs)
    finally:
        chunk.pop_request()
    return caught.value


def _queued_failures(redis_url: str) -> list[int]:
    """The `failures` count of every retry message waiting in the broker (a countdown keeps it unacked)."""
    client = redis.Redis.from_url(redis_url)
    found = []
    for raw in [*client.lrange("resync", 0, -1), *client.hvals("unacked")]:
        message = json.loads(raw)
        message = message[0] if isinstance(message, list) else message
        body = json.loads(base64.b64decode(message["body"])) if message.get("body") else None
        if body:
            found.append(int(body[1].get("failures", 0)))
    return found


def test_waits_for_a_guard_do_not_use_up_a_chunks_retries(chunk_task, redis_url):
    chunk, ctx, job_id, chunk_id, shown = chunk_task
    # the message has been retried 10 times already, all of them waits for the rate limit: still retried
    raised = _run(chunk, job_id, chunk_id, retries=10, kwargs=dict(shown))
    assert isinstance(raised, Retry), raised
    assert jobrepo.get_chunk(ctx.control, chunk_id).state == "pending"
    assert 1 in _queued_failures(redis_url)  # the retry carries its count of real failures


def test_a_chunk_fails_after_its_own_retries_run_out(chunk_task):
    chunk, ctx, job_id, chunk_id, shown = chunk_task
    raised = _run(chunk, job_id, chunk_id, retries=RETRY_MAX, kwargs={**shown, "failures": RETRY_MAX})
    assert isinstance(raised, SourceUnavailable), raised
    failed = jobrepo.get_chunk(ctx.control, chunk_id)
    assert failed.state == "failed"
