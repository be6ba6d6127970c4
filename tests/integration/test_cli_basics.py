"""The CLI on bad input: one clear line, a non-zero exit, no traceback, no password — in-process
through click's CliRunner and as a real `cloudsync` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudsync.cli import cli

pytestmark = pytest.mark.integration

SECRET = "Sup3rS3cret"


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {"CLOUDSYNC_HOME": str(tmp_path / "home"), "CLOUDSYNC_REDIS_URL": redis_url}


def run(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


@pytest.mark.parametrize(("args", "expected"), [
    (["venue", "show", "nowhere"], "unknown venue: nowhere"),
    (["resync", "show", "424242"], "unknown job: 424242"),
    (["venue", "add", "v1", "--dsn", "not-a-url"], "not a database URL"),
    (["venue", "add", "v1", "--dsn", f"oracle://sync:{SECRET}@db/pos"], "unsupported driver"),
    (["venue", "add", "v1", "--dsn", f"postgresql+psycopg://sync:{SECRET}@127.0.0.1:1/pos"], "unavailable"),
    (["venue", "add", "bad id!", "--dsn", "sqlite:///x.db"], "venue id"),
    (["venue", "add", "v1", "--dsn", "sqlite:///x.db", "--timezone", "Mars/Olympus"], "unknown time zone"),
])
def test_bad_input_gets_one_clear_line(env, args, expected):
    text = _one_line_error(run(env, *args))
    assert expected in text
    assert SECRET not in text


def test_unknown_table_is_refused(env, sqlite_db, make_ctx, make_venue):
    dsn = sqlite_db()
    from cloudsync.demo.venue import create_demo_venue
    create_demo_venue(dsn, rows=200)
    text = _one_line_error(run(env, "venue", "add", "v1", "--dsn", dsn, "--tables", "products,robert'); drop"))
    assert "is not in the source schema" in text


def test_venue_add_list_show_mask_the_password(env, pg_db, make_ctx):
    import sqlalchemy as sa

    from cloudsync.demo.venue import create_demo_venue

    url = sa.make_url(pg_db())
    create_demo_venue(url.render_as_string(hide_password=False), rows=300)
    with_pw = url.set(password=SECRET).render_as_string(hide_password=False)  # trust auth ignores it
    for args in (["venue", "add", "v1", "--dsn", with_pw], ["venue", "list"], ["venue", "show", "v1"],
                 ["config"]):
        result = run(env, *args)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert "***" in run(env, "venue", "show", "v1").output


def test_bad_setting_names_the_variable(env):
    text = _one_line_error(run({**env, "CLOUDSYNC_CHUNK_ROWS": "many"}, "venue", "list"))
    assert "CLOUDSYNC_CHUNK_ROWS" in text


def test_real_subprocess_exit_codes_and_output(env):
    exe = Path(sys.executable).with_name("cloudsync")
    full_env = {**os.environ, **env}
    ok = subprocess.run([str(exe), "--help"], env=full_env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "resync" in ok.stdout
    bad = subprocess.run([str(exe), "venue", "show", "nowhere"], env=full_env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: unknown venue: nowhere"
    assert "Traceback" not in bad.stdout + bad.stderr
