"""A deterministic demo venue database: a point-of-sale back office in miniature.

Clerks, product groups, products, members, transactions, transaction lines and payments, with
composite keys, a text key, exact decimals, unicode (and emoji), binary values and NULLs. The same
seed always gives the same rows, on SQLite, PostgreSQL, MariaDB or SQL Server.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from cloudsync.db import engine_for

metadata = sa.MetaData()

clerks = sa.Table(
    "clerks", metadata,
    sa.Column("clerk_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Unicode(100), nullable=False),
    sa.Column("security_group", sa.String(40), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)
product_groups = sa.Table(
    "product_groups", metadata,
    sa.Column("group_code", sa.String(10), primary_key=True),
    sa.Column("name", sa.Unicode(100), nullable=False),
)
products = sa.Table(
    "products", metadata,
    sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("group_code", sa.String(10), nullable=False),
    sa.Column("name", sa.Unicode(120), nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("cost", sa.Numeric(12, 4)),
    sa.Column("barcode", sa.String(20)),
    # explicit on SQL Server: without a server version SQLAlchemy would write the deprecated IMAGE/NTEXT
    sa.Column("image_hash", sa.LargeBinary(16).with_variant(mssql.VARBINARY(16), "mssql")),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
members = sa.Table(
    "members", metadata,
    sa.Column("member_no", sa.String(12), primary_key=True),
    sa.Column("name", sa.Unicode(100), nullable=False),
    sa.Column("email", sa.String(120)),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("balance", sa.Numeric(12, 2), nullable=False),
    sa.Column("joined_on", sa.Date, nullable=False),
)
transactions = sa.Table(
    "transactions", metadata,
    sa.Column("location_id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("clerk_id", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("member_no", sa.String(12)),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
    sa.Column("note", sa.Unicode(200)),
)
transaction_lines = sa.Table(
    "transaction_lines", metadata,
    sa.Column("location_id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("line_no", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("qty", sa.Numeric(10, 3), nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("modifiers", sa.UnicodeText().with_variant(mssql.NVARCHAR(None), "mssql")),
)
payments = sa.Table(
    "payments", metadata,
    sa.Column("location_id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("payment_no", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("tender", sa.String(20), nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("card_last4", sa.String(4)),
    sa.Column("paid_at", sa.DateTime, nullable=False),
)

TABLES = [t.name for t in metadata.sorted_tables]
_FIRST = ["Ana", "Bình", "Chloé", "Dmitri", "Ellie", "François", "Güneş", "Hēmi", "Ingrid", "Jae-won", "Kofi",
          "Łucja", "Mateo", "Niamh", "Oluwa", "Priya", "Quinn", "Rūta", "Søren", "Tāne", "Uma", "Zoë"]
_LAST = ["Nguyễn", "O'Brien", "Müller", "García", "Smith", "Ngata", "Kowalski", "Tanaka", "Dubois", "Øster"]
_ITEMS = ["Flat white", "Long black", "Chai latte", "Pale ale", "Pinot noir", "Fish & chips", "Crème brûlée",
          "Jalapeño poppers", "Smashed avo", "Pavlova", "Dumplings 饺子", "Ramen 🍜", "Pizza 🍕", "Schnitzel"]
_TENDERS = ["cash", "eftpos", "visa", "mastercard", "amex", "voucher", "member_points"]
_EPOCH = dt.datetime(2026, 1, 1, 6, 0, 0)


def plan_sizes(rows: int) -> dict[str, int]:
    """How many rows each table gets for about `rows` in all (transaction lines dominate)."""
    txns = max(rows * 20 // 100, 10)
    return {
        "clerks": 50,
        "product_groups": 40,
        "products": min(max(rows // 100, 20), 5000),
        "members": max(rows * 4 // 100, 10),
        "transactions": txns,
        "transaction_lines": txns * 11 // 4,  # lines per transaction average 2.75
        "payments": txns,
    }


def _batched(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate(rows: int, seed: int = 7) -> Iterator[tuple[sa.Table, list[dict[str, Any]]]]:
    """Yield (table, batch of rows) for the whole demo venue, deterministically."""
    rnd = random.Random(seed)
    sizes = plan_sizes(rows)
    n_products, n_members, n_txns = sizes["products"], sizes["members"], sizes["transactions"]
    groups = [f"G{i:03d}" for i in range(sizes["product_groups"])]

    def name() -> str:
        return f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}"

    yield clerks, [{"clerk_id": i, "name": name(), "security_group": rnd.choice(["Managers", "Bar", "Floor"]),
                    "active": rnd.random() > 0.1} for i in range(1, sizes["clerks"] + 1)]
    yield product_groups, [{"group_code": g, "name": f"Group {g[1:]} · {rnd.choice(_ITEMS).split()[0]}"}
                           for g in groups]
    prices = [Decimal(rnd.randint(150, 4500)) / 100 for _ in range(n_products)]
    yield from ((products, b) for b in _batched(({
        "product_id": i + 1, "group_code": rnd.choice(groups), "name": f"{rnd.choice(_ITEMS)} #{i + 1}",
        "price": prices[i], "cost": None if rnd.random() < 0.2 else (prices[i] * Decimal("0.3571")).quantize(
            Decimal("0.0001")),
        "barcode": None if rnd.random() < 0.3 else f"{rnd.randrange(10**12, 10**13)}",
        "image_hash": None if rnd.random() < 0.5 else rnd.randbytes(16),
        "updated_at": _EPOCH + dt.timedelta(minutes=rnd.randrange(0, 500_000)),
    } for i in range(n_products)), 5000))
    member_nos = [f"M{i:08d}" for i in range(1, n_members + 1)]
    yield from ((members, b) for b in _batched(({
        "member_no": m, "name": name(), "email": None if rnd.random() < 0.25 else f"{m.lower()}@example.com",
        "points": rnd.randint(0, 20000), "balance": Decimal(rnd.randint(0, 100000)) / 100,
        "joined_on": dt.date(2015, 1, 1) + dt.timedelta(days=rnd.randrange(0, 4000)),
    } for m in member_nos), 5000))
    yield from _transactions(rnd, n_txns, sizes["transaction_lines"], n_products, prices, member_nos)


def _transactions(rnd: random.Random, n_txns: int, n_lines: int, n_products: int, prices: list[Decimal],
                  member_nos: list[str]) -> Iterator[tuple[sa.Table, list[dict[str, Any]]]]:
    lines_left = n_lines
    txn_batch: list[dict[str, Any]] = []
    line_batch: list[dict[str, Any]] = []
    pay_batch: list[dict[str, Any]] = []
    for t in range(n_txns):
        location = 1 + t % 3
        txn_id = 1 + t // 3
        opened = _EPOCH + dt.timedelta(seconds=t * 37 + rnd.randrange(0, 30))
        txns_left = n_txns - t
        count = max(1, min(lines_left - (txns_left - 1), round(lines_left / txns_left + rnd.uniform(-1.5, 1.5))))
        lines_left -= count
        total = Decimal(0)
        for line_no in range(1, count + 1):
            product = rnd.randrange(n_products)
            qty = Decimal(rnd.choice([1, 1, 1, 2, 3])) if rnd.random() > 0.05 else Decimal(rnd.randint(1, 2500)) / 1000
            amount = (qty * prices[product]).quantize(Decimal("0.01"))
            total += amount
            line_batch.append({
                "location_id": location, "txn_id": txn_id, "line_no": line_no, "product_id": product + 1,
                "qty": qty, "unit_price": prices[product], "amount": amount,
                "modifiers": None if rnd.random() < 0.8 else rnd.choice(["no ice", "extra shot", "½ sugar", "🌶️"]),
            })
        txn_batch.append({
            "location_id": location, "txn_id": txn_id, "clerk_id": rnd.randint(1, 50), "opened_at": opened,
            "closed_at": None if rnd.random() < 0.02 else opened + dt.timedelta(seconds=rnd.randrange(30, 3600)),
            "member_no": rnd.choice(member_nos) if rnd.random() < 0.3 else None, "total": total,
            "note": None if rnd.random() < 0.9 else rnd.choice(["table 12", "birthday 🎂", "staff meal", "«VIP»"]),
        })
        pay_batch.append({
            "location_id": location, "txn_id": txn_id, "payment_no": 1, "tender": rnd.choice(_TENDERS),
            "amount": total, "card_last4": None if rnd.random() < 0.4 else f"{rnd.randrange(10000):04d}",
            "paid_at": opened + dt.timedelta(seconds=rnd.randrange(30, 3600)),
        })
        if len(line_batch) >= 5000:
            yield transactions, txn_batch
            yield transaction_lines, line_batch
            yield payments, pay_batch
            txn_batch, line_batch, pay_batch = [], [], []
    for table, batch in ((transactions, txn_batch), (transaction_lines, line_batch), (payments, pay_batch)):
        if batch:
            yield table, batch


def create_demo_venue(dsn: str, rows: int = 300_000, seed: int = 7, *, drop: bool = True,
                      progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Create (or recreate) the demo schema at `dsn` and fill it. Returns rows per table."""
    engine = engine_for(dsn)
    counts = dict.fromkeys(TABLES, 0)
    with engine.begin() as conn:
        if drop:
            metadata.drop_all(conn)
        metadata.create_all(conn)
    for table, batch in generate(rows, seed):
        with engine.begin() as conn:
            conn.execute(table.insert(), batch)
        counts[table.name] += len(batch)
        if progress:
            progress(len(batch))
    return counts
