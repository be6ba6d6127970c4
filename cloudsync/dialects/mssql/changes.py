"""T-SQL for reading changes from a SQL Server venue: changelog triggers, Change Tracking, rowversion.

Every statement here is built from reflected names quoted by SQLAlchemy's SQL Server identifier
preparer (`[name]`, with `]` doubled), never from raw user text, and is checked by the unit tests to
parse as T-SQL with sqlglot. Values (versions, positions) are bound parameters, never pasted in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.dialects import mssql

_PREPARER = mssql.dialect().identifier_preparer

#: the current Change Tracking version: read it BEFORE the changes, so nothing committed later is skipped
CT_CURRENT_VERSION = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS version"

#: the lowest rowversion still held by an open transaction: everything below it is committed
MIN_ACTIVE_ROWVERSION = "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) AS rv"


def quote(name: str) -> str:
    return str(_PREPARER.quote_identifier(name))


def qualified(table: str, schema: str | None = None) -> str:
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def _literal(text: str) -> str:
    return "N'" + text.replace("'", "''") + "'"


def ct_min_valid_version(table: str, schema: str | None = None) -> str:
    """The oldest version from which CHANGETABLE still answers for `table` (NULL: tracking is off)."""
    return (f"SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID({_literal(qualified(table, schema))})) "
            "AS min_valid")


def ct_changes(table: str, keys: Sequence[str], schema: str | None = None) -> str:
    """Keys of `table` changed after version `:since` (one row per key, latest operation)."""
    cols = ", ".join(f"CT.{quote(k)}" for k in keys)
    return (f"SELECT {cols}, CT.SYS_CHANGE_OPERATION AS op "  # noqa: S608 - quoted reflected names
            f"FROM CHANGETABLE(CHANGES {qualified(table, schema)}, :since) AS CT "
            f"ORDER BY CT.SYS_CHANGE_VERSION")


def rowversion_changes(table: str, keys: Sequence[str], column: str, schema: str | None = None) -> str:
    """Keys whose rowversion is in [:since, :upto): committed rows only, when :upto is the min active one."""
    cols = ", ".join(quote(k) for k in keys)
    rv = f"CAST({quote(column)} AS BIGINT)"
    return (f"SELECT {cols} FROM {qualified(table, schema)} "  # noqa: S608 - quoted reflected names
            f"WHERE {rv} >= :since AND {rv} < :upto")


def _key_json(alias: str, keys: Sequence[str]) -> str:
    parts = ", ".join(f"{alias}.{quote(k)} AS k{i}" for i, k in enumerate(keys))
    return f"(SELECT {parts} FOR JSON PATH, WITHOUT_ARRAY_WRAPPER)"


def changelog_trigger_name(table: str) -> str:
    return f"cloudsync_ct_{table}"[:128]


def changelog_trigger_body(table: str, keys: Sequence[str], changelog: str, schema: str | None = None) -> list[str]:
    """The trigger's statements: the new keys (inserts, updates), then old keys that are gone (deletes
    and key changes), each key as a JSON object {"k0": …, "k1": …}."""
    log = qualified(changelog, schema)
    same = " AND ".join(f"i.{quote(k)} = d.{quote(k)}" for k in keys)
    name = _literal(table)
    return [  # quoted reflected names only
        f"INSERT INTO {log} (table_name, op, pk) "  # noqa: S608
        f"SELECT {name}, CASE WHEN EXISTS (SELECT 1 FROM deleted) THEN 'U' ELSE 'I' END, {_key_json('i', keys)} "
        "FROM inserted AS i",
        f"INSERT INTO {log} (table_name, op, pk) "  # noqa: S608
        f"SELECT {name}, 'D', {_key_json('d', keys)} "
        f"FROM deleted AS d WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE {same})",
    ]


def changelog_trigger(table: str, keys: Sequence[str], changelog: str, schema: str | None = None) -> str:
    """One AFTER INSERT, UPDATE, DELETE trigger writing into the changelog in the writer's transaction."""
    trigger = qualified(changelog_trigger_name(table), schema)
    body = "".join(f"  {stmt};\n" for stmt in changelog_trigger_body(table, keys, changelog, schema))
    return (f"CREATE TRIGGER {trigger} ON {qualified(table, schema)} AFTER INSERT, UPDATE, DELETE AS\n"
            f"BEGIN\n  SET NOCOUNT ON;\n{body}END")


def drop_trigger(table: str, schema: str | None = None) -> str:
    return f"DROP TRIGGER IF EXISTS {qualified(changelog_trigger_name(table), schema)}"


def changelog_statements(tables: Mapping[str, Sequence[str]], changelog: str, schema: str | None = None) -> list[str]:
    """Every statement `install` runs after creating the changelog table, in order."""
    out: list[str] = []
    for table, keys in tables.items():
        out.append(drop_trigger(table, schema))
        out.append(changelog_trigger(table, keys, changelog, schema))
    return out
