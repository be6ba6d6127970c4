"""Verify + repair against a full resync of the same venue, in the same run (PostgreSQL → PostgreSQL).

    .venv/bin/python -m bench.verify_repair                 # 1,000,000 rows, 2 worker processes

A one-table venue of 1,000,000 rows (bigint key, text with unicode, exact decimal, zoned timestamp,
binary, boolean, NULLs) is built inside PostgreSQL. With real Celery worker processes and Redis:

1. full resync into an empty cloud (the initial copy);
2. three ranges damaged (20 rows each: values changed in the cloud, rows lost from the cloud, rows
   deleted at the venue that the cloud still has), then a full resync into the populated cloud: the
   hours-long way to fix drift, and what verify + repair is measured against;
3. three other ranges damaged the same way, then `verify` (key-range checksums in both databases,
   narrowed to small ranges) + a repair job of only those ranges on the same workers + verify again:
   the same steps `cloudsync verify VENUE --repair` takes.

Before each measured step (2 and 3) both databases are vacuumed and checkpointed: drift is found at
night, not seconds after a bulk load whose autovacuum and unwritten pages would compete for the CPU.

Prints each time and the ratio (goal: verify + repair under 15% of the full resync), where the repair
job's time went (creating, planning and dispatching it; Celery delivery to its first chunk; its
chunks; closing it), and writes them to bench/results/verify_repair.json. Options: --rows N,
--workers N, --chunk-rows N, --keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.fullsync import RESULTS_DIR, Cloudsync, Databases, Options, machine, spare_redis_db
from cloudsync.processes import settle_heap
from tests.helpers import create_ledger

log = logging.getLogger("bench.verify_repair")

VENUE = "bench-verify"
TABLE = "ledger"
DAMAGED_ROWS = 20  # consecutive keys per damaged range
GOAL_RATIO = 0.15


def damage(source_dsn: str, cloud_dsn: str, rows: int, fractions: tuple[float, float, float]) -> list[int]:
    """Change, lose and (at the venue) delete DAMAGED_ROWS consecutive rows at three places."""
    starts = [int(rows * f) for f in fractions]
    changed, lost, gone = ((s, s + DAMAGED_ROWS - 1) for s in starts)
    cloud = sa.create_engine(cloud_dsn)
    source = sa.create_engine(source_dsn)
    try:
        with cloud.begin() as conn:
            conn.execute(sa.text("UPDATE ledger SET amount = amount + 1 WHERE venue_id = :v AND id BETWEEN :a AND :b"),
                         {"v": VENUE, "a": changed[0], "b": changed[1]})
            conn.execute(sa.text("DELETE FROM ledger WHERE venue_id = :v AND id BETWEEN :a AND :b"),
                         {"v": VENUE, "a": lost[0], "b": lost[1]})
        with source.begin() as conn:
            conn.execute(sa.text("DELETE FROM ledger WHERE id BETWEEN :a AND :b"), {"a": gone[0], "b": gone[1]})
    finally:
        cloud.dispose()
        source.dispose()
    return starts


def settle(*dsns: str) -> None:
    """Let the databases settle as drift found at night would find them: not seconds after a bulk load,
    whose autovacuum and unwritten pages would otherwise compete for the machine's two cores (and
    shared buffers) with whatever is measured next. Done before each measured step, the same way."""
    for dsn in dsns:
        engine = sa.create_engine(dsn, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("VACUUM ANALYZE ledger"))
                conn.execute(sa.text("CHECKPOINT"))
        finally:
            engine.dispose()


def verify_and_repair(cs: Cloudsync) -> dict[str, Any]:
    """What `cloudsync verify VENUE --repair --yes` does, timed step by step."""
    from cloudsync.job_watch import wait_for_job
    from cloudsync.verify.compare import record_verify, verify_venue
    from cloudsync.verify.repair import start_repair, verify_after_repair
    from worker.dispatch import CeleryDispatcher

    started = time.perf_counter()
    report = verify_venue(cs.ctx, VENUE)
    record_verify(cs.ctx, report)
    verify_s = time.perf_counter() - started
    begun = start_repair(cs.ctx, VENUE, report.diffs, CeleryDispatcher(cs.ctx), requested_by="bench")
    if begun is None:
        raise RuntimeError("verify found no drift in a damaged venue")
    dispatched_s = time.perf_counter() - started - verify_s
    job = wait_for_job(cs.ctx, begun.job_id)  # as the CLI waits: woken by the job's end
    repair_s = time.perf_counter() - started - verify_s
    if job.state != "done":
        raise RuntimeError(f"repair job {job.id} ended {job.state}: {job.error}")
    after = verify_after_repair(cs.ctx, job.id)
    total_s = time.perf_counter() - started
    if after.drift:
        raise RuntimeError(f"drift left after repair: {after.as_dict()['ranges']}")
    t = report.tables[0]
    return {"wall_s": total_s, "verify_s": verify_s, "repair_job_s": repair_s, "verify_again_s": after.elapsed_s,
            "repair_steps": repair_steps(cs, job.id, dispatched_s),
            "ranges_compared": t.ranges, "checksum_queries": t.queries, "method": t.method, "scan_s": t.scan_s,
            "differing_ranges": len(report.diffs), "rows_repaired": job.rows_done, "repair_job": job.id,
            "missing": sum(d.missing for d in report.diffs), "extra": sum(d.extra for d in report.diffs),
            "different": sum(d.different for d in report.diffs)}


def repair_steps(cs: Cloudsync, job_id: int, dispatched_s: float) -> dict[str, float]:
    """Where the repair job's time went: creating and planning it (in this process), then from its start
    to its first chunk, its chunks (first start to last end), and closing it after its last chunk."""
    from cloudsync.control import jobs as jobrepo
    from cloudsync.control.schema import chunks

    job = jobrepo.get_job(cs.ctx.control, job_id)
    with cs.ctx.control.connect() as conn:
        first, last, busy = conn.execute(sa.select(sa.func.min(chunks.c.started_at), sa.func.max(chunks.c.finished_at),
                                                   sa.func.sum(chunks.c.duration_s))
                                         .where(chunks.c.job_id == job_id)).one()
    started, finished = job.started_at or job.created_at, job.finished_at or last
    return {"create_plan_dispatch_s": round(dispatched_s, 3),
            "to_first_chunk_s": round((first - started).total_seconds(), 3),
            "chunks_s": round((last - first).total_seconds(), 3), "chunk_work_s": round(float(busy or 0), 3),
            "finish_s": round((finished - last).total_seconds(), 3)}


def run(rows: int, opts: Options, repeat: int = 3) -> dict[str, Any]:
    dbs = Databases(opts)
    try:
        source = dbs.postgres("vsrc")
        t0 = time.perf_counter()
        create_ledger(source, rows)
        log.info("venue of %s rows built in %.1fs", f"{rows:,}", time.perf_counter() - t0)
        with spare_redis_db(opts.redis_url) as redis_url, tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
            cs = Cloudsync(Path(tmp) / "home", dbs.postgres("vctl"), dbs.postgres("vcloud"), redis_url, opts)
            cs.start()
            try:
                initial = cs.resync(VENUE, source)
                log.info("full resync into an empty cloud: %.1fs", initial["wall_s"])
                fulls, repairs = [], []
                for _ in range(repeat):  # the same damage each time: the full resync repairs it
                    damage(source, cs.cloud_url, rows, (0.2, 0.5, 0.8))
                    settle(source, cs.cloud_url)
                    fulls.append(cs.resync(VENUE, source))
                    log.info("full resync into the damaged cloud: %.1fs", fulls[-1]["wall_s"])
                for i in range(repeat):  # fresh damage each time, elsewhere
                    starts = damage(source, cs.cloud_url, rows, tuple(f + 0.03 * i for f in (0.15, 0.45, 0.75)))
                    settle(source, cs.cloud_url)
                    repairs.append(verify_and_repair(cs))
                    log.info("verify + repair: %.2fs", repairs[-1]["wall_s"])
            finally:
                cs.stop()
    finally:
        if not opts.keep:
            dbs.drop_all()
    full_s = statistics.median(f["wall_s"] for f in fulls)
    repaired = sorted(repairs, key=lambda r: r["wall_s"])[len(repairs) // 2]  # the median run, all its figures
    return {
        "benchmark": "verify_repair", "rows": rows, "workers": opts.workers, "damaged_ranges": 3,
        "damaged_rows_per_range": DAMAGED_ROWS, "damaged_at": starts, "machine": machine(), "repeat": repeat,
        "full_resync_empty_s": initial["wall_s"], "full_resync_s": full_s,
        "full_resync_runs_s": [round(f["wall_s"], 3) for f in fulls],
        "verify_repair_runs_s": [round(r["wall_s"], 3) for r in repairs], "verify_repair": repaired,
        "ratio": repaired["wall_s"] / full_s, "ratio_vs_empty": repaired["wall_s"] / initial["wall_s"],
        "goal_ratio": GOAL_RATIO,
    }


def report(result: dict[str, Any]) -> str:
    vr = result["verify_repair"]
    ok = result["ratio"] < GOAL_RATIO
    return "\n".join([
        f"verify + repair vs full resync, {result['rows']:,} rows, 3 damaged ranges, {result['workers']} workers",
        f"  full resync (empty cloud)        {result['full_resync_empty_s']:8.2f} s",
        f"  full resync (fixes the damage)   {result['full_resync_s']:8.2f} s   (median of "
        f"{', '.join(f'{x:.2f}' for x in result['full_resync_runs_s'])})",
        f"  verify + repair                  {vr['wall_s']:8.2f} s   (median of "
        f"{', '.join(f'{x:.2f}' for x in result['verify_repair_runs_s'])}; the median run: "
        f"verify {vr['verify_s']:.2f} s over "
        f"{vr['ranges_compared']} ranges, {vr['checksum_queries']} checksum queries [{vr['method']}]; repair job "
        f"{vr['repair_job_s']:.2f} s for {vr['differing_ranges']} ranges / {vr['rows_repaired']} rows; "
        f"verify again {vr['verify_again_s']:.2f} s)",
        f"  of which the top-level pass (every row hashed in both databases, nothing narrowed or repaired yet) "
        f"{vr['scan_s']:.2f} s = {vr['scan_s'] / result['full_resync_s']:.1%} of the full resync",
        f"  repair job steps: {', '.join(f'{k} {v:.3f}' for k, v in vr['repair_steps'].items())}",
        f"  found: {vr['missing']} missing, {vr['extra']} extra, {vr['different']} different rows",
        f"  ratio verify+repair / full resync = {result['ratio']:.1%}  (vs empty-cloud resync "
        f"{result['ratio_vs_empty']:.1%}); goal < {GOAL_RATIO:.0%}: {'met' if ok else 'NOT met'}",
    ])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.verify_repair", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3, help="runs of each measured step (the median is compared)")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("cloudsync").setLevel(logging.WARNING)
    opts = Options(workers=a.workers, chunk_rows=a.chunk_rows, keep=a.keep)
    settle_heap()  # as every cloudsync process does once it has started (`cloudsync verify` included)
    result = run(a.rows, opts, max(a.repeat, 1))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "verify_repair.json").write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
