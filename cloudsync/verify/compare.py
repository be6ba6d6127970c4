"""Compare a venue's tables with their cloud copies, range by range, and narrow differences down.

Each table is cut into top-level key ranges of about `DEFAULT_RANGE_ROWS` rows: a single integer key
by value between its smallest and largest key on either side (`EvenCuts`: no planning pass, and each
row's range is arithmetic), any other key at every n-th key of the venue's key index (`Source.plan`).
All top-level ranges' row counts and checksums are computed in one query per side, both sides at the
same time (`rangehash`): one pass over each table (grouped by range, or on PostgreSQL with an integer
key range by range through the key index). A range that differs is cut into `fanout`
parts (by value, or at keys chosen in the database) whose sums again take one grouped query per side,
and each part that still differs is cut again, until a part holds at most `leaf_rows` rows on either
side. There the rows' digests are compared key by key to count missing (at the venue, not in the
cloud), extra (in the cloud only) and different rows. Differing ranges are narrowed concurrently.
Only those small ranges are reported, and only they are resynced by a repair.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cloudsync.context import Context
from cloudsync.control import jobs as jobrepo
from cloudsync.control.store import utcnow
from cloudsync.control.venues import Venue, get_venue, resolve_tables
from cloudsync.keys import Key, decode_key, encode_key, format_key
from cloudsync.resync import venue_source
from cloudsync.verify import rangehash
from cloudsync.verify.rangehash import Cuts, EvenCuts, RangeSide, RangeSum, pair_hashers, source_side, target_side

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
_T = TypeVar("_T")

DEFAULT_FANOUT = 16
DEFAULT_LEAF_ROWS = 256
#: rows per top-level range unless told: small, so a differing one is compared row by row straight away
#: (all top-level ranges cost one pass per side, however many there are: 250 or 1,000 ranges of a
#: million rows measure the same)
DEFAULT_RANGE_ROWS = 1024
#: at most this many top-level ranges (one grouped query per side computes them all)
MAX_TOP_RANGES = 1024
#: integer keys: a differing range of at most this many rows is compared row by row straight away (its
#: rows' digests cost about what another round of sums over it would)
ROW_COMPARE_ROWS = 4096
#: differing ranges compared row by row in one query a side (at most ROW_BATCH × ROW_COMPARE_ROWS rows)
ROW_BATCH = 16
#: queries per side for the top-level ranges where each is summed through the key index (two databases
#: on a machine's cores: two a side keep both busy until the end, whichever side is slower)
SPLIT_QUERIES = 2
#: differing ranges narrowed at the same time (each waits on its databases, not on this process)
RANGE_THREADS = 4


@dataclass(frozen=True)
class RangeDiff:
    """A small key range (lo, hi] whose rows differ, with what differs."""

    table: str
    lo: Key | None
    hi: Key | None
    source_rows: int
    target_rows: int
    missing: int
    extra: int
    different: int

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "lo": encode_key(self.lo), "hi": encode_key(self.hi),
                "source_rows": self.source_rows, "target_rows": self.target_rows,
                "missing": self.missing, "extra": self.extra, "different": self.different}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeDiff:
        return cls(data["table"], decode_key(data["lo"]), decode_key(data["hi"]), int(data["source_rows"]),
                   int(data["target_rows"]), int(data["missing"]), int(data["extra"]), int(data["different"]))

    def describe(self) -> str:
        return f"({format_key(self.lo)}, {format_key(self.hi)}]"


@dataclass
class TableReport:
    table: str
    source_rows: int = 0
    target_rows: int = 0
    ranges: int = 0  # top-level ranges compared
    queries: int = 0  # range checksums computed (both sides together)
    method: str = ""  # how each side hashed: "sql/sql", "sql/python", …
    elapsed_s: float = 0.0
    scan_s: float = 0.0  # of which the top-level pass: every row of the table hashed on both sides
    diffs: list[RangeDiff] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.diffs)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "source_rows": self.source_rows, "target_rows": self.target_rows,
                "ranges": self.ranges, "queries": self.queries, "method": self.method,
                "elapsed_s": round(self.elapsed_s, 3), "scan_s": round(self.scan_s, 3), "drift": self.drift,
                "missing": sum(d.missing for d in self.diffs), "extra": sum(d.extra for d in self.diffs),
                "different": sum(d.different for d in self.diffs),
                "diffs": [d.as_dict() for d in self.diffs]}


@dataclass
class VerifyReport:
    venue_id: str
    started_at: Any
    tables: list[TableReport] = field(default_factory=list)
    elapsed_s: float = 0.0
    scope: str = "tables"  # "tables": whole tables; "ranges": only given key ranges (after a repair)

    @property
    def drift(self) -> bool:
        return any(t.drift for t in self.tables)

    @property
    def diffs(self) -> list[RangeDiff]:
        return [d for t in self.tables for d in t.diffs]

    def as_dict(self) -> dict[str, Any]:
        return {"venue": self.venue_id, "drift": self.drift, "scope": self.scope, "elapsed_s": round(self.elapsed_s, 3),
                "tables": [t.as_dict() for t in self.tables], "ranges": [d.as_dict() for d in self.diffs]}


@dataclass
class _Compare:
    table: str
    src: RangeSide
    dst: RangeSide
    report: TableReport
    fanout: int
    leaf_rows: int
    where: str
    pool: ThreadPoolExecutor  # runs the cloud side's query while the venue's runs in the calling thread
    row_rows: int = 0  # integer keys: ranges of at most this many rows are compared row by row at once
    extent: tuple[int, int] | None = None  # a single integer key: smallest and largest key on either side
    lock: threading.Lock = field(default_factory=threading.Lock)

    def both(self, on_source: Callable[[], _T], on_target: Callable[[], _T]) -> tuple[_T, _T]:
        """Run one query on each side at the same time (they are different databases)."""
        target = self.pool.submit(on_target)
        return on_source(), target.result()

    def sums(self, lo: Key | None, hi: Key | None, cuts: Cuts) -> list[tuple[RangeSum, RangeSum]]:
        """Both sides' checksums of (lo, b1], (b1, b2], …, (bn, hi]: one grouped query per side."""
        with self.lock:
            self.report.queries += 2
        s, t = self.both(lambda: self.src.range_sums(lo, hi, cuts), lambda: self.dst.range_sums(lo, hi, cuts))
        return list(zip(s, t, strict=True))

    def top_sums(self, cuts: Cuts, split: ThreadPoolExecutor) -> list[tuple[RangeSum, RangeSum]]:
        """Every top-level range's sums. Where both sides sum range by range through the key index, each
        side's ranges go as SPLIT_QUERIES queries at once (consecutive runs of them), so that the side
        that finishes first does not leave a core idle while the other still hashes; else one query a side.
        """
        bounds = cuts.bounds if isinstance(cuts, EvenCuts) else list(cuts)
        if not (self.src.by_index and self.dst.by_index) or len(bounds) < SPLIT_QUERIES * 8:
            return self.sums(None, None, cuts)
        edges: list[Key | None] = [None, *bounds, None]
        cut = [round((len(edges) - 1) * i / SPLIT_QUERIES) for i in range(SPLIT_QUERIES + 1)]
        runs = [(edges[a], edges[b], bounds[a:b - 1]) for a, b in zip(cut, cut[1:], strict=False)]
        with self.lock:
            self.report.queries += 2 * len(runs)
        # the cloud's first: its table is the larger (a venue column, every venue's rows), so it starts
        # ahead of the venue's queries, which each wait a few ms for this process to build them
        on_target = [self.pool.submit(self.dst.range_sums, lo, hi, inner) for lo, hi, inner in runs]
        on_source = [split.submit(self.src.range_sums, lo, hi, inner) for lo, hi, inner in runs]
        s = [x for f in on_source for x in f.result()]
        t = [x for f in on_target for x in f.result()]
        return list(zip(s, t, strict=True))

    def points(self, lo: Key | None, hi: Key | None, s: RangeSum, t: RangeSum) -> Cuts:
        """Keys cutting (lo, hi] into about `fanout` parts: by value for an integer key (no query),
        else every n-th key of the side with more rows (from its key index)."""
        if self.extent is not None:
            a = int(lo[0]) if lo is not None else self.extent[0] - 1
            b = int(hi[0]) if hi is not None else self.extent[1]
            parts = min(self.fanout, b - a)
            return EvenCuts(a + 1, b - a, parts) if parts > 1 else []
        side = self.src if s.rows >= t.rows else self.dst
        return side.split_points(lo, hi, max(s.rows, t.rows), self.fanout)

    def row_sized(self, s: RangeSum, t: RangeSum) -> bool:
        """Small enough to compare row by row at once (integer keys)."""
        return bool(self.row_rows) and max(s.rows, t.rows) <= self.row_rows

    def narrow(self, lo: Key | None, hi: Key | None, s: RangeSum, t: RangeSum) -> list[RangeDiff]:
        """`(lo, hi]` differs: cut it until the parts are small, then count row by row."""
        if self.row_sized(s, t):
            return self.rows_apart([(lo, hi)])
        if max(s.rows, t.rows) > self.leaf_rows:
            points = self.points(lo, hi, s, t)
            bounds = points.bounds if isinstance(points, EvenCuts) else points
            if bounds:
                edges = [lo, *bounds, hi]
                found: list[RangeDiff] = []
                for (a, b), (ps, pt) in zip(zip(edges, edges[1:], strict=False), self.sums(lo, hi, points),
                                            strict=True):
                    if ps != pt:
                        found += self.narrow(a, b, ps, pt)
                return found
        return [self.leaf(lo, hi, s, t)]

    def rows_apart(self, ranges: list[tuple[Key | None, Key | None]]) -> list[RangeDiff]:
        """Integer keys, ranges of at most `row_rows` rows each: compared row by row at once (one query per
        side for all of them, instead of another round of range sums), each reported as the smallest
        ranges holding its runs of differing rows, at most `leaf_rows` rows wide (so a repair copies
        little more than them)."""
        src_at, dst_at = self.both(lambda: self.src.int_digests(ranges), lambda: self.dst.int_digests(ranges))
        every = sorted(src_at.keys() | dst_at.keys())
        found: list[RangeDiff] = []
        for lo, hi in sorted(ranges, key=lambda r: (r[0] is not None, r[0] or ())):
            first = 0 if lo is None else bisect.bisect_right(every, tuple(int(v) for v in lo))
            last = len(every) if hi is None else bisect.bisect_right(every, tuple(int(v) for v in hi))
            found += self._runs(lo, every[first:last], src_at, dst_at)
        return found

    def _runs(self, lo: Key | None, keys: list[tuple[int, ...]], src_at: dict[tuple[int, ...], int],
              dst_at: dict[tuple[int, ...], int]) -> list[RangeDiff]:
        """The runs of differing rows among one range's `keys` (sorted), as ranges."""
        differing = [i for i, k in enumerate(keys) if src_at.get(k) != dst_at.get(k)]
        found: list[RangeDiff] = []
        while differing:  # runs of differing rows; a run ends at a gap of more than `fanout` equal rows
            first = differing[0]
            group = [first]
            for i in differing[1:]:
                if i - group[-1] > self.fanout or i - first >= self.leaf_rows:
                    break
                group.append(i)
            differing = differing[len(group):]
            a: Key | None = keys[first - 1] if first else lo
            b: Key = keys[group[-1]]
            inside = keys[first:group[-1] + 1]
            rows = [keys[i] for i in group]
            missing = sum(1 for k in rows if k not in dst_at)
            extra = sum(1 for k in rows if k not in src_at)
            diff = RangeDiff(self.table, a, b, sum(1 for k in inside if k in src_at),
                             sum(1 for k in inside if k in dst_at), missing, extra, len(rows) - missing - extra)
            found.append(self.found(diff))
        return found

    def leaf(self, lo: Key | None, hi: Key | None, s: RangeSum, t: RangeSum) -> RangeDiff:
        src, dst = self.both(lambda: self.src.row_digests(lo, hi), lambda: self.dst.row_digests(lo, hi))
        missing = sum(1 for k in src if k not in dst)
        extra = sum(1 for k in dst if k not in src)
        different = sum(1 for k, h in src.items() if k in dst and dst[k] != h)
        return self.found(RangeDiff(self.table, lo, hi, s.rows, t.rows, missing, extra, different))

    def found(self, diff: RangeDiff) -> RangeDiff:
        log.info("%s table=%s keys %s differ: %d missing, %d extra, %d different", self.where, self.table,
                 diff.describe(), diff.missing, diff.extra, diff.different)
        return diff


def _value_cuts(extent: tuple[int, int], rows_per_range: int) -> EvenCuts:
    """The integer keys [low, high] cut into ranges of about `rows_per_range` keys."""
    low, high = extent
    span = high - low + 1
    return EvenCuts(low, span, max(min(-(-span // max(rows_per_range, 1)), MAX_TOP_RANGES), 1))


def verify_table(ctx: Context, venue: Venue, name: str, *, chunk_rows: int | None = None,
                 fanout: int = DEFAULT_FANOUT, leaf_rows: int = DEFAULT_LEAF_ROWS,
                 progress: Progress | None = None, force_python: bool = False,
                 ranges: list[tuple[Key | None, Key | None]] | None = None) -> TableReport:
    """Compare one table of the venue with its cloud copy; the report lists the small differing ranges.

    With `ranges`, only those key ranges are compared (after a repair, the ranges it resynced).
    """
    started = time.monotonic()
    source = venue_source(venue)
    table = source.table(name)
    target = ctx.target
    cloud = target.cloud_table(table)
    report = TableReport(name)
    batch = ctx.settings.read_batch_rows
    where = f"venue={venue.id} verify"
    if not target.has_table(cloud.name):
        count = source.count(table)
        report.source_rows, report.method = count, "-"
        report.diffs.append(RangeDiff(name, None, None, count, 0, count, 0, 0))
        report.elapsed_s = time.monotonic() - started
        return report
    src = source_side(source, table, batch, force_python)
    dst = target_side(target, cloud, venue.id, [c.name for c in table.columns], batch, force_python)
    pair_hashers(src, dst)
    report.method = f"{src.method}/{dst.method}"
    with ThreadPoolExecutor(max_workers=RANGE_THREADS, thread_name_prefix="verify-cloud") as pool, \
            ThreadPoolExecutor(max_workers=RANGE_THREADS, thread_name_prefix="verify-range") as narrowing:
        work = _Compare(name, src, dst, report, max(fanout, 2), max(leaf_rows, 1), where, pool,
                        max(ROW_COMPARE_ROWS, leaf_rows) if src.integer_keys and dst.integer_keys else 0)
        if ranges is not None:  # given ranges (not adjacent): one query a side where they go through the
            pairs = list(ranges)  # key index, else each summed on its own, several at once
            if src.by_index and dst.by_index:
                report.queries += 2
                sums = list(zip(*work.both(lambda: src.sums_by_index(pairs), lambda: dst.sums_by_index(pairs)),
                                 strict=True))
            else:
                sums = list(narrowing.map(lambda r: work.sums(r[0], r[1], [])[0], pairs))
        else:
            rows_per_range = int(chunk_rows or DEFAULT_RANGE_ROWS)
            if src.integer_key and dst.integer_key:  # cut by key value: no planning pass over the key index
                extents = [e for e in work.both(src.key_extent, dst.key_extent) if e is not None]
                if extents:
                    work.extent = (min(e[0] for e in extents), max(e[1] for e in extents))
                cuts: Cuts = _value_cuts(work.extent, rows_per_range) if work.extent else []
            else:  # every n-th key from the key index, as many as one grouped query takes
                bounds = source.plan(table, rows_per_range)[1]
                n = len(src.key_columns)
                most = min(MAX_TOP_RANGES, rangehash.MAX_PARAMETERS // (n * (n + 1) // 2)) - 1
                step = max(-(-len(bounds) // max(most, 1)), 1)
                cuts = bounds[step - 1::step]  # every step-th bound: at most `most` of them
            edges: list[Key | None] = [None, *(cuts.bounds if isinstance(cuts, EvenCuts) else cuts), None]
            pairs = list(zip(edges, edges[1:], strict=False))
            scanning = time.monotonic()
            sums = work.top_sums(cuts, narrowing)
            report.scan_s = time.monotonic() - scanning
        report.ranges = len(pairs)
        report.source_rows = sum(s.rows for s, _ in sums)
        report.target_rows = sum(t.rows for _, t in sums)
        if progress:
            progress({"table": name, "rows": report.source_rows, "ranges_done": len(pairs)})
        differing = [(lo, hi, s, t) for (lo, hi), (s, t) in zip(pairs, sums, strict=True) if s != t]
        # the small ones compared row by row together, ROW_BATCH ranges to a query; the others narrowed
        small = [(lo, hi) for lo, hi, s, t in differing if work.row_sized(s, t)]
        narrowed = [narrowing.submit(work.rows_apart, small[i:i + ROW_BATCH]) for i in range(0, len(small), ROW_BATCH)]
        narrowed += [narrowing.submit(work.narrow, lo, hi, s, t) for lo, hi, s, t in differing
                     if not work.row_sized(s, t)]
        for future in narrowed:
            report.diffs += future.result()
        report.diffs.sort(key=lambda d: (d.lo is not None, d.lo or ()))
    report.elapsed_s = time.monotonic() - started
    log.info("%s table=%s: %d rows, %d ranges, %d differing, %d queries (%s) in %.2fs", where, name,
             report.source_rows, report.ranges, len(report.diffs), report.queries, report.method, report.elapsed_s)
    return report


def verify_venue(ctx: Context, venue_id: str, tables: list[str] | None = None, *, chunk_rows: int | None = None,
                 fanout: int = DEFAULT_FANOUT, leaf_rows: int = DEFAULT_LEAF_ROWS,
                 progress: Progress | None = None, force_python: bool = False) -> VerifyReport:
    """Compare every synced table (or `tables`) of the venue with the cloud. Nothing is written."""
    venue = get_venue(ctx.control, venue_id)
    source = venue_source(venue)
    source.refresh()
    names = list(tables) if tables else resolve_tables(venue)[0]
    for name in names:
        source.table(name)  # refuses unknown names and keyless tables before any work
    report = VerifyReport(venue.id, utcnow())
    started = time.monotonic()
    if progress:
        progress({"total_rows": sum(source.count(source.table(n)) for n in names), "tables": names})
    for name in names:
        report.tables.append(verify_table(ctx, venue, name, chunk_rows=chunk_rows, fanout=fanout,
                                          leaf_rows=leaf_rows, progress=progress, force_python=force_python))
    report.elapsed_s = time.monotonic() - started
    return report


def verify_ranges(ctx: Context, venue_id: str, ranges: list[RangeDiff], *, fanout: int = DEFAULT_FANOUT,
                  leaf_rows: int = DEFAULT_LEAF_ROWS, progress: Progress | None = None) -> VerifyReport:
    """Compare only the given key ranges (the ones a repair resynced); the rest of each table was
    compared when they were found, so this confirms the repair without reading the whole venue again."""
    venue = get_venue(ctx.control, venue_id)
    venue_source(venue).refresh()
    by_table: dict[str, list[tuple[Key | None, Key | None]]] = {}
    for d in ranges:
        by_table.setdefault(d.table, []).append((d.lo, d.hi))
    report = VerifyReport(venue.id, utcnow(), scope="ranges")
    started = time.monotonic()
    if progress:
        progress({"total_rows": sum(d.source_rows for d in ranges), "tables": sorted(by_table)})
    for name in sorted(by_table):
        report.tables.append(verify_table(ctx, venue, name, fanout=fanout, leaf_rows=leaf_rows, progress=progress,
                                          ranges=by_table[name]))
    report.elapsed_s = time.monotonic() - started
    return report


def record_verify(ctx: Context, report: VerifyReport, job_id: int | None = None) -> None:
    """Keep the result where `cloudsync status` reads it (a venue with drift shows yellow) and in its log."""
    details = {"drift": report.drift, "scope": report.scope, "ranges": [d.as_dict() for d in report.diffs],
               "tables": {t.table: {"source_rows": t.source_rows, "target_rows": t.target_rows,
                                    "diffs": len(t.diffs)} for t in report.tables},
               "elapsed_s": round(report.elapsed_s, 3)}
    jobrepo.record_sync_run(ctx.control, report.venue_id, "verify", report.started_at, True, job_id=job_id,
                            details=details)
    if report.drift:
        summary = ", ".join(f"{t.table}: {len(t.diffs)} range(s)" for t in report.tables if t.drift)
        jobrepo.log_event(ctx.control, report.venue_id, f"verify found drift: {summary}", job_id=job_id,
                          level="WARNING")
    else:
        jobrepo.log_event(ctx.control, report.venue_id, "verify: cloud matches the venue", job_id=job_id)
