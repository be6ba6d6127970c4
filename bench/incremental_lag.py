"""Incremental-sync benchmark: change lag under a steady write load, and the idle cost of 500 venues.

Run it with one command (needs the PostgreSQL and Redis of docker-compose / the test services):

    .venv/bin/python -m bench.incremental_lag            # about 4 minutes; prints the figures
    .venv/bin/python -m bench.incremental_lag --seconds 60 --idle-seconds 300

1. Lag. A PostgreSQL demo venue with the changelog feed, synced every second (`sync_interval_s = 1`,
   dispatch interval 1 s), a real `celery beat` and one real worker (concurrency 2) writing to a
   PostgreSQL cloud. A writer process commits transactions at about 200 changed rows per second
   (inserts, updates, deletes, key changes) and stamps each transaction's commit time; a poller reads
   the cloud every 50 ms and stamps when each transaction's row becomes visible. Lag = visible − commit,
   reported as p50 / p95 / max over every transaction.
2. Idle cost. 500 venues with a change feed and the default interval (60 s), nothing changing at the
   source: CPU time used by the beat process and by the worker (parent and pool children) over a
   window, as a percentage of one core. Every venue is still visited once a minute (counted); the
   dispatcher sends the due venues in batches (`cloudsync.incremental.sync_batch`). Added at once,
   the venues fall due together (one burst of batches a minute); with `--spread` their first due
   times are spread evenly over the minute, as venues added at different times are (about one small
   batch every dispatch tick: the most messages per venue).

The 499 extra venues share the first venue's database and get their feed position directly (a full
resync of each would only make the set-up slower; the measured path is the same). Everything the
benchmark creates (databases, Redis db, processes) is removed at the end. Figures go to stdout and
`bench/results/incremental_lag.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench.fullsync import RESULTS_DIR, Databases, Options, spare_redis_db
from cloudsync import incremental, resync, scheduling
from cloudsync.cli.sync import beat_command
from cloudsync.context import Context
from cloudsync.control.schema import sync_runs, venues
from cloudsync.control.venues import add_venue
from cloudsync.db import engine_for
from cloudsync.demo.venue import create_demo_venue
from cloudsync.processes import process_env, start, stop, worker_command
from cloudsync.settings import load_settings
from tests.helpers import run_job_inline
from tests.writers import WRITER_LOCATION, write
from worker.health import wait_for_workers

log = logging.getLogger("bench.incremental_lag")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of a process, its reaped children and its live children."""
    total = 0.0
    try:
        t = proc.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def measure_lag(ctx: Context, src: str, seconds: float, rate_rows_s: float) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    manager = mp.Manager()
    stamps = manager.dict()
    stop_event = mp.Event()
    seen: dict[int, float] = {}
    polling = threading.Event()
    cloud = engine_for(ctx.settings.cloud_dsn)
    query = sa.text("SELECT txn_id FROM transactions WHERE venue_id = 'v1' AND location_id = :loc AND txn_id > :floor")

    def poll() -> None:
        floor = 0
        while not polling.is_set():
            with cloud.connect() as conn:
                ids = [r[0] for r in conn.execute(query, {"loc": WRITER_LOCATION, "floor": floor})]
            now = time.time()
            for i in ids:
                seen.setdefault(i, now)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    writer = mp.Process(target=write, args=(src, stop_event, seconds),
                        kwargs={"rate_rows_s": rate_rows_s, "rollback_share": 0.0, "stamp": stamps, "seed": 11,
                                "max_lines": 12})
    started = time.monotonic()
    writer.start()
    writer.join(seconds + 60)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 15
    committed = dict(stamps)
    written_rows = int(committed.pop(-1, 0))
    while time.monotonic() < deadline and not set(committed) <= set(seen):
        time.sleep(0.2)
    polling.set()
    poller.join(5)
    manager.shutdown()
    lags = [seen[t] - c for t, c in committed.items() if t in seen]
    with ctx.control.connect() as conn:
        rows = conn.execute(sa.select(sa.func.sum(sync_runs.c.rows_applied), sa.func.count()).where(
            sync_runs.c.venue_id == "v1", sync_runs.c.kind == "incremental", sync_runs.c.ok == sa.true())).one()
    return {
        "transactions": len(committed), "visible": len(lags), "missing": len(committed) - len(lags),
        "rows_written": written_rows, "rows_written_per_s": round(written_rows / elapsed, 1),
        "write_seconds": round(elapsed, 1), "rows_applied": int(rows[0] or 0),
        "rows_applied_per_s": round(int(rows[0] or 0) / elapsed, 1), "syncs": int(rows[1]),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p95_s": round(percentile(lags, 0.95), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
    }


def add_idle_venues(ctx: Context, count: int, spread: bool = False) -> None:
    """Copies of v1 (same database, same feed), each with its own position; v1 back to 60 s.
    With `spread`, their first due times are spread evenly over the 60 s interval."""
    position = incremental.feed_for(incremental.get_venue(ctx.control, "v1")).position()
    with ctx.control.begin() as conn:
        row = dict(conn.execute(sa.select(venues).where(venues.c.id == "v1")).one()._mapping)
        conn.execute(venues.update().where(venues.c.id == "v1").values(sync_interval_s=60))
        row["sync_interval_s"] = 60
        conn.execute(venues.insert(), [{**row, "id": f"idle{i:03d}", "name": f"idle {i}"} for i in range(1, count)])
    for i in range(1, count):
        incremental.save_position(ctx.control, f"idle{i:03d}", "changelog", position)
    incremental.save_position(ctx.control, "v1", "changelog", position)
    if spread:  # the dispatcher adds venues it does not know yet as due now (ZADD NX): these keep theirs
        now = time.time()
        ids = ["v1", *(f"idle{i:03d}" for i in range(1, count))]
        ctx.redis.zadd(scheduling.DUE_KEY, {v: now + 60 * i / count for i, v in enumerate(ids)})


def measure_idle(ctx: Context, procs: dict[str, psutil.Process], warmup_s: float, window_s: float) -> dict[str, Any]:
    time.sleep(warmup_s)
    t0 = time.monotonic()
    before = {name: cpu_s(p) for name, p in procs.items()}
    since = incremental.utcnow()
    time.sleep(window_s)
    spent = {name: cpu_s(p) - before[name] for name, p in procs.items()}
    wall = time.monotonic() - t0
    with ctx.control.connect() as conn:
        visited = conn.execute(sa.select(sa.func.count(sa.distinct(sync_runs.c.venue_id)), sa.func.count()).where(
            sync_runs.c.kind == "incremental", sync_runs.c.started_at >= since)).one()
    out = {f"{name}_cpu_pct_of_one_core": round(100 * s / wall, 2) for name, s in spent.items()}
    out["total_cpu_pct_of_one_core"] = round(100 * sum(spent.values()) / wall, 2)
    out.update({"window_s": round(wall, 1), "venues_visited": int(visited[0]), "syncs": int(visited[1])})
    # normalised to the steady state the goal is about: every venue once per 60 s interval
    per_sync_ms = 1000 * sum(spent.values()) / max(int(visited[1]), 1)
    out["worker_cpu_ms_per_sync"] = round(1000 * spent["workers"] / max(int(visited[1]), 1), 2)
    out["steady_cpu_pct_of_one_core"] = round(100 * (per_sync_ms / 1000) * int(visited[0]) / 60, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.incremental_lag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30, help="write-load duration for the lag figure")
    p.add_argument("--rate", type=float, default=200, help="changed rows per second written at the source")
    p.add_argument("--venues", type=int, default=500, help="venues configured for the idle figure")
    p.add_argument("--idle-seconds", type=float, default=120, help="idle measurement window (two intervals)")
    p.add_argument("--spread", action="store_true",
                   help="spread the idle venues' due times over the minute instead of all due at once")
    p.add_argument("--max-tasks-per-child", type=int, default=None,
                   help="override the worker's max tasks per pool process (default: worker/config.py)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = Options(pg_url=os.environ.get("BENCH_PG_URL", Options.pg_url),
                   redis_url=os.environ.get("BENCH_REDIS_URL", Options.redis_url))
    dbs = Databases(opts)
    procs: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="cs-bench-inc-") as tmp, spare_redis_db(opts.redis_url) as redis_url:
        try:
            src, cloud, control = dbs.postgres("src"), dbs.postgres("cloud"), dbs.postgres("ctl")
            settings = load_settings(environ={}, home=str(Path(tmp) / "home"), redis_url=redis_url,
                                     control_url=control, cloud_url=cloud, dispatch_interval_ms=1000)
            ctx = Context.from_settings(settings)
            print("setting up: demo venue (20,000 rows), changelog, full resync …", flush=True)
            create_demo_venue(src, rows=20_000)
            add_venue(ctx.control, "v1", src)
            incremental.install_changelog(ctx, "v1")
            incremental.configure_feed(ctx, "v1", "changelog", interval_s=1)
            run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
            env = process_env(settings, redis_url)
            logs = Path(tmp) / "logs"
            cmd = worker_command("bench-inc", concurrency=2, loglevel="WARNING")
            if a.max_tasks_per_child:
                cmd += ["--max-tasks-per-child", str(a.max_tasks_per_child)]
            worker = start(cmd, env, logs / "worker.log")
            procs.append(worker)
            wait_for_workers(redis_url, 1, timeout_s=120)
            beat = start(beat_command("WARNING"), env, logs / "beat.log")
            procs.append(beat)
            print(f"1. lag: {a.rate:.0f} changed rows/s for {a.seconds:.0f}s, dispatch every 1s …", flush=True)
            lag = measure_lag(ctx, src, a.seconds, a.rate)
            print(f"2. idle: {a.venues} venues, nothing changing, {a.idle_seconds:.0f}s window …", flush=True)
            add_idle_venues(ctx, a.venues, spread=a.spread)
            idle = measure_idle(ctx, {"beat": psutil.Process(beat.pid), "workers": psutil.Process(worker.pid)},
                                warmup_s=20, window_s=a.idle_seconds)
        finally:
            for proc in procs:
                stop(proc)
            dbs.drop_all()
    result = {"lag": lag, "idle": idle, "cpus": os.cpu_count(), "max_tasks_per_child": a.max_tasks_per_child,
              "spread": a.spread}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "incremental_lag.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"lag (source commit → cloud visible), {lag['transactions']} transactions, "
          f"{lag['rows_written_per_s']} changed rows/s written, {lag['syncs']} syncs:")
    print(f"  p50 {lag['lag_p50_s']} s   p95 {lag['lag_p95_s']} s   max {lag['lag_max_s']} s   "
          f"missing {lag['missing']}")
    print(f"idle, {a.venues} venues{' (due times spread)' if a.spread else ''}, {idle['syncs']} syncs of "
          f"{idle['venues_visited']} venues in {idle['window_s']} s:")
    print(f"  beat {idle['beat_cpu_pct_of_one_core']}% of one core   "
          f"workers {idle['workers_cpu_pct_of_one_core']}%   total {idle['total_cpu_pct_of_one_core']}%")
    print(f"  {idle['worker_cpu_ms_per_sync']} ms worker CPU per idle sync; every venue once a minute: "
          f"{idle['steady_cpu_pct_of_one_core']}% of one core")


if __name__ == "__main__":
    main()
