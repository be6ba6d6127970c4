"""Type round-trips through every source/target pair: a full resync, then the cloud equals the venue.

Sources: SQLite, PostgreSQL, MariaDB (pymysql) and MariaDB through pyodbc/unixODBC (the driver path
SQL Server uses in production); targets: SQLite and PostgreSQL. Table-driven values where types break:
exact decimals at the edge of their precision, timestamps with zones (and across a daylight-saving
change), unicode with emoji, combining marks and NUL-free control characters, every byte value,
very long text, NULL in every nullable column; plus seeded random rows.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from cloudsync import resync
from cloudsync.control.venues import add_venue
from cloudsync.db import engine_for
from tests.helpers import run_job_inline

pytestmark = pytest.mark.integration

SOURCES = ["sqlite_db", "pg_db", "mysql_db", "odbc_db"]
TARGETS = ["sqlite_db", "pg_db"]
LONG_TEXT_CHARS = 300_000
CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"  # everything but NUL


def _table(md: sa.MetaData) -> sa.Table:
    on_mysql = ("mysql", "mariadb")
    return sa.Table(
        "type_zoo", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Numeric(20, 6)),
        sa.Column("price", sa.Numeric(9, 2)),
        sa.Column("at_zone", sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *on_mysql)),
        sa.Column("at_local", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *on_mysql)),
        sa.Column("day", sa.Date),
        sa.Column("label", sa.Unicode(300)),
        sa.Column("body", sa.UnicodeText().with_variant(mysql.LONGTEXT(), *on_mysql)),
        sa.Column("blob", sa.LargeBinary().with_variant(mysql.LONGBLOB(), *on_mysql)),
        sa.Column("ratio", sa.Float(53)),
        sa.Column("flag", sa.Boolean),
        sa.Column("qty", sa.BigInteger),
    )


def _rows(backend: str) -> list[dict[str, object]]:
    zoned = backend == "postgresql"  # MariaDB DATETIME and SQLite keep no zone: naive UTC there

    def at(value: dt.datetime) -> dt.datetime:
        return value if zoned else value.astimezone(dt.UTC).replace(tzinfo=None)

    exact = backend != "sqlite"  # SQLite's NUMERIC is a float: its decimals stay within 15 digits
    rows: list[dict[str, object]] = [
        dict(id=1, amount=Decimal("99999999999999.999999") if exact else Decimal("99999999.999999"),
             price=Decimal("-0.01"), at_zone=at(dt.datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=dt.UTC)),
             at_local=dt.datetime(2026, 3, 29, 2, 30, 0, 1), day=dt.date(1970, 1, 1),
             label="Pizza 🍕 family 👩‍👩‍👧 flag 🇳🇿 Zoë ñ 漢字 e\u0301 \u200b", body="長" * LONG_TEXT_CHARS,
             blob=bytes(range(256)), ratio=1.5e300, flag=True, qty=2**63 - 1),
        dict(id=2, amount=Decimal("0.000001"), price=Decimal("9999999.99"),
             at_zone=at(dt.datetime(2026, 10, 25, 1, 30, tzinfo=ZoneInfo("Europe/London"))),
             at_local=dt.datetime(1999, 12, 31, 23, 59, 59), day=dt.date(2038, 1, 19),
             label=CONTROL, body=CONTROL * 1000 + "end", blob=b"\x00" * 10 + b"\xff", ratio=-0.0,
             flag=False, qty=-(2**63)),
        dict(id=3, amount=Decimal("-12.500000"), price=Decimal("0"),
             at_zone=at(dt.datetime(2026, 1, 1, 23, 0, tzinfo=ZoneInfo("Pacific/Auckland"))),
             at_local=dt.datetime(2026, 1, 1), day=dt.date(2026, 2, 28), label="", body="",
             blob=b"", ratio=1e-300, flag=True, qty=0),
        # NULL in every nullable column
        dict(id=4, amount=None, price=None, at_zone=None, at_local=None, day=None, label=None, body=None,
             blob=None, ratio=None, flag=None, qty=None),
        dict(id=5, amount=None, price=Decimal("1.10"), at_zone=None, at_local=dt.datetime(2026, 6, 1, 12, 0),
             day=None, label="'; DROP TABLE type_zoo; --", body=None, blob=b"'\"\\", ratio=None, flag=None,
             qty=None),
    ]
    rnd = random.Random(20261122)
    alphabet = [c for c in range(1, 0x1FAFF) if not 0xD800 <= c <= 0xDFFF]
    for i in range(6, 40):
        rows.append(dict(
            id=i, amount=Decimal(rnd.randrange(-10**12, 10**12)) / 10**6,
            price=Decimal(rnd.randrange(-10**9, 10**9)) / 100,
            at_zone=at(dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=rnd.randrange(10**15))),
            at_local=dt.datetime(2000, 1, 1) + dt.timedelta(seconds=rnd.randrange(10**9)),
            day=dt.date(2000, 1, 1) + dt.timedelta(days=rnd.randrange(20000)),
            label="".join(chr(rnd.choice(alphabet)) for _ in range(rnd.randrange(0, 60))),
            body="".join(chr(rnd.choice(alphabet)) for _ in range(rnd.randrange(0, 3000))),
            blob=rnd.randbytes(rnd.randrange(0, 300)), ratio=rnd.uniform(-1e9, 1e9), flag=rnd.random() < 0.5,
            qty=rnd.randrange(-(2**62), 2**62),
        ) | ({k: None for k in rnd.sample(["amount", "at_zone", "label", "blob", "body", "flag"], 2)}))
    return rows


def _fill(dsn: str) -> str:
    """Create and fill the table at `dsn` (through pymysql for the pyodbc path). Returns the dialect."""
    url = sa.make_url(dsn)
    if url.drivername == "mysql+pyodbc":
        dsn = f"mysql+pymysql://{url.username}@{url.host}:{url.port}/{url.database}?charset=utf8mb4"
    elif url.drivername.startswith("mysql"):
        dsn = url.update_query_dict({"charset": "utf8mb4"}).render_as_string(hide_password=False)
    engine = engine_for(dsn)
    md = sa.MetaData()
    table = _table(md)
    with engine.begin() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(sa.text("ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        md.create_all(conn)
        conn.execute(table.insert(), _rows(engine.dialect.name))
    return engine.dialect.name


@pytest.mark.parametrize("target_kind", TARGETS)
@pytest.mark.parametrize("source_kind", SOURCES)
def test_types_round_trip(request, make_ctx, target_equals_source, source_kind, target_kind):
    source = request.getfixturevalue(source_kind)()
    target = request.getfixturevalue(target_kind)()
    _fill(source)
    ctx = make_ctx(cloud_url=target, chunk_rows=7, read_batch_rows=4)  # several chunks, several batches
    add_venue(ctx.control, "v1", source, tables=["type_zoo"])
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done", job.error
    target_equals_source(ctx, "v1")
    assert job.verification["match"], job.verification
    # the values themselves survived, not only equally mangled on both sides
    cloud = ctx.target.cloud_table(_reflect(source))
    rows = {r[0]: r for batch in ctx.target.read_range(cloud, "v1", None, None, 100) for r in batch}
    names = [c.name for c in cloud.columns if c.name != "venue_id"]
    first, nulls = dict(zip(names, rows[1], strict=False)), dict(zip(names, rows[4], strict=False))
    assert first["label"] == _rows("x")[0]["label"]
    assert first["body"] == "長" * LONG_TEXT_CHARS
    assert bytes(first["blob"]) == bytes(range(256))
    assert dict(zip(names, rows[2], strict=False))["label"] == CONTROL
    assert all(v is None for k, v in nulls.items() if k != "id"), nulls
    assert len(rows) == 39


def _reflect(dsn: str) -> sa.Table:
    from cloudsync.sources import open_source

    source = open_source("v1", dsn)
    source.refresh()
    return source.table("type_zoo")
