"""`cloudsync venue changelog|feed` and `cloudsync sync`, through click's CliRunner and as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cloudsync.cli import cli
from cloudsync.context import Context
from cloudsync.db import engine_for

pytestmark = pytest.mark.integration


def test_feed_commands_and_one_sync_now(sqlite_db, make_settings, make_venue, redis_url, target_equals_source):
    src = sqlite_db()
    settings = make_settings(cloud_url=sqlite_db(), redis_url=redis_url)
    ctx = Context.from_settings(settings)
    make_venue(ctx, src, rows=600)
    env = {"CLOUDSYNC_HOME": settings.home, "CLOUDSYNC_CLOUD_URL": settings.cloud_url,
           "CLOUDSYNC_REDIS_URL": redis_url}
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    bad = run("venue", "feed", "v1", "changelog")
    assert bad.exit_code == 1 and "not installed" in bad.output and "Traceback" not in bad.output
    assert run("venue", "feed", "v1", "cursor").exit_code == 1  # --column is required
    missing = run("venue", "feed", "v1", "cursor", "--column", "no_such_column")
    assert missing.exit_code == 1 and "no_such_column" in missing.output
    installed = run("venue", "changelog", "install", "v1")
    assert installed.exit_code == 0 and "installed on 7 tables" in installed.output
    chosen = run("venue", "feed", "v1", "changelog", "--interval", "5")
    assert chosen.exit_code == 0 and "every 5s" in chosen.output
    early = run("sync", "v1")
    assert early.exit_code == 1 and "full resync required" in early.output
    assert len(early.output.strip().splitlines()) == 1
    unknown = run("sync", "nope")
    assert unknown.exit_code == 1 and "unknown venue: nope" in unknown.output

    from cloudsync import resync
    from tests.helpers import run_job_inline

    run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert "up to date" in run("sync", "v1").output
    with engine_for(src).begin() as conn:
        conn.execute(sa.text("UPDATE products SET price = price + 1 WHERE product_id <= 4"))
        conn.execute(sa.text("DELETE FROM payments WHERE txn_id = 2"))
    proc = subprocess.run([sys.executable, "-m", "cloudsync", "sync", "v1"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr
    assert "products" in proc.stdout and "4 upserted" in proc.stdout.replace(",", "")
    assert "changed keys applied" in proc.stdout
    target_equals_source(ctx, "v1")
    removed = run("venue", "changelog", "remove", "v1")
    assert removed.exit_code == 0
    after = run("sync", "v1")
    assert after.exit_code == 1 and "full resync required" in after.output
