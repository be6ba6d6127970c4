"""`cloudsync flower`: a real Flower process with basic auth, watching a real worker run a real job.

Read batches of one row and chunks of up to 5,000 rows make the large tables' chunks run 0.2 s or more
each, long enough for their PROGRESS state (and the readable progress line in `result`) to be seen through
Flower's REST API, polled every 0.1 s, while they run. (With 250-row chunks of 5-row batches, chunks of
6-60 ms were missed by every poll in about half the runs once the workers stopped pausing for the garbage
collector.)
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

from cloudsync import resync
from cloudsync.cli import cli
from cloudsync.context import Context
from cloudsync.processes import process_env, start, stop
from tests.helpers import wait_for_job
from worker.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "s3cret pass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, auth: bool = True) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


def _wait_for_flower(port: int, proc, log_file) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"flower exited {proc.returncode}: {log_file.read_text()[-2000:]}")
        try:
            status, _ = _get(port, "/api/workers")
            if status == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"flower did not answer: {log_file.read_text()[-2000:]}")


def test_flower_shows_workers_and_a_running_jobs_chunk_progress(redis_url, sqlite_db, make_settings, make_venue,
                                                                 workers, tmp_path):
    settings = make_settings(redis_url=redis_url, cloud_url=sqlite_db(), chunk_rows=5000, read_batch_rows=1,
                             flower_user=USER, flower_password=PASSWORD)
    ctx = Context.from_settings(settings)
    make_venue(ctx, sqlite_db(), rows=20000, venue_id="fl1")
    port = _free_port()
    env = process_env(settings, redis_url)
    log_file = tmp_path / "flower.log"
    flower = start([sys.executable, "-m", "cloudsync", "flower", "--port", str(port), "--address", "127.0.0.1"],
                   env, log_file)
    try:
        workers(settings, redis_url, count=1, concurrency=1)
        _wait_for_flower(port, flower, log_file)
        assert _get(port, "/api/workers", auth=False)[0] == 401
        assert PASSWORD not in log_file.read_text()

        deadline = time.monotonic() + 30
        names: list[str] = []
        while time.monotonic() < deadline and not names:
            status, body = _get(port, "/api/workers?refresh=1")
            assert status == 200
            names = [n for n in body or {} if n.startswith("w1-")]
            time.sleep(0.3)
        assert names, body

        job_id = resync.request_full_resync(ctx, "fl1", requested_by="test")
        CeleryDispatcher(ctx).plan_job(job_id)
        progress: list[dict[str, Any]] = []
        chunk_tasks: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, tasks = _get(port, "/api/tasks?limit=1000")
            assert status == 200
            for task_id, task in tasks.items():
                if task.get("name") == "cloudsync.resync.chunk":
                    chunk_tasks[task_id] = task
                    if task.get("state") == "PROGRESS":
                        progress.append(task)
            if not _active(ctx, job_id):
                break
            time.sleep(0.1)
        job = wait_for_job(ctx, job_id, timeout_s=120)
        time.sleep(1)  # the last events reach Flower
        chunk_tasks.update({k: t for k, t in _get(port, "/api/tasks?limit=1000")[1].items()
                            if t.get("name") == "cloudsync.resync.chunk"})
        assert job.state == "done", job.error
        assert progress, "no chunk task was seen in state PROGRESS"
        seen = progress[0]
        assert "rows" in seen["result"] and "/s" in seen["result"], seen
        assert seen["worker"] in names
        # readable name, venue / table / key range in each chunk task's kwargs
        assert len(chunk_tasks) >= job.chunks_total // 2
        for task in chunk_tasks.values():
            assert "'venue': 'fl1'" in task["kwargs"] and "'table': '" in task["kwargs"]
            assert "'lo': " in task["kwargs"] and "'hi': " in task["kwargs"]
        status, types = _get(port, "/api/task/types")
        assert {"cloudsync.resync.plan", "cloudsync.resync.chunk", "cloudsync.resync.finish"} <= set(
            types["task-types"])
    finally:
        stop(flower)


def _active(ctx, job_id: int) -> bool:
    from cloudsync.control.jobs import get_job

    return get_job(ctx.control, job_id).active


def test_flower_refuses_to_start_without_credentials(make_settings):
    env = process_env(make_settings(), "redis://127.0.0.1:1/0")
    res = CliRunner().invoke(cli, ["flower"], env=env)
    assert res.exit_code == 1 and "CLOUDSYNC_FLOWER_USER" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["flower", "--insecure-local", "--address", "0.0.0.0"], env=env)
    assert res.exit_code == 1 and "127.0.0.1 only" in res.output
