"""Starting and stopping cloudsync's own processes (workers, beat, Flower) as real subprocesses.

Used by `cloudsync demo`, by the tests and by the benchmark: every worker is a real `celery worker`
process, pointed at the same Redis and databases through the environment.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from cloudsync.settings import Settings

ALL_QUEUES = "resync,incremental,control"


def settle_heap() -> None:
    """Take what this process has built so far (modules, classes, functions, engines, configuration:
    about 150,000 objects in a worker) out of the garbage collector's full collections.

    A full collection walks every tracked object, and in a busy worker one ran every chunk or so,
    80-150 ms each, although none of those objects ever becomes garbage. Frozen, they are skipped;
    what the process allocates later is collected as before. Called once a process has started
    (`cloudsync` commands, each worker and pool process, the benchmark) and again after a worker's
    context is built. In a worker's main process it also spares the pool processes it forks from
    copying pages only to update the collector's counts.
    """
    gc.freeze()


def process_env(settings: Settings, redis_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child process needs to see exactly what this process sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSYNC_") or k in {
        "CLOUDSYNC_STAFF", "CLOUDSYNC_PIN", "CLOUDSYNC_CONFIG"}}
    for name, value in settings.__dict__.items():
        if name == "home":
            value = str(settings.home_path)
        env["CLOUDSYNC_" + name.upper()] = str(value)
    env["CLOUDSYNC_REDIS_URL"] = redis_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def worker_args(name: str | None = None, queues: str = ALL_QUEUES, concurrency: int = 1,
                loglevel: str = "INFO") -> list[str]:
    """`celery worker` arguments, the same for `cloudsync worker`, the demo, the tests and the benchmark.

    Task events on (Flower); no gossip or mingle: with many workers on Redis they are a steady stream
    of broadcast traffic, and nothing here needs them (revocations are not used; state lives in the
    control database).
    """
    node = name or f"cloudsync-{uuid.uuid4().hex[:6]}"
    return ["worker", "-Q", queues, "-c", str(concurrency), "-n", f"{node}@%h", "-E", "--loglevel", loglevel,
            "--without-mingle", "--without-gossip"]


def worker_command(name: str | None = None, queues: str = ALL_QUEUES, concurrency: int = 1,
                   loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *worker_args(name, queues, concurrency, loglevel)]


def start(cmd: list[str], env: Mapping[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab")
    return subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM the process group (a warm shutdown), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)

