"""Each compose service's cloudsync command, run here as a real process with the compose environment.

The environment is the service's own from docker-compose.yml, with only the addresses of the compose
services swapped for local ones: Redis (a database of the test's own), PostgreSQL (fresh databases),
HOME (a temporary folder) and Flower's port (a free one). The workers must answer a Celery ping and
consume their queues, beat must send work to the broker, Flower must answer HTTP behind basic auth,
and each service's own health check, run locally, must pass.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from celery import Celery

from cloudsync.cli import cli
from cloudsync.processes import start, stop
from tests import compose_file as cf
from worker.config import QUEUES

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
#: the compose hostnames whose URLs are swapped for local services
COMPOSE_HOSTS = {"redis", "postgres", "mssql"}
Launch = Callable[[str], tuple[subprocess.Popen[bytes], dict[str, str], Path]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _argv(service: dict[str, object]) -> list[str]:
    args = cf.command(service)
    assert args[0] == "cloudsync"
    exe = shutil.which("cloudsync", path=str(BIN))
    assert exe, f"no cloudsync script beside {sys.executable}"
    return [exe, *args[1:]]


@pytest.fixture
def local_env(redis_url: str, pg_db: Callable[[], str], tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The compose environment of a service, pointed at the local Redis and PostgreSQL."""
    control, cloud = pg_db(), pg_db()
    flower_port = _free_port()

    def adapt(name: str, **stand_ins: str) -> dict[str, str]:
        env = cf.environment(cf.services()[name])
        local = {"CLOUDSYNC_REDIS_URL": redis_url, "CLOUDSYNC_CONTROL_URL": control, "CLOUDSYNC_CLOUD_URL": cloud,
                 "CLOUDSYNC_HOME": str(tmp_path / "home" / name), "CLOUDSYNC_FLOWER_PORT": str(flower_port),
                 **stand_ins}
        pointing_at_compose = {k for k, v in env.items() if urlsplit(v).hostname in COMPOSE_HOSTS}
        unknown = pointing_at_compose - set(local)
        assert not unknown, f"{name}: no local stand-in for {sorted(unknown)}"
        for key in local:
            if key in env:
                env[key] = local[key]
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSYNC_")}
        base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
        return {**base, **env, "PYTHONUNBUFFERED": "1"}

    return adapt


@pytest.fixture
def launch(local_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Launch]:
    """Start a compose service's command as a real process; every one is stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(name: str) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
        env = local_env(name)
        Path(env["CLOUDSYNC_HOME"]).mkdir(parents=True, exist_ok=True)
        log = tmp_path / "logs" / f"{name}.log"
        proc = start(_argv(cf.services()[name]), env, log)
        procs.append(proc)
        return proc, env, log

    try:
        yield run
    finally:
        for proc in procs:
            stop(proc)


def _healthcheck(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The service's compose health check, run here with the service's (local) environment."""
    return subprocess.run(["sh", "-c", cf.healthcheck_shell(cf.services()[name])], env=env, capture_output=True,
                          text=True, timeout=60)


def _alive(proc: subprocess.Popen[bytes], log: Path, for_s: float) -> None:
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_workers_answer_pings_consume_their_queues_and_pass_their_healthchecks(launch: Launch,
                                                                                redis_url: str) -> None:
    from worker.health import wait_for_workers

    started = {name: launch(name) for name in ("worker-resync", "worker-incremental")}
    host = socket.gethostname()
    nodes = wait_for_workers(redis_url, 2, timeout_s=90)
    assert sorted(nodes) == sorted([f"resync@{host}", f"incremental@{host}"])
    probe = Celery(broker=redis_url)
    try:
        queues = probe.control.inspect(timeout=5).active_queues() or {}
    finally:
        probe.close()
    assert {node: sorted(q["name"] for q in qs) for node, qs in queues.items()} == {
        f"resync@{host}": ["resync"], f"incremental@{host}": ["control", "incremental"]}
    checks = {name: subprocess.Popen(["sh", "-c", cf.healthcheck_shell(cf.services()[name])], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for name, (_, env, _) in started.items()}  # both at once: each loads the Celery app
    for name, check in checks.items():
        output, _ = check.communicate(timeout=60)
        assert check.returncode == 0, f"{name} health check failed: {output}"
    for proc, _, log in started.values():
        _alive(proc, log, 2)
    stop(started["worker-resync"][0])
    check = _healthcheck("worker-resync", started["worker-resync"][1])
    assert check.returncode != 0, "the health check must fail once the worker is gone"


def test_beat_stays_up_sends_work_and_passes_its_healthcheck(launch: Launch, redis_url: str) -> None:
    if "beat" not in cli.commands:
        pytest.skip("`cloudsync beat` does not exist yet")
    proc, env, log = launch("beat")
    _alive(proc, log, 4)
    client = redis.Redis.from_url(redis_url)

    def queued() -> int:  # messages beat put on cloudsync's queues (no worker consumes them here)
        return sum(int(client.llen(q)) for q in QUEUES)

    try:
        deadline = time.monotonic() + 30
        while not queued() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        assert queued() > 0, "beat sent nothing to the broker"
    finally:
        client.close()
    check = _healthcheck("beat", env)
    assert check.returncode == 0, f"beat health check failed: {check.stdout}{check.stderr}"
    elsewhere = Path(env["CLOUDSYNC_HOME"]).with_name("no-beat-here")
    elsewhere.mkdir()
    assert _healthcheck("beat", {**env, "CLOUDSYNC_HOME": str(elsewhere)}).returncode != 0


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_flower_answers_behind_basic_auth(launch: Launch) -> None:
    proc, env, log = launch("flower")
    base = f"http://127.0.0.1:{env['CLOUDSYNC_FLOWER_PORT']}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if _get(f"{base}/healthcheck") == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "Flower did not answer within 60s:\n" + log.read_text()[-3000:]
        time.sleep(0.3)
    user, password = env["CLOUDSYNC_FLOWER_USER"], env["CLOUDSYNC_FLOWER_PASSWORD"]
    assert password == cf.REQUIRED_ENV["FLOWER_PASSWORD"]
    assert _get(f"{base}/") == 401
    assert _get(f"{base}/", (user, "wrong")) == 401
    assert _get(f"{base}/", (user, password)) == 200
    assert _get(f"{base}/workers", (user, password)) == 200
    check = _healthcheck("flower", env)
    assert check.returncode == 0, f"flower health check failed: {check.stdout}{check.stderr}"
    assert _healthcheck("flower", {**env, "CLOUDSYNC_FLOWER_PORT": str(_free_port())}).returncode != 0
    _alive(proc, log, 1)
    assert password not in log.read_text()


def test_seed_command_builds_and_registers_a_venue_once(local_env: Callable[..., dict[str, str]],
                                                        pg_db: Callable[[], str]) -> None:
    """The seed's command against PostgreSQL (Change Tracking is SQL Server's: test_mssql.py runs that)."""
    venue_url = sa.make_url(pg_db())
    env = local_env("venue-seed", DEMO_VENUE_DSN=venue_url.render_as_string(hide_password=False))
    argv = [a for a in _argv(cf.services()["venue-seed"]) if a != "--change-tracking"]
    argv[argv.index("--rows") + 1] = "500"
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "created:" in first.stdout and "venue demo-mssql registered" in first.stdout
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "kept:" in again.stdout, again.stdout  # a restarted compose keeps its venue and positions
    assert "venue demo-mssql already registered" in again.stdout
    control = sa.create_engine(env["CLOUDSYNC_CONTROL_URL"])
    try:
        with control.connect() as conn:
            dsn = conn.execute(sa.text("SELECT source_dsn FROM venues WHERE id = 'demo-mssql'")).scalar_one()
    finally:
        control.dispose()
    assert sa.make_url(dsn).database == venue_url.database
