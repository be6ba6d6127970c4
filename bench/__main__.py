"""`python -m bench`: run the full-resync benchmark and print its table (see bench/fullsync.py).

    python -m bench                      # 1,000,000 transaction lines, every measurement
    python -m bench --lines 5000000 --only cloudsync   # the 5M memory figure
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.fullsync import Options, main
from cloudsync.processes import settle_heap

RUNS = ("copy", "dlt", "cloudsync", "odbc")


def parse(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000, help="transaction lines (other tables scale with it)")
    p.add_argument("--5m", dest="five_m", action="store_true", help="5,000,000 lines (the memory figure)")
    p.add_argument("--only", default=",".join(RUNS), help=f"comma-separated subset of {','.join(RUNS)}")
    p.add_argument("--workers", type=int, default=2, help="cloudsync worker processes")
    p.add_argument("--chunk-rows", type=int, default=None, help="override CLOUDSYNC_CHUNK_ROWS")
    p.add_argument("--batch-rows", type=int, default=None, help="override CLOUDSYNC_READ_BATCH_ROWS")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    a = p.parse_args(argv)
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    if only - set(RUNS):
        p.error(f"--only: unknown {', '.join(sorted(only - set(RUNS)))}")
    return Options(
        lines=5_000_000 if a.five_m else a.lines, workers=a.workers, chunk_rows=a.chunk_rows,
        batch_rows=a.batch_rows, only=only, keep=a.keep,
        pg_url=os.environ.get("BENCH_PG_URL", Options.pg_url),
        mysql_url=os.environ.get("BENCH_MYSQL_URL", Options.mysql_url),
        odbc_driver=os.environ.get("BENCH_ODBC_DRIVER", Options.odbc_driver),
        redis_url=os.environ.get("BENCH_REDIS_URL", Options.redis_url),
    )


if __name__ == "__main__":
    settle_heap()  # as every cloudsync process does once it has started
    sys.exit(main(parse(sys.argv[1:])))
