"""Full-resync benchmark: cloudsync against the machine's limit (a COPY pipe) and a peer (dlt), same data.

One run builds a PostgreSQL venue with the demo POS schema, then measures on it:

1. `copy_pipe`: `COPY … TO STDOUT` piped into `COPY … FROM STDIN` (psycopg copy streams, binary), one
   table after another into an empty copy of the schema: what the machine can move at best;
2. `dlt`: dlt's `sql_database` source with the pyarrow backend into PostgreSQL;
3. `cloudsync_empty` / `cloudsync_populated`: a full resync with real Celery worker processes into an
   empty cloud database, then again into the fully populated one (everything is an update);
4. `cloudsync_odbc`: the same from MariaDB read through pyodbc (`mysql+pyodbc`, MariaDB's ODBC driver).

For cloudsync it reports the whole job (planning, copy, end-of-job verification) and the copy phase
alone (first chunk start to last chunk end), the peak resident memory of each worker process, and the
orchestration cost per chunk: a chunk task's run time outside `duration_s` (the engine's read+write
time) plus the idle gap before the worker's next chunk, from the workers' own logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import sqlalchemy as sa
from psycopg import sql

from bench.data import build_postgres_venue, copy_to_mariadb, psycopg_dsn, sizes_for
from cloudsync.demo.venue import metadata as demo_metadata
from tests.helpers import spare_redis_db

log = logging.getLogger("bench")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Options:
    lines: int = 1_000_000
    workers: int = 2
    chunk_rows: int | None = None
    batch_rows: int | None = None
    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    mysql_url: str = "mysql+pymysql://root@127.0.0.1:3306/mysql"
    odbc_driver: str = "MariaDB Unicode"
    redis_url: str = "redis://127.0.0.1:6379"
    only: set[str] = field(default_factory=lambda: {"copy", "dlt", "cloudsync", "odbc"})
    keep: bool = False


# -- services ---------------------------------------------------------------------------------------

class Databases:
    """Databases created for this run on the PostgreSQL and MariaDB servers, all dropped at the end."""

    def __init__(self, opts: Options) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.pg = sa.make_url(opts.pg_url)
        self.my = sa.make_url(opts.mysql_url)
        self.made: list[tuple[sa.URL, str]] = []

    def _create(self, base: sa.URL, role: str) -> str:
        name = f"cs_bench_{role}_{self.tag}"
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))  # our own generated name
        finally:
            engine.dispose()
        self.made.append((base, name))
        return base.set(database=name).render_as_string(hide_password=False)

    def postgres(self, role: str) -> str:
        return self._create(self.pg, role)

    def mariadb(self, role: str) -> str:
        return self._create(self.my, role)

    def drop_all(self) -> None:
        for base, name in reversed(self.made):
            engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    force = " WITH (FORCE)" if base.get_backend_name() == "postgresql" else ""
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
            except sa.exc.SQLAlchemyError as err:
                log.warning("could not drop %s: %s", name, err)
            finally:
                engine.dispose()


# -- 1. the COPY pipe ---------------------------------------------------------------------------------

def copy_pipe(src_url: str, dst_url: str) -> dict[str, Any]:
    """Binary COPY out of the source piped into COPY into an empty copy of the schema, table by table."""
    engine = sa.create_engine(dst_url)
    try:
        with engine.begin() as conn:
            demo_metadata.create_all(conn)
    finally:
        engine.dispose()
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(psycopg_dsn(src_url)) as src, psycopg.connect(psycopg_dsn(dst_url)) as dst:
        for table in demo_metadata.sorted_tables:
            ident = sql.Identifier(table.name)
            with src.cursor().copy(sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(ident)) as out, \
                    dst.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(ident)) as into:
                for block in out:
                    into.write(block)
            rows += dst.cursor().execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
        dst.commit()
    return {"rows": rows, "seconds": time.perf_counter() - started}


# -- 2. dlt ---------------------------------------------------------------------------------------------

def dlt_load(src_url: str, dst_url: str, workdir: Path) -> dict[str, Any]:
    """dlt's `sql_database` source (pyarrow backend) into PostgreSQL, in a process of its own."""
    out = workdir / "dlt.json"
    code = (
        "import json, sys, time\n"
        "import dlt\n"
        "from dlt.sources.sql_database import sql_database\n"
        "src, dst, pdir, out = sys.argv[1:5]\n"
        "t0 = time.perf_counter()\n"
        "p = dlt.pipeline(pipeline_name='cs_bench', pipelines_dir=pdir, dataset_name='bench',\n"
        "                 destination=dlt.destinations.postgres(credentials=dst))\n"
        "source = sql_database(credentials=src, backend='pyarrow')\n"
        "# dlt loads arrow into PostgreSQL as CSV (COPY), which refuses binary columns: those go as INSERTs\n"
        "source.products.apply_hints(file_format='insert_values')\n"
        "info = p.run(source)\n"
        "t1 = time.perf_counter()\n"
        "rows = sum(v for k, v in p.last_trace.last_normalize_info.row_counts.items() if not k.startswith('_dlt'))\n"
        "json.dump({'seconds': t1 - t0, 'rows': rows}, open(out, 'w'))\n"
    )
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "WARNING"}
    # dlt insists on a password; a trust-authenticated server ignores it
    u = sa.make_url(dst_url)
    pg_dst = u.set(drivername="postgresql", password=u.password or "unused").render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-c", code, src_url, pg_dst, str(workdir / "dlt"), str(out)], env=env,
                   check=True)
    return json.loads(out.read_text())


# -- 3./4. cloudsync ------------------------------------------------------------------------------------

@dataclass
class Cloudsync:
    """A control database, a cloud database, Redis and real worker processes for the run."""

    home: Path
    control_url: str
    cloud_url: str
    redis_url: str
    opts: Options
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        from cloudsync.context import Context
        from cloudsync.processes import process_env, start, worker_command
        from cloudsync.settings import load_settings

        overrides: dict[str, Any] = {"home": str(self.home), "redis_url": self.redis_url,
                                     "control_url": self.control_url, "cloud_url": self.cloud_url,
                                     "log_level": "INFO"}
        if self.opts.chunk_rows:
            overrides["chunk_rows"] = self.opts.chunk_rows
        if self.opts.batch_rows:
            overrides["read_batch_rows"] = self.opts.batch_rows
        self.settings = load_settings(environ={}, **overrides)
        env = process_env(self.settings, self.redis_url)
        os.environ.update({k: v for k, v in env.items() if k.startswith("CLOUDSYNC_")})  # this process's Celery app
        self.ctx = Context.from_settings(self.settings)
        for i in range(self.opts.workers):
            log_file = self.home / "logs" / f"w{i + 1}.log"
            self.logs.append(log_file)
            self.procs.append(start(worker_command(f"bench{i + 1}", concurrency=1), env, log_file))
        from worker.health import wait_for_workers

        wait_for_workers(self.redis_url, len(self.procs), timeout_s=120)

    def stop(self) -> None:
        from cloudsync.processes import stop

        for proc in self.procs:
            stop(proc)

    def peak_rss_mb(self) -> list[dict[str, Any]]:
        """VmHWM (peak resident set) of each worker's main process and of its pool processes."""
        out = []
        for i, proc in enumerate(self.procs):
            main = psutil.Process(proc.pid)
            pool = [c for c in main.children(recursive=True)]
            out.append({"worker": f"bench{i + 1}", "main_mb": _vmhwm_mb(main.pid),
                        "pool_mb": [_vmhwm_mb(c.pid) for c in pool]})
        return out

    def empty_cloud(self) -> None:
        """Drop the cloud tables: the next job creates them from its own source's reflected types."""
        engine = sa.create_engine(self.cloud_url)
        try:
            with engine.begin() as conn:
                existing = sa.MetaData()
                existing.reflect(conn)
                existing.drop_all(conn)
        finally:
            engine.dispose()

    def resync(self, venue_id: str, source_dsn: str, timeout_s: float = 7200) -> dict[str, Any]:
        from cloudsync import resync
        from cloudsync.control.venues import add_venue
        from cloudsync.job_watch import wait_for_job
        from worker.dispatch import CeleryDispatcher

        add_venue(self.ctx.control, venue_id, source_dsn, replace=True)
        started = time.perf_counter()
        job_id = resync.request_full_resync(self.ctx, venue_id, requested_by="bench")
        CeleryDispatcher(self.ctx).plan_job(job_id)
        job = wait_for_job(self.ctx, job_id, timeout_s=timeout_s)  # as the CLI waits: woken by the job's end
        if job.active:
            raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s}s")
        wall_s = time.perf_counter() - started
        if job.state != "done" or not (job.verification or {}).get("match"):
            raise RuntimeError(f"job {job_id} ended {job.state}: {job.error} {job.verification}")
        return {"job_id": job_id, "wall_s": wall_s, **self._chunk_figures(job_id, job)}

    def _chunk_figures(self, job_id: int, job: Any) -> dict[str, Any]:
        from cloudsync.control.schema import chunks

        with self.ctx.control.connect() as conn:
            rows = conn.execute(sa.select(chunks.c.id, chunks.c.rows_read, chunks.c.started_at, chunks.c.finished_at,
                                          chunks.c.duration_s).where(chunks.c.job_id == job_id)).all()
        first = min(r.started_at for r in rows)
        last = max(r.finished_at for r in rows)
        copy_s = (last - first).total_seconds()
        duration = {r.id: r.duration_s for r in rows}
        orchestration = self._orchestration_ms(job_id, duration)
        return {
            "rows": int(sum(r.rows_read for r in rows)),
            "chunks": len(rows),
            "copy_s": copy_s,
            "verify_s": (job.finished_at - last).total_seconds() if job.finished_at else None,
            "chunk_duration_s_sum": sum(duration.values()),
            "chunk_duration_s_mean": statistics.fmean(duration.values()),
            "orchestration_ms_per_chunk": orchestration,
        }

    _SUCCEEDED = re.compile(r"^\[(?P<ts>[\d-]+ [\d:,]+): INFO/[^\]]+\] Task cloudsync\.resync\.chunk\[[^\]]+\] "
                            r"succeeded in (?P<run>[\d.e-]+)s: (?P<result>\{.*\})$")

    def _orchestration_ms(self, job_id: int, duration: dict[int, float]) -> dict[str, float] | None:
        """Per chunk: task run time outside the engine's read+write, and the worker's idle gap after it."""
        inside, gaps = [], []
        for path in self.logs:
            spans = []
            for line in path.read_text(errors="replace").splitlines():
                m = self._SUCCEEDED.match(line)
                if not m:
                    continue
                result = m["result"]
                jm, cm = re.search(r"'job': (\d+)", result), re.search(r"'chunk': (\d+)", result)
                if not jm or not cm or int(jm[1]) != job_id or int(cm[1]) not in duration:
                    continue
                end = dt.datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                run = float(m["run"])
                spans.append((end - run, end))
                inside.append(run - duration[int(cm[1])])
            spans.sort()
            gaps += [max(b[0] - a[1], 0.0) for a, b in zip(spans, spans[1:], strict=False)]
        if not inside:
            return None
        in_task = statistics.fmean(inside) * 1000
        between = (sum(gaps) / len(inside)) * 1000
        # the mean carries each worker process's first chunk of each table (reflection, connections);
        # the median is the steady cost of one more chunk
        in_task_median = statistics.median(inside) * 1000
        between_median = statistics.median(gaps) * 1000 if gaps else 0.0
        return {"in_task_ms": in_task, "between_tasks_ms": between, "total_ms": in_task + between,
                "in_task_ms_median": in_task_median, "between_tasks_ms_median": between_median,
                "total_ms_median": in_task_median + between_median}


def _vmhwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# -- the run ----------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(),
                            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                            "python": platform.python_version(), "os": platform.platform(),
                            "load_avg_at_start": os.getloadavg()}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def _timed(label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"… {label}", flush=True)
    result = fn()
    secs = result.get("copy_s") or result.get("seconds") or result["wall_s"]
    print(f"  {label}: {result['rows']:,} rows in {secs:.1f}s", flush=True)
    return result


class _Sampler(threading.Thread):
    """Samples the machine's load while a measurement runs (other work on the box skews results)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.samples.append(os.getloadavg()[0])


def run(opts: Options) -> dict[str, Any]:
    dbs = Databases(opts)
    results: dict[str, Any] = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "lines": opts.lines, "sizes": sizes_for(opts.lines),
                               "runs": {}}
    sampler = _Sampler()
    sampler.start()
    try:
        src = dbs.postgres("src")
        t0 = time.perf_counter()
        build_postgres_venue(src, opts.lines)
        results["build_s"] = time.perf_counter() - t0
        print(f"venue built: {sum(results['sizes'].values()):,} rows ({opts.lines:,} transaction lines) "
              f"in {results['build_s']:.1f}s", flush=True)
        runs = results["runs"]
        if "copy" in opts.only:
            runs["copy_pipe"] = _timed("COPY pipe", lambda: copy_pipe(src, dbs.postgres("copy")))
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
            if "dlt" in opts.only:
                runs["dlt"] = _timed("dlt (pyarrow)", lambda: dlt_load(src, dbs.postgres("dlt"), Path(tmp)))
            if {"cloudsync", "odbc"} & opts.only:
                _cloudsync_runs(opts, dbs, src, Path(tmp), runs)
    finally:
        sampler.stopped.set()
        if not opts.keep:
            dbs.drop_all()
    results["load_avg_during"] = round(statistics.fmean(sampler.samples), 2) if sampler.samples else None
    results["ratios"] = ratios(results["runs"])
    return results


def _cloudsync_runs(opts: Options, dbs: Databases, src: str, tmp: Path, runs: dict[str, Any]) -> None:
    with spare_redis_db(opts.redis_url) as redis_url:
        cs = Cloudsync(tmp / "home", dbs.postgres("ctl"), dbs.postgres("cloud"), redis_url, opts)
        try:
            cs.start()
            if "cloudsync" in opts.only:
                runs["cloudsync_empty"] = _timed("cloudsync → empty target", lambda: cs.resync("bench_pg", src))
                runs["cloudsync_empty"]["peak_rss_mb"] = cs.peak_rss_mb()
                runs["cloudsync_populated"] = _timed("cloudsync → populated target",
                                                     lambda: cs.resync("bench_pg", src))
                runs["cloudsync_populated"]["peak_rss_mb"] = cs.peak_rss_mb()
            if "odbc" in opts.only:
                my = dbs.mariadb("src")
                t0 = time.perf_counter()
                copy_to_mariadb(src, my)
                print(f"MariaDB copy loaded in {time.perf_counter() - t0:.1f}s", flush=True)
                u = sa.make_url(my)
                odbc = (f"mysql+pyodbc://{u.username}@{u.host}:{u.port or 3306}/{u.database}"
                        f"?driver={opts.odbc_driver.replace(' ', '+')}&charset=utf8mb4")
                cs.empty_cloud()
                runs["cloudsync_odbc"] = _timed("cloudsync (pyodbc/MariaDB) → empty target",
                                                lambda: cs.resync("bench_odbc", odbc))
                runs["cloudsync_odbc"]["peak_rss_mb"] = cs.peak_rss_mb()
        finally:
            cs.stop()


def rate(run: dict[str, Any] | None, phase: str = "whole") -> float | None:
    if not run:
        return None
    secs = run.get("seconds") or (run["copy_s"] if phase == "copy" else run["wall_s"])
    return run["rows"] / secs if secs else None


def ratios(runs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    copy, dlt = rate(runs.get("copy_pipe")), rate(runs.get("dlt"))
    for name in ("cloudsync_empty", "cloudsync_populated", "cloudsync_odbc"):
        for phase in ("whole", "copy"):
            r = rate(runs.get(name), phase)
            if r is None:
                continue
            if copy:
                out[f"{name}/{phase}/copy_pipe"] = round(r / copy, 3)
            if dlt:
                out[f"{name}/{phase}/dlt"] = round(r / dlt, 2)
    return out


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (what the README shows)."""
    runs = results["runs"]
    copy, dlt = rate(runs.get("copy_pipe")), rate(runs.get("dlt"))
    lines = ["| run | rows | seconds | rows/s | × COPY | × dlt | peak worker RSS MB | orchestration ms/chunk |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def row(label: str, rows: int, secs: float, extra: dict[str, Any] | None = None) -> None:
        r = rows / secs
        rss = orch = ""
        if extra:
            pools = [m for w in extra.get("peak_rss_mb", []) for m in w["pool_mb"] if m]
            rss = " / ".join(f"{m:.0f}" for m in pools)
            o = extra.get("orchestration_ms_per_chunk")
            orch = f"{o['total_ms']:.1f} (median {o.get('total_ms_median', 0):.1f})" if o else ""
        lines.append(f"| {label} | {rows:,} | {secs:.1f} | {r:,.0f} | {r / copy:.2f} | " if copy else
                     f"| {label} | {rows:,} | {secs:.1f} | {r:,.0f} | – | ")
        lines[-1] += (f"{r / dlt:.2f} | " if dlt else "– | ") + f"{rss} | {orch} |"

    if "copy_pipe" in runs:
        row("COPY pipe (binary, psycopg)", runs["copy_pipe"]["rows"], runs["copy_pipe"]["seconds"])
    if "dlt" in runs:
        row("dlt sql_database (pyarrow)", runs["dlt"]["rows"], runs["dlt"]["seconds"])
    labels = {"cloudsync_empty": "cloudsync → empty", "cloudsync_populated": "cloudsync → populated",
              "cloudsync_odbc": "cloudsync pyodbc (MariaDB) → empty"}
    for name, label in labels.items():
        run_ = runs.get(name)
        if not run_:
            continue
        row(f"{label}: copy phase ({run_['chunks']} chunks)", run_["rows"], run_["copy_s"], run_)
        row(f"{label}: whole job incl. plan + verify", run_["rows"], run_["wall_s"])
    return "\n".join(lines)


def main(opts: Options) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run(opts)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(table(results))
    print()
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; load average during run "
          f"{results['load_avg_during']}")
    for key, value in results["ratios"].items():
        print(f"  {key}: {value}")
    print(f"results: {path}")
    return 0
