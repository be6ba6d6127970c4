"""Range-checksum SQL as each dialect receives it (no services): T-SQL parses, every column kind is covered."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql, mysql, postgresql

from cloudsync import keys
from cloudsync.checksums import row_digest64
from cloudsync.dialects.mssql.checksum import MssqlRowHash, example_table, render, tsql_statements
from cloudsync.verify.rangehash import ColumnKind, column_kind, hasher_for


@pytest.mark.parametrize("name", sorted(tsql_statements()))
def test_every_tsql_statement_parses(name):
    sql = tsql_statements()[name]
    tree = sqlglot.parse_one(sql, read="tsql")
    assert tree is not None
    assert "?" not in sql  # rendered with values inline, as the T-SQL test renders them


def test_tsql_row_digest_is_a_hashbytes_md5_over_utf8_bytes_of_every_column():
    sql = tsql_statements()["range_sum"]
    assert "hashbytes('MD5'" in sql
    assert sql.count("Latin1_General_100_CI_AS_SC_UTF8") == 2  # NVARCHAR and CHAR columns become UTF-8
    assert "TRIM(TRAILING '0'" in sql and "switchoffset" in sql and "DECIMAL(20, 0)" in sql
    assert sql.count("coalesce(") == len(example_table().columns)  # NULL has its own marker per column
    # keyset bounds in the expanded form SQL Server needs (no row-value comparison)
    assert "[LocationId] > 1 OR [TransactionLines].[LocationId] = 1 AND [TransactionLines].[TxnId] > 100" in sql


def test_tsql_range_sums_group_by_a_binary_search_over_the_bounds_in_a_derived_table():
    sql = tsql_statements()["range_sums"]
    tree = sqlglot.parse_one(sql, read="tsql")
    assert isinstance(tree, sqlglot.exp.Select) and tree.args.get("group")
    # SQL Server compares GROUP BY expressions textually: the bucket is grouped by its derived column
    assert "GROUP BY cs_g.cs_b" in sql
    assert sql.count("CASE WHEN") == 4  # four bounds: a nested CASE per split, log2 comparisons per row
    assert "DECIMAL(20, 0)" in sql and "hashbytes('MD5'" in sql


def test_bucket_of_numbers_the_ranges_in_key_order():
    """The nested CASE assigns each key to the range (bounds[i-1], bounds[i]] (checked on SQLite)."""
    from cloudsync.verify.rangehash import bucket_of

    engine = sa.create_engine("sqlite://")
    t = sa.Table("k", sa.MetaData(), sa.Column("a", sa.Integer, primary_key=True),
                 sa.Column("b", sa.Integer, primary_key=True))
    rows = [{"a": a, "b": b} for a in range(4) for b in range(5)]
    bounds = [(0, 4), (1, 2), (1, 3), (3, 0)]
    with engine.begin() as conn:
        t.create(conn)
        conn.execute(t.insert(), rows)
        stmt = sa.select(t.c.a, t.c.b, bucket_of([t.c.a, t.c.b], bounds).label("bucket"))
        got = {(r.a, r.b): r.bucket for r in conn.execute(stmt)}
    expected = {(r["a"], r["b"]): sum(1 for bound in bounds if bound < (r["a"], r["b"])) for r in rows}
    assert got == expected and set(got.values()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("low", "span", "parts"), [(1, 10, 3), (-5, 7, 7), (100, 1000, 16), (0, 5, 1)])
def test_even_cuts_compute_the_range_a_key_falls_in_arithmetically(low, span, parts):
    from cloudsync.verify.rangehash import EvenCuts, bucket_of

    cuts = EvenCuts(low, span, parts)
    bounds = cuts.bounds
    assert len(bounds) == parts - 1 and bounds == sorted(set(bounds))
    engine = sa.create_engine("sqlite://")
    t = sa.Table("k", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    ids = range(low - 3, low + span + 3)  # keys outside [low, low + span) too (rows added since the cut)
    with engine.begin() as conn:
        t.create(conn)
        conn.execute(t.insert(), [{"id": i} for i in ids])
        stmt = sa.select(t.c.id, cuts.bucket(t.c.id, "sqlite"), bucket_of([t.c.id], bounds) if bounds else 0)
        for key, arithmetic, searched in conn.execute(stmt):
            assert arithmetic == searched == sum(1 for (b,) in bounds if b < key), key


def test_even_cuts_divide_as_integers_on_every_dialect():
    from cloudsync.verify.rangehash import EvenCuts

    t = sa.Table("k", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    cuts = EvenCuts(1, 1_000_000, 245)
    rendered = {name: str(cuts.bucket(t.c.id, name).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
                for name, dialect in [("postgresql", postgresql.dialect()), ("mysql", mysql.dialect()),
                                      ("mssql", mssql.dialect())]}
    assert "- 1) DIV 1000000" in rendered["mysql"] and "FLOOR" not in rendered["mysql"]  # `/` is decimal there
    assert ") / 1000000" in rendered["postgresql"] and ") / 1000000" in rendered["mssql"]
    sqlglot.parse_one(f"SELECT {rendered['mssql']} FROM k", read="tsql")
    huge = EvenCuts(-(1 << 62), 1 << 63, 64)  # (key - low + 1) * parts would overflow: searched instead
    assert "CASE WHEN" in str(huge.bucket(t.c.id, "postgresql").compile(dialect=postgresql.dialect()))
    with pytest.raises(ValueError):
        EvenCuts(1, 3, 4)


def test_tsql_falls_back_to_python_for_a_float_column():
    t = sa.Table("t", sa.MetaData(), sa.Column("id", mssql.INTEGER, primary_key=True), sa.Column("x", mssql.FLOAT))
    assert MssqlRowHash().row_digest(list(t.columns)) is None


@pytest.mark.parametrize(("col_type", "kind"), [
    (postgresql.NUMERIC(12, 2), ColumnKind("decimal", 2)),
    (mysql.DECIMAL(10, 0), ColumnKind("decimal", 0)),
    (mssql.MONEY(), ColumnKind("money", 4)),
    (postgresql.TIMESTAMP(timezone=True), ColumnKind("datetimetz")),
    (mssql.DATETIMEOFFSET(), ColumnKind("datetimetz")),
    (mysql.DATETIME(fsp=6), ColumnKind("datetime")),
    (postgresql.BYTEA(), ColumnKind("binary")),
    (mysql.VARBINARY(16), ColumnKind("binary")),
    (mssql.TIMESTAMP(), ColumnKind("binary")),
    (mysql.TINYINT(1), ColumnKind("int")),
    (postgresql.BOOLEAN(), ColumnKind("bool")),
    (postgresql.DOUBLE_PRECISION(), ColumnKind("float")),
    (postgresql.REAL(), ColumnKind("real")),
    (postgresql.CHAR(4), ColumnKind("char")),
    (mssql.NVARCHAR(50), ColumnKind("text")),
    (postgresql.JSONB(), ColumnKind("other")),
    (sa.Time(), ColumnKind("other")),
])
def test_column_kinds(col_type, kind):
    assert column_kind(col_type) == kind


def _compiled(dialect_name: str, dialect: sa.Dialect, *cols: sa.Column) -> str:
    t = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), *cols)
    hasher = hasher_for(dialect_name)
    assert hasher is not None
    digest = hasher.row_digest(list(t.columns))
    assert digest is not None
    stmt = sa.select(sa.func.count(), hasher.total(digest)).where(keys.in_range([t.c.id], (5,), (10,)))
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def test_postgresql_normalises_in_sql():
    sql = _compiled("postgresql", postgresql.dialect(), sa.Column("p", sa.Numeric(12, 2)),
                    sa.Column("at", sa.DateTime(timezone=True)), sa.Column("b", sa.LargeBinary),
                    sa.Column("f", sa.Boolean))
    assert "trim_scale(t.p)" in sql and "timezone('UTC', t.at)" in sql and "encode(t.b, 'hex')" in sql
    assert "md5(" in sql and "BIT(64)" in sql and "'\\x004e'::bytea" in sql


def test_mariadb_normalises_in_sql_and_leaves_floats_to_python():
    sql = _compiled("mysql", mysql.dialect(), sa.Column("p", mysql.DECIMAL(12, 2)), sa.Column("d", mysql.DATETIME))
    assert "regexp_replace" in sql and "date_format" in sql and "md5(" in sql and "conv(" in sql
    t = sa.Table("t2", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("x", mysql.DOUBLE))
    assert hasher_for("mysql").row_digest(list(t.columns)) is None  # type: ignore[union-attr]
    assert hasher_for("sqlite") is None


def test_python_digest_is_md5_of_the_normalised_row():
    row = (1, Decimal("3.5000"), None, dt.datetime(2026, 1, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=10))),
           b"\x00\xff", True, "🍕")
    text = "1\x1f3.5\x1f\x00N\x1f2026-01-01 00:00:00.000000\x1f\\x00ff\x1f1\x1f🍕"
    assert row_digest64(row) == int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")
    assert row_digest64((1, Decimal("3.5"))) == row_digest64((1, Decimal("3.50")))
    assert row_digest64((1, None)) != row_digest64((1, ""))


def test_render_inlines_key_bounds():
    t = example_table()
    pk = list(t.primary_key.columns)
    text = render(sa.select(*pk).where(keys.in_range(pk, None, (3, 7))))
    sqlglot.parse_one(text, read="tsql")
    assert "<= 7" in text


def test_range_sums_over_many_composite_bounds_split_into_queries_sql_server_accepts(monkeypatch):
    """A long list of composite bounds is summed in several grouped queries, each under SQL Server's
    2,100 bind parameters, with the same result as one range at a time (checked on SQLite through the
    SQL path: SQLite plays a dialect with an SQL hasher here)."""
    from cloudsync.verify import rangehash

    engine = sa.create_engine("sqlite://")
    t = sa.Table("k", sa.MetaData(), sa.Column("a", sa.Integer, primary_key=True),
                 sa.Column("b", sa.Integer, primary_key=True), sa.Column("v", sa.Integer))
    with engine.begin() as conn:
        t.create(conn)
        conn.execute(t.insert(), [{"a": a, "b": b, "v": a * b} for a in range(30) for b in range(40)])
    side = rangehash.RangeSide("k", engine, t, list(t.columns), [t.c.a, t.c.b], [], _no_errors, _no_read)

    class SumOfValues(rangehash.RowHashSQL):  # SQLite has no MD5: any per-row digest shows the grouping
        def piece(self, col, kind):
            return col

        def digest(self, pieces):
            return pieces[0] * 1000003 + pieces[1] * 1009 + pieces[2]

    side.use_hasher(SumOfValues())
    monkeypatch.setattr(rangehash, "MAX_PARAMETERS", 60)  # 20 two-column bounds per query
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    bounds = [(a, b) for a in range(30) for b in (5, 17, 33)][:-1]
    many = side.range_sums(None, None, bounds)
    grouped = [s for s in statements if "GROUP BY" in s]
    assert len(grouped) == -(-(len(bounds) + 1) // 21) == 5
    assert max(s.count("?") for s in grouped) <= 60 + 6 + 2  # bounds; the range's lo and hi; the digest's constants
    edges = [None, *bounds, None]
    assert many == [side.range_sum(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]
    assert sum(r.rows for r in many) == 1200


def _no_errors():
    from contextlib import nullcontext

    return nullcontext()


def _no_read(lo, hi):
    raise AssertionError("summed in SQL")


def test_postgresql_native_digest_seeds_each_row_by_its_integer_key_or_mixes_it_again():
    from cloudsync.verify.rangehash import PgNativeRowHash

    md = sa.MetaData()
    single = sa.Table("s", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text))
    composite = sa.Table("c", md, sa.Column("a", sa.Integer, primary_key=True),
                         sa.Column("b", sa.Text, primary_key=True), sa.Column("v", sa.Numeric(12, 2)))
    hasher = PgNativeRowHash()

    def sql(t: sa.Table) -> str:
        digest = hasher.keyed_digest(list(t.columns), list(t.primary_key.columns))
        assert digest is not None
        return str(digest.compile(dialect=postgresql.dialect()))

    assert sql(single) == "hash_record_extended(row(s.id, s.v), CAST(s.id AS BIGINT))"
    assert sql(composite) == "hashtextextended(CAST(hash_record_extended(row(c.a, c.b, c.v), 0) AS TEXT), 0)"
    money = sa.Table("m", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("m", postgresql.MONEY))
    assert hasher.keyed_digest(list(money.columns), [money.c.id]) is None  # money has no hash: not native
