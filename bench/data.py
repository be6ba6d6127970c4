"""The benchmark's venue data: the demo POS schema filled inside PostgreSQL, and copied to MariaDB.

Rows are generated set-based by the server (`INSERT … SELECT … FROM generate_series`) rather than
row by row from Python, so a million transaction lines take seconds. Values follow the demo venue's
shapes: composite and text keys, exact decimals, unicode and emoji, binary values and NULLs. The
MariaDB copy (for the pyodbc source path) is streamed from PostgreSQL with `COPY … TO STDOUT` into
`LOAD DATA LOCAL INFILE`, so both sources hold exactly the same rows.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import psycopg
import pymysql
import sqlalchemy as sa
from psycopg import sql

from cloudsync.demo.venue import metadata as demo_metadata

log = logging.getLogger(__name__)

# Column lists are fixed here and checked against the demo schema, so the generator cannot drift from it.
_SQL = {
    "clerks": """
        INSERT INTO clerks (clerk_id, name, security_group, active)
        SELECT i, (ARRAY['Ana','Bình','Chloé','Dmitri','Zoë','Søren'])[1 + i % 6] || ' ' || i,
               (ARRAY['Managers','Bar','Floor'])[1 + i % 3], i % 10 <> 0
        FROM generate_series(1, 50) i""",
    "product_groups": """
        INSERT INTO product_groups (group_code, name)
        SELECT 'G' || lpad(i::text, 3, '0'), 'Group ' || i || ' · Crème'
        FROM generate_series(0, 39) i""",
    "products": """
        INSERT INTO products (product_id, group_code, name, price, cost, barcode, image_hash, updated_at)
        SELECT i, 'G' || lpad((i % 40)::text, 3, '0'),
               (ARRAY['Flat white','Crème brûlée','Dumplings 饺子','Ramen 🍜','Pale ale'])[1 + i % 5] || ' #' || i,
               (150 + (i * 37) % 4350) / 100.0,
               CASE WHEN i % 5 = 0 THEN NULL ELSE round((150 + (i * 37) % 4350) / 100.0 * 0.3571, 4) END,
               CASE WHEN i % 3 = 0 THEN NULL ELSE (1000000000000 + i * 7919)::text END,
               CASE WHEN i % 2 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END,
               timestamp '2026-01-01 06:00' + (i * 53) * interval '1 minute'
        FROM generate_series(1, {products}) i""",
    "members": """
        INSERT INTO members (member_no, name, email, points, balance, joined_on)
        SELECT 'M' || lpad(i::text, 8, '0'), (ARRAY['Łucja','Hēmi','Güneş','Jae-won','Niamh'])[1 + i % 5] || ' Ngata',
               CASE WHEN i % 4 = 0 THEN NULL ELSE 'm' || i || '@example.com' END,
               (i * 7) % 20000, ((i * 13) % 100000) / 100.0, date '2015-01-01' + (i % 4000)
        FROM generate_series(1, {members}) i""",
    "transactions": """
        INSERT INTO transactions (location_id, txn_id, clerk_id, opened_at, closed_at, member_no, total, note)
        SELECT 1 + t % 3, 1 + t / 3, 1 + t % 50, timestamp '2026-01-01 06:00' + t * 37 * interval '1 second',
               CASE WHEN t % 50 = 0 THEN NULL
                    ELSE timestamp '2026-01-01 06:00' + (t * 37 + 30 + t % 3000) * interval '1 second' END,
               CASE WHEN t % 3 = 0 THEN 'M' || lpad((1 + (t * 13) % {members})::text, 8, '0') END,
               ((t * 31) % 20000) / 100.0,
               CASE WHEN t % 10 = 0 THEN (ARRAY['table 12','birthday 🎂','staff meal','«VIP»'])[1 + t % 4] END
        FROM generate_series(0, {transactions} - 1) t""",
    # line i belongs to transaction t = i * T / L; its number is its offset from the first line of t
    "transaction_lines": """
        INSERT INTO transaction_lines (location_id, txn_id, line_no, product_id, qty, unit_price, amount, modifiers)
        SELECT 1 + t % 3, 1 + t / 3, 1 + i - (t * {lines} + {transactions} - 1) / {transactions}, p,
               q, pr, round(q * pr, 2),
               CASE WHEN i % 5 = 0 THEN (ARRAY['no ice','extra shot','½ sugar','🌶️'])[1 + i % 4] END
        FROM (SELECT i, i * {transactions} / {lines} AS t, 1 + (i * 7919) % {products} AS p,
                     CASE WHEN i % 20 = 0 THEN (1 + i % 2500) / 1000.0
                          ELSE (ARRAY[1, 1, 1, 2, 3])[1 + i % 5]::numeric END AS q,
                     (150 + ((1 + (i * 7919) % {products}) * 37) % 4350) / 100.0 AS pr
              FROM generate_series(0::bigint, {lines} - 1) i) s""",
    "payments": """
        INSERT INTO payments (location_id, txn_id, payment_no, tender, amount, card_last4, paid_at)
        SELECT 1 + t % 3, 1 + t / 3, 1, (ARRAY['cash','eftpos','visa','mastercard','amex','voucher'])[1 + t % 6],
               ((t * 31) % 20000) / 100.0, CASE WHEN t % 5 < 2 THEN NULL ELSE lpad((t % 10000)::text, 4, '0') END,
               timestamp '2026-01-01 06:00' + (t * 37 + 60) * interval '1 second'
        FROM generate_series(0, {transactions} - 1) t""",
}


def sizes_for(lines: int) -> dict[str, int]:
    """Rows per table for `lines` transaction lines (2.75 lines per transaction, as the demo venue)."""
    txns = max(-(-lines * 4 // 11), 1)
    return {"clerks": 50, "product_groups": 40, "products": 5000, "members": max(txns // 5, 10),
            "transactions": txns, "transaction_lines": lines, "payments": txns}


def psycopg_dsn(url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL."""
    u = sa.make_url(url)
    parts = {"host": u.host or "127.0.0.1", "port": u.port or 5432, "dbname": u.database, "user": u.username,
             "password": u.password}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def build_postgres_venue(url: str, lines: int) -> dict[str, int]:
    """Create the demo schema at `url` and fill it for `lines` transaction lines. Returns rows per table."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            demo_metadata.drop_all(conn)
            demo_metadata.create_all(conn)
    finally:
        engine.dispose()
    sizes = sizes_for(lines)
    params = {"lines": sizes["transaction_lines"], "transactions": sizes["transactions"],
              "products": sizes["products"], "members": sizes["members"]}
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:
        for table in demo_metadata.sorted_tables:
            conn.execute(_SQL[table.name].format(**params))  # fixed statements above, integer parameters only
        # a venue database as it is in production, not seconds after a bulk load: vacuumed (the
        # visibility map that index-only scans rely on is set), analysed, and its pages written out
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        counts = {t.name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t.name)))
                  .fetchone()[0] for t in demo_metadata.sorted_tables}
    assert counts == sizes, (counts, sizes)
    return counts


def _mysql_select(table: sa.Table) -> sql.Composed:
    """`SELECT` a table for MariaDB's text loader: booleans as 0/1, binary as hex."""
    cols = []
    for col in table.columns:
        ident = sql.Identifier(col.name)
        if isinstance(col.type, sa.Boolean):
            cols.append(sql.SQL("{}::int").format(ident))
        elif isinstance(col.type, sa.LargeBinary):
            cols.append(sql.SQL("encode({}, 'hex')").format(ident))
        else:
            cols.append(ident)
    return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(sql.SQL(", ").join(cols), sql.Identifier(table.name))


def copy_to_mariadb(pg_url: str, mysql_url: str) -> None:
    """Create the demo schema in MariaDB and load every table from PostgreSQL, unchanged."""
    engine = sa.create_engine(mysql_url)
    try:
        with engine.begin() as conn:
            demo_metadata.drop_all(conn)
            demo_metadata.create_all(conn)
    finally:
        engine.dispose()
    u = sa.make_url(mysql_url)
    my = pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username, password=u.password or "",
                         database=u.database, charset="utf8mb4", local_infile=True, autocommit=True)
    pg = psycopg.connect(psycopg_dsn(pg_url))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for table in demo_metadata.sorted_tables:
                path = Path(tmp) / f"{table.name}.tsv"
                with open(path, "wb") as out, pg.cursor().copy(_mysql_select(table)) as copy:
                    for block in copy:
                        out.write(block)
                _load_data(my, table, path)
    finally:
        pg.close()
        my.close()


def _load_data(my: pymysql.connections.Connection, table: sa.Table, path: Path) -> None:
    names, sets = [], []
    for col in table.columns:
        quoted = "`" + col.name.replace("`", "``") + "`"
        if isinstance(col.type, sa.LargeBinary):
            names.append(f"@{col.name}")
            sets.append(f"{quoted} = UNHEX(@{col.name})")
        else:
            names.append(quoted)
    stmt = (f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table.name}` CHARACTER SET utf8mb4 "  # noqa: S608 demo names
            f"({', '.join(names)})" + (f" SET {', '.join(sets)}" if sets else ""))
    with my.cursor() as cur:
        cur.execute(stmt, (str(path),))
        log.info("MariaDB: loaded %s (%d rows)", table.name, cur.rowcount)
