"""The `changelog` feed: triggers that cloudsync installs at the venue write every changed key into
`cloudsync_changelog`, in the writer's own transaction, on PostgreSQL, MariaDB, SQLite and SQL Server.

Ids come from an identity/sequence, so they increase, but a transaction can commit after one with a
higher id: reading `id > last` alone would skip it. The position therefore keeps the open *gaps*
below its high-water id and asks for them again until they appear or are older than `gap_timeout_s`
(a rolled-back insert leaves a gap forever). Applied entries are pruned; the highest pruned id is kept
in `cloudsync_changelog_meta`, so a position older than it is detected as expired, never skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloudsync.db import source_errors
from cloudsync.dialects.mssql import changes as tsql
from cloudsync.feeds.base import ChangeFeed, Changes, FeedExpired, FeedNotReady, Position, coerce_key

log = logging.getLogger(__name__)

CHANGELOG = "cloudsync_changelog"
META = "cloudsync_changelog_meta"
GAP_TIMEOUT_S = 300  # a transaction open longer than this while others commit is assumed rolled back
POSITION_WINDOW_IDS = 10_000  # ids below the top checked for open gaps when a position is taken
MAX_GAPS = 10_000

_statements: dict[tuple[str | None, int, bool], sa.CompoundSelect] = {}


# The PostgreSQL capture function: the trigger passes the key column names as arguments.
_PG_CAPTURE = """
DECLARE r jsonb; o jsonb; k jsonb := '[]'::jsonb; ok jsonb := '[]'::jsonb; i int;
BEGIN
  IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN r := to_jsonb(NEW); END IF;
  FOR i IN 0 .. TG_NARGS - 1 LOOP
    IF r IS NOT NULL THEN k := k || jsonb_build_array(r -> TG_ARGV[i]); END IF;
    IF o IS NOT NULL THEN ok := ok || jsonb_build_array(o -> TG_ARGV[i]); END IF;
  END LOOP;
  IF r IS NOT NULL THEN
    INSERT INTO {log} (table_name, op, pk) VALUES (TG_TABLE_NAME, left(TG_OP, 1), k::text);
  END IF;
  IF o IS NOT NULL AND (r IS NULL OR ok <> k) THEN
    INSERT INTO {log} (table_name, op, pk) VALUES (TG_TABLE_NAME, 'D', ok::text);
  END IF;
  RETURN NULL;
END"""


_tables: dict[str | None, tuple[sa.Table, sa.Table]] = {}


def changelog_tables(schema: str | None) -> tuple[sa.Table, sa.Table]:
    """The changelog and its meta table in `schema` (built once per schema: an idle venue is read
    every interval, and statements over the same Table objects reuse their compiled form)."""
    hit = _tables.get(schema)
    if hit is None:
        hit = _tables[schema] = _changelog_tables(schema)
    return hit


def _changelog_tables(schema: str | None) -> tuple[sa.Table, sa.Table]:
    md = sa.MetaData(schema=schema)
    log_table = sa.Table(
        CHANGELOG, md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sa.Column("pk", sa.Text, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp()),
        sqlite_autoincrement=True,  # never reuse an id after pruning
    )
    meta = sa.Table(
        META, md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    return log_table, meta


def _short(prefix: str, table: str, limit: int = 60) -> str:
    name = f"{prefix}{table}"
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}"


class ChangelogFeed(ChangeFeed):
    kind = "changelog"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_table, self.meta = changelog_tables(self.source.schema)
        self.gap_timeout_s = float(self.options.get("gap_timeout_s", GAP_TIMEOUT_S))

    # -- installing ---------------------------------------------------------------------------

    def _q(self, name: str) -> str:
        return str(self.source.engine.dialect.identifier_preparer.quote(name))

    def _qualified(self, name: str) -> str:
        return f"{self._q(self.source.schema)}.{self._q(name)}" if self.source.schema else self._q(name)

    def _keys(self) -> dict[str, list[str]]:
        return {name: [c.name for c in self.source.table(name).primary_key.columns] for name in self.tables}

    def install(self) -> None:
        """Create the changelog and (re)create one trigger set per synced table; idempotent."""
        with source_errors(self.venue_id), self.source.engine.begin() as conn:
            self.log_table.metadata.create_all(conn, checkfirst=True)
            for stmt in self._trigger_statements(conn):
                conn.exec_driver_sql(stmt)
        log.info("venue=%s changelog installed on %d tables", self.venue_id, len(self.tables))

    def remove(self) -> None:
        with source_errors(self.venue_id), self.source.engine.begin() as conn:
            for stmt in self._drop_statements():
                conn.exec_driver_sql(stmt)
            self.log_table.metadata.drop_all(conn, checkfirst=True)
        log.info("venue=%s changelog removed", self.venue_id)

    def installed(self) -> bool:
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            return bool(sa.inspect(conn).has_table(CHANGELOG, schema=self.source.schema))

    def check(self) -> None:
        if not self.installed():
            raise FeedNotReady(self.venue_id, self.kind,
                               f"not installed; run `cloudsync venue changelog install {self.venue_id}`")

    def _drop_statements(self) -> list[str]:
        dialect = self.source.dialect
        out = []
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names(schema=self.source.schema)
        for table in names:
            if table.lower().startswith("cloudsync_"):
                continue
            if dialect == "mssql":
                out.append(tsql.drop_trigger(table, self.source.schema))
            elif dialect == "postgresql":
                out.append(f"DROP TRIGGER IF EXISTS {self._q(_short('cloudsync_ct_', table))} "
                           f"ON {self._qualified(table)}")
            else:
                for op in "iud":
                    out.append(f"DROP TRIGGER IF EXISTS {self._qualified(_short(f'cloudsync_{op}_', table))}")
        if dialect == "postgresql":
            out.append(f"DROP FUNCTION IF EXISTS {self._qualified('cloudsync_changelog_capture')}()")
        return out

    def _trigger_statements(self, conn: Connection) -> list[str]:
        dialect = self.source.dialect
        keys = self._keys()
        if dialect == "mssql":
            return tsql.changelog_statements(keys, CHANGELOG, self.source.schema)
        if dialect == "postgresql":
            return self._postgres(keys)
        if dialect in ("mysql", "mariadb", "sqlite"):
            return self._row_triggers(keys, dialect)
        raise FeedNotReady(self.venue_id, self.kind, f"no changelog triggers for {dialect}")

    def _postgres(self, keys: dict[str, list[str]]) -> list[str]:
        func = self._qualified("cloudsync_changelog_capture")
        body = _PG_CAPTURE.replace("{log}", self._qualified(CHANGELOG))
        out = [f"CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $cs${body}$cs$"]
        for table, cols in keys.items():
            trig = self._q(_short("cloudsync_ct_", table))
            args = ", ".join("'" + c.replace("'", "''") + "'" for c in cols)
            out.append(f"DROP TRIGGER IF EXISTS {trig} ON {self._qualified(table)}")
            out.append(f"CREATE TRIGGER {trig} AFTER INSERT OR UPDATE OR DELETE ON {self._qualified(table)} "
                       f"FOR EACH ROW EXECUTE FUNCTION {func}({args})")
        return out

    def _row_triggers(self, keys: dict[str, list[str]], dialect: str) -> list[str]:
        """MariaDB and SQLite: three row triggers per table (neither has multi-event triggers)."""
        out = []
        log_name = self._qualified(CHANGELOG)
        array = "json_array" if dialect == "sqlite" else "JSON_ARRAY"
        for table, cols in keys.items():
            lit = "'" + table.replace("\\", "\\\\" if dialect != "sqlite" else "\\").replace("'", "''") + "'"

            def key(alias: str, cols: list[str] = cols) -> str:
                return f"{array}({', '.join(f'{alias}.{self._q(c)}' for c in cols)})"

            def insert(op: str, alias: str, lit: str = lit, key: Any = key) -> str:
                # quoted reflected names, and the table name as an escaped literal
                return f"INSERT INTO {log_name} (table_name, op, pk) VALUES ({lit}, '{op}', {key(alias)})"  # noqa: S608

            same = " AND ".join(f"OLD.{self._q(c)} {'IS' if dialect == 'sqlite' else '<=>'} NEW.{self._q(c)}"
                                for c in cols)
            target = self._qualified(table)
            names = {op: self._qualified(_short(f"cloudsync_{op}_", table)) for op in "iud"}
            for name in names.values():
                out.append(f"DROP TRIGGER IF EXISTS {name}")
            if dialect == "sqlite":
                out.append(f"CREATE TRIGGER {names['i']} AFTER INSERT ON {target} BEGIN {insert('I', 'NEW')}; END")
                out.append(f"CREATE TRIGGER {names['u']} AFTER UPDATE ON {target} BEGIN {insert('U', 'NEW')}; "
                           f"INSERT INTO {log_name} (table_name, op, pk) SELECT {lit}, 'D', {key('OLD')} "
                           f"WHERE NOT ({same}); END")
                out.append(f"CREATE TRIGGER {names['d']} AFTER DELETE ON {target} BEGIN {insert('D', 'OLD')}; END")
            else:
                out.append(f"CREATE TRIGGER {names['i']} AFTER INSERT ON {target} FOR EACH ROW {insert('I', 'NEW')}")
                out.append(f"CREATE TRIGGER {names['u']} AFTER UPDATE ON {target} FOR EACH ROW BEGIN "
                           f"{insert('U', 'NEW')}; IF NOT ({same}) THEN {insert('D', 'OLD')}; END IF; END")
                out.append(f"CREATE TRIGGER {names['d']} AFTER DELETE ON {target} FOR EACH ROW {insert('D', 'OLD')}")
        return out

    # -- reading --------------------------------------------------------------------------------

    def _pruned_upto(self, conn: Connection) -> int:
        value = conn.execute(sa.select(self.meta.c.value).where(self.meta.c.name == "pruned_upto")).scalar()
        return int(value or 0)

    def position(self) -> Position:
        """The top id now, with the ids just below it that are not (yet) visible as gaps."""
        c = self.log_table.c
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(c.id))).scalar()
            pruned = self._pruned_upto(conn)
            top = max(int(top or 0), pruned)
            floor = max(top - POSITION_WINDOW_IDS, pruned)
            seen = {int(i) for (i,) in conn.execute(sa.select(c.id).where(c.id > floor))}
        now = time.time()
        gaps = {str(i): now for i in range(floor + 1, top + 1) if i not in seen}
        return {"id": top, "gaps": gaps}

    def _read_statement(self, limit_keys: int, with_gaps: bool) -> sa.CompoundSelect:
        """Entries after `:top` (and the open gaps in `:gaps`), plus the pruning mark as a row with an
        empty table name: one round trip. Built once per schema, limit and shape, so its cache key
        is memoized and an idle poll compiles nothing."""
        key = (self.source.schema, limit_keys, with_gaps)
        stmt = _statements.get(key)
        if stmt is None:
            c, m = self.log_table.c, self.meta.c
            cond = c.id > sa.bindparam("top", type_=sa.BigInteger)
            if with_gaps:
                cond = sa.or_(cond, c.id.in_(sa.bindparam("gaps", expanding=True, type_=sa.BigInteger)))
            recent = sa.select(c.id, c.table_name, c.pk).where(cond).order_by(c.id).limit(limit_keys).subquery()
            stmt = _statements[key] = sa.union_all(
                sa.select(recent.c.id, recent.c.table_name, recent.c.pk),
                sa.select(m.value, sa.literal("", sa.String(128)), sa.literal("", sa.Text))
                .where(m.name == "pruned_upto"),
            )
        return stmt

    def changes_since(self, position: Position, limit_keys: int = 50_000) -> Changes:
        top = int(position["id"])
        gaps = {int(k): float(v) for k, v in (position.get("gaps") or {}).items()}
        params: dict[str, Any] = {"top": top}
        if gaps:
            params["gaps"] = sorted(gaps)
        stmt = self._read_statement(limit_keys, bool(gaps))
        with source_errors(self.venue_id), self.source.engine.connect() as conn:
            fetched = conn.execute(stmt, params).all()
        pruned = max([0, *(int(r[0]) for r in fetched if r[1] == "")])
        if pruned > top or any(g <= pruned for g in gaps):
            raise FeedExpired(self.venue_id, self.kind, f"changelog pruned up to id {pruned}, position is at id {top}")
        rows = sorted((r for r in fetched if r[1] != ""), key=lambda r: int(r[0]))
        changes = Changes()
        wanted = set(self.tables) if rows else set()
        seen_ids = set()
        for id_, table_name, pk in rows:
            seen_ids.add(int(id_))
            if table_name not in wanted:
                continue
            raw = json.loads(pk)
            if isinstance(raw, dict):  # SQL Server writes {"k0": …, "k1": …}
                raw = [raw[f"k{i}"] for i in range(len(raw))]
            changes.keys.setdefault(table_name, []).append(coerce_key(self.source.table(table_name), raw))
        now = time.time()
        new_top = max([top, *seen_ids])
        for i in range(top + 1, new_top + 1):
            if i not in seen_ids:
                gaps[i] = now
        for i in seen_ids:
            gaps.pop(i, None)
        expired = [g for g, first in gaps.items() if now - first > self.gap_timeout_s]
        for g in expired:
            gaps.pop(g)
        if len(gaps) > MAX_GAPS:
            for g in sorted(gaps)[:len(gaps) - MAX_GAPS]:
                gaps.pop(g)
        changes.position = {"id": new_top, "gaps": {str(g): t for g, t in sorted(gaps.items())}}
        changes.more = len(rows) >= limit_keys
        return changes

    def acknowledge(self, position: Position) -> None:
        """Prune entries below the position's lowest open gap (those are applied and never re-read)."""
        gaps = [int(g) for g in (position.get("gaps") or {})]
        upto = min([int(position["id"]), *(g - 1 for g in gaps)])
        self.prune(upto)

    def prune(self, upto_id: int) -> int:
        """Delete changelog entries with id <= upto_id and remember it: older positions are expired."""
        c = self.log_table.c
        with source_errors(self.venue_id), self.source.engine.begin() as conn:
            if upto_id <= self._pruned_upto(conn):
                return 0
            removed = conn.execute(self.log_table.delete().where(c.id <= upto_id)).rowcount or 0
            updated = conn.execute(self.meta.update().where(self.meta.c.name == "pruned_upto")
                                   .values(value=upto_id)).rowcount
            if not updated:
                conn.execute(self.meta.insert().values(name="pruned_upto", value=upto_id))
        return int(removed)
