"""A concurrent writer for the demo venue schema, run in its own process by the incremental tests and
the lag benchmark: inserts, updates, deletes and key changes in small transactions, some rolled back
(which leaves gaps in identity/sequence ids, as real workloads do)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cloudsync.db import engine_for

WRITER_LOCATION = 9  # transactions the writer creates live at a location the demo data never uses


def write(dsn: str, stop: Any, seconds: float = 60.0, seed: int = 1, rate_rows_s: float = 0.0,
          rollback_share: float = 0.05, stamp: Any = None, max_lines: int = 4) -> int:
    """Write until `stop` is set (a multiprocessing Event) or `seconds` pass. Returns committed ops.

    With `rate_rows_s`, keeps to about that many changed rows per second; `stamp`, if given, is a
    shared dict-like that receives {txn key: commit wall time} for lag measurement.
    """
    rnd = random.Random(seed)
    engine = engine_for(dsn)
    md = sa.MetaData()
    with engine.connect() as conn:
        md.reflect(conn, only=["products", "members", "transactions", "transaction_lines", "payments"])
        next_txn = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(md.tables["transactions"].c.txn_id), 0))
                                    ).scalar_one()) + 1
        member_nos = [r[0] for r in conn.execute(sa.select(md.tables["members"].c.member_no))]
        product_ids = [r[0] for r in conn.execute(sa.select(md.tables["products"].c.product_id))]
    t, lines, pays = md.tables["transactions"], md.tables["transaction_lines"], md.tables["payments"]
    products, members = md.tables["products"], md.tables["members"]
    deadline = time.monotonic() + seconds
    done = 0
    started = time.monotonic()
    rows_changed = 0
    while not stop.is_set() and time.monotonic() < deadline:
        rows = 0
        txn_id = next_txn
        next_txn += 1
        try:
            with engine.begin() as conn:
                n_lines = rnd.randint(1, max_lines)
                now = dt.datetime(2026, 6, 1) + dt.timedelta(seconds=txn_id)
                conn.execute(t.insert().values(location_id=WRITER_LOCATION, txn_id=txn_id, clerk_id=1, opened_at=now,
                                               closed_at=None, member_no=None, total=Decimal("0.00"), note="w"))
                conn.execute(lines.insert(), [dict(location_id=WRITER_LOCATION, txn_id=txn_id, line_no=i + 1,
                                                   product_id=rnd.choice(product_ids), qty=Decimal(1),
                                                   unit_price=Decimal("4.50"), amount=Decimal("4.50"), modifiers=None)
                                              for i in range(n_lines)])
                conn.execute(pays.insert().values(location_id=WRITER_LOCATION, txn_id=txn_id, payment_no=1,
                                                  tender="cash", amount=Decimal("4.50") * n_lines, card_last4=None,
                                                  paid_at=now))
                conn.execute(t.update().where(t.c.location_id == WRITER_LOCATION, t.c.txn_id == txn_id)
                             .values(total=Decimal("4.50") * n_lines, closed_at=now))
                rows += n_lines + 3
                op = rnd.random()
                if op < 0.3:
                    pid = rnd.choice(product_ids)
                    conn.execute(products.update().where(products.c.product_id == pid)
                                 .values(price=Decimal(rnd.randint(100, 9000)) / 100))
                    rows += 1
                elif op < 0.5 and member_nos:
                    conn.execute(members.update().where(members.c.member_no == rnd.choice(member_nos))
                                 .values(points=rnd.randint(0, 99999)))
                    rows += 1
                elif op < 0.6 and txn_id > 3:
                    victim = rnd.randint(max(1, txn_id - 50), txn_id - 1)
                    rows += conn.execute(lines.delete().where(lines.c.location_id == WRITER_LOCATION,
                                                              lines.c.txn_id == victim)).rowcount or 0
                elif op < 0.65 and len(member_nos) > 5:
                    old = member_nos.pop(rnd.randrange(len(member_nos)))
                    new = f"W{txn_id:08d}"
                    conn.execute(members.update().where(members.c.member_no == old).values(member_no=new))
                    member_nos.append(new)
                    rows += 2
                elif op < 0.7 and len(member_nos) > 5:
                    gone = member_nos.pop(rnd.randrange(len(member_nos)))
                    conn.execute(members.delete().where(members.c.member_no == gone))
                    rows += 1
                if rnd.random() < rollback_share:
                    raise _Rollback()
            done += 1
            rows_changed += rows
            if stamp is not None:
                stamp[txn_id] = time.time()
        except _Rollback:
            pass
        if rate_rows_s:
            ahead_s = rows_changed / rate_rows_s - (time.monotonic() - started)
            if ahead_s > 0:
                time.sleep(ahead_s)
        else:
            time.sleep(0.002)
    if stamp is not None:
        stamp[-1] = rows_changed  # rows changed by committed transactions, for the benchmark's rate
    return done


class _Rollback(Exception):
    pass


@contextmanager
def writer_process(target: Callable[..., int], dsn: str, seconds: float, join_s: float = 30,
                   **kwargs: Any) -> Iterator[Any]:
    """`target(dsn, stop_event, seconds, **kwargs)` in its own (spawned) process until the block ends;
    then it is stopped, joined, and must have exited cleanly. Yields the stop event."""
    mp = multiprocessing.get_context("spawn")
    stop_event = mp.Event()
    proc = mp.Process(target=target, args=(dsn, stop_event, seconds), kwargs=kwargs, daemon=True)
    proc.start()
    try:
        yield stop_event
    finally:
        stop_event.set()
        proc.join(join_s)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert proc.exitcode == 0, f"writer exited with {proc.exitcode}"
