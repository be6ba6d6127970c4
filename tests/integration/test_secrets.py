"""Secrets: every `cloudsync` command, run with database and Redis URLs that carry a password, never
shows the password: not in its output, not in the log files under CLOUDSYNC_HOME/logs, not in the
control database's job events or audit log.

The commands are discovered from the click group (recursively), so a new command without an entry in
COMMANDS fails this test until someone decides how to run it here. Services are real: PostgreSQL
(trust authentication here, so a password in the URL is accepted and unused), a private Redis that
requires the password, real worker/beat/Flower/demo subprocesses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cloudsync.cli import cli
from cloudsync.db import dispose_all
from cloudsync.demo.venue import create_demo_venue
from tests.chaos.faults import RedisServer, free_port

pytestmark = pytest.mark.integration

SECRET = "Zq7S3cr3tPw"
PIN = "4711"
CLOUDSYNC = str(Path(sys.executable).with_name("cloudsync"))

# how each command runs here: args after the command path; "proc" runs it as a subprocess for a few
# seconds (long-running commands are stopped by the test); {src}/{src2}/{out}/{port} are filled in
COMMANDS: dict[str, dict[str, object]] = {
    "init": {"args": ["--staff", "boss", "--name", "Boss"]},
    "venue add": {"args": ["v1", "--dsn", "{src}", "--tables", "products,members,clerks"]},
    "venue list": {"args": []},
    "venue show": {"args": ["v1"], "proc": 0},
    "venue feed": {"args": ["v1", "changelog"]},
    "venue changelog install": {"args": ["v1"]},
    "venue hours": {"args": ["v1", "mon-fri 07:00-23:00; sat-sun closed"]},
    "venue limits": {"args": ["v1", "--trading-rows-per-s", "500"]},
    "venue register": {"args": ["--customer-number", "C-77", "--company-name", "Bar Ltd", "--email", "a@b.example"]},
    "demo-venue": {"args": ["--dsn", "{src2}", "--rows", "100", "--register", "v2"]},
    "onboard": {"args": ["--customer-number", "C-77", "--dsn", "{src2}", "--code", "WRONG-CODE", "--yes"]},
    "group add": {"args": ["ops", "--grant", "cloud.resync"]},
    "group grant": {"args": ["ops", "cloud.maintenance"]},
    "group revoke": {"args": ["ops", "cloud.maintenance"]},
    "group list": {"args": []},
    "staff add": {"args": ["kim", "--name", "Kim", "--group", "ops"], "input": "2580\n2580\n"},
    "group members": {"args": ["ops", "--add", "boss"]},
    "staff list": {"args": []},
    "staff pin": {"args": ["kim"], "input": "1357\n1357\n"},
    "staff disable": {"args": ["kim"]},
    "staff enable": {"args": ["kim"]},
    "staff unlock": {"args": ["kim"]},
    "maintenance start": {"args": ["v1", "--reason", "index rebuild"]},
    "maintenance list": {"args": ["--all"]},
    "maintenance stop": {"args": ["v1"]},
    "resync full": {"args": ["v1", "--yes", "--during-trading"]},
    "resync show": {"args": ["{job}"]},
    "resync cancel": {"args": ["{job}"]},
    "resync resume": {"args": ["{job}"]},
    "jobs": {"args": []},
    "sync": {"args": ["v1"]},
    "verify": {"args": ["v1"], "proc": 0},
    "status": {"args": ["--json"]},
    "audit": {"args": ["--limit", "200"]},
    "logs": {"args": ["v1", "--output", "{out}"]},
    "reset": {"args": ["v1", "--yes"]},
    "venue changelog remove": {"args": ["v1"]},
    "config": {"args": [], "proc": 0},
    "worker": {"args": ["-c", "1"], "proc": 5},
    "beat": {"args": [], "proc": 4},
    "flower": {"args": ["--port", "{port}"], "proc": 5},
    "demo": {"args": ["--rows", "100", "--workers", "1"], "proc": 60},
}


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def with_password(url: str) -> str:
    parsed = sa.make_url(url)
    return parsed.set(password=SECRET).render_as_string(hide_password=False)


def leaked(text: str) -> bool:
    return SECRET in text or quote(SECRET) in text


@pytest.fixture
def world(tmp_path: Path, pg_db) -> Iterator[dict[str, str]]:
    redis_server = RedisServer(tmp_path / "redis", password=SECRET).start()
    src, src2 = with_password(pg_db()), with_password(pg_db())
    create_demo_venue(src, rows=300)
    env = {
        "CLOUDSYNC_HOME": str(tmp_path / "home"),
        "CLOUDSYNC_CONTROL_URL": with_password(pg_db()),
        "CLOUDSYNC_CLOUD_URL": with_password(pg_db()),
        "CLOUDSYNC_REDIS_URL": redis_server.url,
        "CLOUDSYNC_FLOWER_USER": "ops",
        "CLOUDSYNC_FLOWER_PASSWORD": SECRET,
        "CLOUDSYNC_STAFF": "boss",
        "CLOUDSYNC_PIN": PIN,
    }
    try:
        yield {"env": env, "src": src, "src2": src2, "out": str(tmp_path / "logs.tar.gz"),  # type: ignore[dict-item]
               "port": str(free_port()), "job": "1"}
    finally:
        dispose_all()
        redis_server.kill()


def _fill(args: list[str], world: dict[str, str]) -> list[str]:
    return [a.format(**{k: v for k, v in world.items() if isinstance(v, str)}) for a in args]


def _run_inline(env: dict[str, str], argv: list[str], stdin: str | None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, argv, env=env, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    dispose_all()
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def _run_process(env: dict[str, str], argv: list[str], stdin: str | None, seconds: int) -> tuple[int, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSYNC_")} | env
    if not seconds:
        proc = subprocess.run([CLOUDSYNC, *argv], env=full_env, input=stdin, capture_output=True, text=True,
                              timeout=120)
        return proc.returncode, proc.stdout + proc.stderr
    running = subprocess.Popen([CLOUDSYNC, *argv], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        out, _ = running.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(running.pid, 15)
        try:
            out, _ = running.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(running.pid, 9)
            out, _ = running.communicate()
    return running.returncode, out


def test_every_command_is_covered():
    missing = sorted(set(leaf_commands(cli)) - set(COMMANDS))
    assert not missing, f"add these commands to COMMANDS in {__file__}: {missing}"


def test_no_command_shows_a_password(world):
    env: dict[str, str] = world["env"]  # type: ignore[assignment]
    outputs: dict[str, tuple[int, str]] = {}
    order = [c for c in COMMANDS if c in set(leaf_commands(cli))]
    for command in order:
        spec = COMMANDS[command]
        argv = [*command.split(), *_fill(list(spec["args"]), world)]  # type: ignore[arg-type]
        stdin = spec.get("input")
        began = time.monotonic()
        if "proc" in spec:
            code, text = _run_process(env, argv, stdin, int(spec["proc"]))  # type: ignore[call-overload]
        else:
            code, text = _run_inline(env, argv, stdin)  # type: ignore[arg-type]
        outputs[command] = (code, text)
        print(f"{command}: {time.monotonic() - began:.1f}s exit {code}")
        if command == "resync full":
            found = re.search(r"job (\d+)", text)
            world["job"] = found.group(1) if found else "1"
        if not spec.get("proc"):  # a long-running process stopped by the test may log its interrupted work
            assert "Traceback" not in text, f"`cloudsync {' '.join(argv)}`:\n{text}"
        assert not leaked(text), f"`cloudsync {' '.join(argv)}` showed the password:\n{text}"
    # the set-up commands must have worked, or the rest proved little
    for command in ("init", "venue add", "venue show", "config", "status", "resync full"):
        assert outputs[command][0] == 0, (command, outputs[command])
    assert sa.make_url(world["src"]).password == SECRET  # the DSNs really carried it

    # logs written by the commands and the processes they started
    logs = Path(env["CLOUDSYNC_HOME"]) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
    assert files, "no log files were written under CLOUDSYNC_HOME/logs"
    for path in files:
        assert not leaked(path.read_bytes().decode("utf-8", "replace")), f"password in {path}"

    # what the control database keeps
    engine = sa.create_engine(env["CLOUDSYNC_CONTROL_URL"])
    try:
        with engine.connect() as conn:
            for table in ("job_events", "audit_log", "jobs", "sync_runs"):
                rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()  # noqa: S608 (fixed names)
                assert rows or table != "audit_log", f"{table} is empty"
                assert not leaked(repr(rows)), f"password in {table}"
    finally:
        engine.dispose()


@pytest.mark.parametrize("dsn_template", [
    "postgresql+psycopg://sync:{pw}@127.0.0.1:1/pos",
    "mysql+pymysql://sync:{pw}@127.0.0.1:1/pos",
    "oracle://sync:{pw}@db/pos",
    "mssql+pyodbc:///?odbc_connect=" + quote("DRIVER={Nope};SERVER=x;UID=sa;PWD={pw};"),
])
def test_a_failing_connection_never_shows_its_password(tmp_path, redis_url, dsn_template):
    dsn = dsn_template.replace("{pw}", SECRET)
    env = {"CLOUDSYNC_HOME": str(tmp_path / "home"), "CLOUDSYNC_REDIS_URL": redis_url}
    code, text = _run_inline(env, ["venue", "add", "v9", "--dsn", dsn], None)
    assert code != 0 and text.startswith("error: ") and not leaked(text), text
    if dsn.startswith(("postgresql", "mssql")):  # and as a real process, for two of them (each costs a start-up)
        code, text = _run_process(env, ["venue", "add", "v9", "--dsn", dsn], None, 0)
        assert code != 0 and "Traceback" not in text and not leaked(text), text
