"""Key encoding round-trips and the expanded keyset predicates (valid on SQL Server)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import sqlalchemy as sa
import sqlglot
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import mssql

from cloudsync import keys

values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.datetimes(timezones=st.one_of(st.none(), st.just(dt.timezone.utc))),
    st.dates(),
    st.binary(max_size=16),
    st.uuids(),
)


@given(st.lists(values, min_size=1, max_size=4))
def test_key_encoding_round_trips(key):
    import json

    encoded = json.loads(json.dumps(keys.encode_key(key)))
    assert keys.decode_key(encoded) == tuple(key)


def _table() -> sa.Table:
    return sa.Table("lines", sa.MetaData(), sa.Column("loc", sa.Integer, primary_key=True),
                    sa.Column("txn", sa.Integer, primary_key=True), sa.Column("line", sa.Integer, primary_key=True))


def _python_cmp(key, lo, hi) -> bool:
    return (lo is None or key > lo) and (hi is None or key <= hi)


@given(st.tuples(*(st.integers(0, 3),) * 3), st.none() | st.tuples(*(st.integers(0, 3),) * 3),
       st.none() | st.tuples(*(st.integers(0, 3),) * 3))
def test_expanded_range_matches_tuple_order(key, lo, hi):
    """The OR-of-ANDs form selects exactly the keys a row-value comparison would (checked in SQLite)."""
    table = _table()
    engine = sa.create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(("loc", "txn", "line"), key))])
        got = conn.execute(sa.select(sa.func.count()).select_from(table).where(
            keys.in_range(list(table.primary_key.columns), lo, hi))).scalar_one()
    assert bool(got) == _python_cmp(key, lo, hi)


def test_range_predicate_is_tsql_without_row_values():
    table = _table()
    stmt = sa.select(table).where(keys.in_range(list(table.primary_key.columns), (1, 2, 3), (4, 5, 6)))
    sql = str(stmt.compile(dialect=mssql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "(lines.loc, lines.txn" not in sql  # no row-value comparison
    assert "lines.loc > 1 OR lines.loc = 1 AND lines.txn > 2" in sql
    sqlglot.parse_one(sql, read="tsql")


def test_key_in_uses_or_of_ands_for_composite_keys():
    table = _table()
    cond = keys.key_in(list(table.primary_key.columns), [(1, 2, 3), (4, 5, 6)])
    sql = str(cond.compile(dialect=mssql.dialect(), compile_kwargs={"literal_binds": True}))
    assert sql.count(" OR ") == 1 and "IN" not in sql


def test_decimal_and_uuid_bounds_keep_their_type():
    key = (decimal.Decimal("1.50"), uuid.UUID(int=7))
    assert keys.decode_key(keys.encode_key(key)) == key
    assert isinstance(keys.decode_key(keys.encode_key(key))[0], decimal.Decimal)
