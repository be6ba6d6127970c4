"""`cloudsync logs VENUE`: one archive of a venue's job events, chunk records and worker log lines.

The archive (zip, or tar.gz when the file name ends so) holds:

    MANIFEST.txt         venue, period, line counts, whether anything was cut to fit `max_bytes`
    job_events.log       the venue's lines from the `job_events` table
    jobs.jsonl           the venue's jobs touched in the period
    chunks.csv           chunk records of those jobs (table, key range, state, rows, error)
    sync_runs.jsonl      the venue's sync runs in the period
    worker.log           lines of HOME/logs/cloudsync-worker.log* that carry `venue=<id>`

Only that venue's lines go in: worker lines match the exact token `venue=<id>` (so `v1` never picks
up `v10`). When the content exceeds `max_bytes` the oldest worker lines, then the oldest events, are
left out, and the manifest says how many.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cloudsync.context import Context
from cloudsync.control.schema import chunks, job_events, jobs, sync_runs
from cloudsync.control.store import as_utc, utcnow
from cloudsync.control.venues import get_venue
from cloudsync.errors import TerminalError
from cloudsync.keys import decode_key, format_key

WORKER_LOG_GLOB = "cloudsync-worker.log*"
_ISO_AT_START = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?Z\s")


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    members: dict[str, int]  # member name → lines in it
    bytes_uncompressed: int
    lines_dropped: int


def venue_token(venue_id: str) -> re.Pattern[str]:
    """Matches `venue=<id>` as a whole token in a log line."""
    return re.compile(rf"(?<![\w.-])venue={re.escape(venue_id)}(?![\w.-])")


def _line_time(line: str) -> dt.datetime | None:
    m = _ISO_AT_START.match(line)
    return dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.UTC) if m else None


def worker_lines(log_dir: Path, venue_id: str, since: dt.datetime) -> list[str]:
    """Lines of the worker log files (oldest file first) about the venue, from `since` on.

    A line without a time of its own (a traceback's continuation) belongs to the line before it.
    """
    token = venue_token(venue_id)
    files = sorted(log_dir.glob(WORKER_LOG_GLOB), key=lambda p: p.stat().st_mtime) if log_dir.is_dir() else []
    out: list[str] = []
    for path in files:
        keep = False
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                at = _line_time(line)
                if at is not None:
                    keep = at >= since and bool(token.search(line))
                if keep:
                    out.append(line.rstrip("\n"))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat()  # type: ignore[union-attr]
    return value


def _iso(value: dt.datetime | None) -> str:
    return as_utc(value).isoformat() if value else ""  # type: ignore[union-attr]


def _control_members(ctx: Context, venue_id: str, since: dt.datetime) -> dict[str, list[str]]:
    e, j, c, r = job_events.c, jobs.c, chunks.c, sync_runs.c
    with ctx.control.connect() as conn:
        events = [f"{_iso(row.at)} {row.level} venue={row.venue_id} job={row.job_id or '-'} "
                  f"chunk={row.chunk_id or '-'} {row.message}"
                  for row in conn.execute(sa.select(job_events).where(e.venue_id == venue_id, e.at >= since)
                                          .order_by(e.at, e.id))]
        job_rows = [dict(row._mapping) for row in conn.execute(
            sa.select(jobs).where(j.venue_id == venue_id, j.updated_at >= since).order_by(j.id))]
        job_ids = [row["id"] for row in job_rows]
        chunk_rows = list(conn.execute(sa.select(chunks).where(c.job_id.in_(job_ids)).order_by(c.id))) \
            if job_ids else []
        runs = [dict(row._mapping) for row in conn.execute(
            sa.select(sync_runs).where(r.venue_id == venue_id, r.finished_at >= since).order_by(r.id))]
    for row in job_rows:
        row.pop("grant", None)  # a signed grant is a credential, not a log
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["venue", "job", "chunk", "table", "lo", "hi", "state", "rows_read", "rows_written",
                     "rows_deleted", "attempts", "deliveries", "started_at", "finished_at", "duration_s", "error"])
    for ch in chunk_rows:
        writer.writerow([venue_id, ch.job_id, ch.id, ch.table_name, format_key(decode_key(ch.lo)),
                         format_key(decode_key(ch.hi)), ch.state, ch.rows_read, ch.rows_written, ch.rows_deleted,
                         ch.attempts, ch.deliveries, _iso(ch.started_at), _iso(ch.finished_at),
                         ch.duration_s if ch.duration_s is not None else "", ch.error or ""])
    return {
        "job_events.log": events,
        "jobs.jsonl": [json.dumps({k: _jsonable(v) for k, v in row.items()}, default=str) for row in job_rows],
        "chunks.csv": buffer.getvalue().splitlines(),
        "sync_runs.jsonl": [json.dumps({k: _jsonable(v) for k, v in row.items()}, default=str) for row in runs],
    }


def _fit(members: dict[str, list[str]], max_bytes: int) -> int:
    """Drop the oldest lines, worker log first, until everything fits. Returns lines dropped."""
    size = sum(len(line.encode()) + 1 for lines in members.values() for line in lines)
    dropped = 0
    for name in ("worker.log", "job_events.log", "chunks.csv", "sync_runs.jsonl", "jobs.jsonl"):
        lines = members[name]
        header = 1 if name == "chunks.csv" else 0
        cut = header
        while size > max_bytes and cut < len(lines):
            size -= len(lines[cut].encode()) + 1
            cut += 1
        dropped += cut - header
        members[name] = lines[:header] + lines[cut:]
    return dropped


def _write(path: Path, members: dict[str, bytes]) -> None:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                info.mtime = int(utcnow().timestamp())
                tar.addfile(info, io.BytesIO(data))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(member, data)
    else:
        raise TerminalError(f"archive name {path.name!r} must end with .zip, .tar.gz or .tgz")


def collect_logs(ctx: Context, venue_id: str, since_s: float, out: str | Path,
                 max_bytes: int = 10 * 1024 * 1024) -> ArchiveResult:
    """Write the venue's logs of the last `since_s` seconds to `out` (zip or tar.gz)."""
    venue = get_venue(ctx.control, venue_id)
    path = Path(out)
    if not path.name.lower().endswith((".zip", ".tar.gz", ".tgz")):
        raise TerminalError(f"archive name {path.name!r} must end with .zip, .tar.gz or .tgz")
    now = utcnow()
    since = now - dt.timedelta(seconds=since_s)
    members = _control_members(ctx, venue.id, since)
    members["worker.log"] = worker_lines(ctx.settings.home_path / "logs", venue.id, since)
    dropped = _fit(members, max_bytes)
    counts = {name: len(lines) for name, lines in members.items()}
    manifest = [
        f"venue: {venue.id} ({venue.name})",
        f"period: {since.isoformat()} .. {now.isoformat()}",
        f"max size: {max_bytes} bytes; lines left out to fit: {dropped}",
        *(f"{name}: {n} lines" for name, n in counts.items()),
    ]
    data = {"MANIFEST.txt": _text(manifest), **{name: _text(lines) for name, lines in members.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, data)
    return ArchiveResult(path, counts, sum(len(v) for v in data.values()), dropped)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def read_archive(path: str | Path) -> Iterator[tuple[str, str]]:
    """(member name, text) of every member of an archive written by `collect_logs`."""
    path = Path(path)
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                yield name, archive.read(name).decode("utf-8")
    else:
        with tarfile.open(path, "r:gz") as tar:
            for info in tar.getmembers():
                handle = tar.extractfile(info)
                if handle is not None:
                    yield info.name, handle.read().decode("utf-8")
