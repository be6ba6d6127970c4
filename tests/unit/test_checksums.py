"""Row normalisation: equal values from different drivers hash equally."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from cloudsync.checksums import TableSum, normalise, row_hash


def test_equal_values_normalise_equally():
    assert normalise(Decimal("12.50")) == normalise(Decimal("12.5")) == "12.5"
    assert normalise(Decimal("-0.00")) == "0"
    utc = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.timezone.utc)
    sydney = utc.astimezone(dt.timezone(dt.timedelta(hours=11)))
    assert normalise(utc) == normalise(sydney)
    assert normalise(None) != normalise("") and normalise(None) != normalise("None")
    assert normalise(b"\x00\xff") == "\\x00ff" == normalise(memoryview(b"\x00\xff"))


def test_table_sum_does_not_depend_on_order():
    rows = [(1, "a", Decimal("1.10")), (2, "b 🍕", None), (3, "c", Decimal("0"))]
    a, b = TableSum(), TableSum()
    a.add(rows)
    b.add(reversed(rows))
    assert a == b and a.rows == 3
    c = TableSum()
    c.add([(1, "a", Decimal("1.11")), *rows[1:]])
    assert c.checksum != a.checksum


def test_row_hash_separates_columns():
    assert row_hash(("ab", "c")) != row_hash(("a", "bc"))
