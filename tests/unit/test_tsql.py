"""Every SQL Server statement cloudsync sends parses as T-SQL, and the engine's keyset reads are T-SQL's.

The statements are found generically in every module of `cloudsync/dialects/mssql/` (see that
package's docstring): `tsql_statements()` where a module has one, else its UPPERCASE SQL strings and
its public functions returning `str`/`list[str]` called with example arguments. A module added later
is covered without touching this file; one whose statements cannot be found fails here. A string
counts as a statement when it starts with a T-SQL keyword and has at least four words (so lists of
command names such as "ALTER INDEX" are not taken for statements).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.schema import CreateTable
from sqlglot import exp

import cloudsync.dialects.mssql as mssql_package
from cloudsync.demo import venue as demo_venue
from cloudsync.dialects.mssql import keyset, setup
from cloudsync.errors import ConfigError
from cloudsync.targets.types import cloud_type

KEYS = ["location_id", "txn_id", "line_no"]
#: example arguments by parameter name, for modules without `tsql_statements()`
EXAMPLES: dict[str, Any] = {
    "table": "transaction_lines", "table_name": "transaction_lines", "name": "transaction_lines",
    "schema": "dbo", "keys": KEYS, "key_columns": KEYS, "pk": KEYS, "columns": [*KEYS, "qty", "amount"],
    "column": "row_version", "changelog": "cloudsync_changelog", "database": "venue_demo",
    "tables": {"transaction_lines": KEYS, "clerks": ["clerk_id"]}, "chunk_rows": 1000, "rows": 1000,
}
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|MERGE|CREATE|ALTER|DROP|IF|DECLARE|EXEC|EXECUTE|WITH|SET|"
                       r"BEGIN|TRUNCATE|DBCC)\b", re.IGNORECASE)
#: statements sqlglot keeps as an opaque Command: only these may (sqlglot has no grammar for them)
COMMAND_OK = {"ALTER", "IF", "EXEC", "EXECUTE", "DBCC", "CREATE"}
#: T-SQL forms sqlglot has no grammar for, and the rewrite under which the rest of the statement is
#: parsed (as tests/unit/test_feeds_sql.py does); the form itself must still fail to parse, so this
#: test becomes strict by itself once sqlglot learns it
SQLGLOT_GAPS = {"CHANGETABLE(CHANGES ": "CHANGETABLE("}


def _modules() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(mssql_package.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{mssql_package.__name__}.{n}") for n in names]


def _as_sql(value: Any) -> list[str]:
    if isinstance(value, sa.TextClause):
        return [value.text]
    if isinstance(value, str):
        return [value] if SQL_START.match(value) and len(value.split()) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _as_sql(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _as_sql(v)]
    return []


def _by_introspection(module: ModuleType) -> Iterator[tuple[str, str | Exception]]:
    for fname, func in inspect.getmembers(module, inspect.isfunction):
        if fname.startswith("_") or func.__module__ != module.__name__:
            continue
        sig = inspect.signature(func)
        if str(sig.return_annotation).replace(" ", "") not in {"str", "list[str]", "tuple[str,...]", "dict[str,str]"}:
            continue
        kwargs = {}
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
                continue
            if p.name not in EXAMPLES:
                yield fname, LookupError(f"{module.__name__}.{fname}() needs an example for {p.name!r}: "
                                         "give the module a tsql_statements() or extend EXAMPLES")
                break
            kwargs[p.name] = EXAMPLES[p.name]
        else:
            for i, sql in enumerate(_as_sql(func(**kwargs))):
                yield f"{fname}[{i}]", sql


def collect(module: ModuleType) -> dict[str, str | Exception]:
    """name → statement (or the reason it could not be rendered) for one dialect module."""
    short = module.__name__.rsplit(".", 1)[-1]
    out: dict[str, str | Exception] = {}
    for name, value in vars(module).items():
        if name.isupper() and not name.startswith("_"):  # STATEMENTS, *_SQL and other SQL constants
            for i, sql in enumerate(_as_sql(value)):
                out[f"{short}.{name}[{i}]"] = sql
    finder = getattr(module, "tsql_statements", None)
    if callable(finder):
        out.update({f"{short}.{k}": v for k, v in finder().items()})
    else:
        out.update({f"{short}.{k}": v for k, v in _by_introspection(module)})
    return out


STATEMENTS = {k: v for m in _modules() for k, v in collect(m).items()}


def _balanced(sql: str) -> bool:
    """Brackets, parentheses and quotes close, outside string literals."""
    depth = {"(": 0, "[": 0}
    closing = {")": "(", "]": "["}
    in_string = False
    for ch in sql:
        if ch == "'":
            in_string = not in_string  # '' inside a literal toggles twice: still right
        elif not in_string and ch in depth:
            depth[ch] += 1
        elif not in_string and ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not in_string and all(v == 0 for v in depth.values())


def test_every_dialect_module_exposes_statements() -> None:
    modules = _modules()
    assert {"keyset", "setup"} <= {m.__name__.rsplit(".", 1)[-1] for m in modules}
    for module in modules:
        found = collect(module)
        short = module.__name__.rsplit(".", 1)[-1]
        assert found, f"{module.__name__}: no T-SQL found; add tsql_statements() (see the package docstring)"
        problems = [str(v) for v in found.values() if isinstance(v, Exception)]
        assert not problems, f"{short}: {problems}"


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_parses_as_tsql(name: str) -> None:
    sql = STATEMENTS[name]
    if isinstance(sql, Exception):
        pytest.fail(str(sql), pytrace=False)
    for form, rewrite in SQLGLOT_GAPS.items():
        if form in sql:
            with pytest.raises(sqlglot.errors.ParseError):
                sqlglot.parse_one(sql, read="tsql")
            sql = sql.replace(form, rewrite)
    parsed = sqlglot.parse_one(sql, read="tsql")
    assert parsed is not None
    assert _balanced(sql), f"{name}: unbalanced brackets or quotes: {sql}"
    if isinstance(parsed, exp.Command):
        assert str(parsed.this).upper() in COMMAND_OK, f"{name}: sqlglot could not read {sql!r}"


# -- the engine's keyset reads, as SQL Server gets them ------------------------------------------------

def _no_row_values(tree: exp.Expr) -> None:
    for cmp in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ):
        assert not any(isinstance(side, exp.Tuple) for side in (cmp.left, cmp.right)), f"row value in {cmp.sql()}"


def test_range_reads_use_the_expanded_or_form() -> None:
    table = keyset.sample_table()
    sql = keyset.range_sql(table, (1, 1042, 3), (2, 77, 1))
    tree = sqlglot.parse_one(sql, read="tsql")
    _no_row_values(tree)
    assert not re.search(r"\(\s*[\w.\[\]]+\s*,\s*[\w.\[\]]+[^()]*\)\s*[<>]=?", sql), sql
    where = tree.args["where"].this
    lower, upper = where.this.unnest(), where.expression.unnest()
    # lower bound: loc > 1 OR loc = 1 AND txn > 1042 OR loc = 1 AND txn = 1042 AND line > 3
    lower_terms = list(lower.flatten()) if isinstance(lower, exp.Or) else [lower]
    assert len(lower_terms) == 3 and isinstance(lower_terms[0], exp.GT)
    assert isinstance(list(lower_terms[2].flatten())[-1], exp.GT)
    upper_terms = list(upper.flatten()) if isinstance(upper, exp.Or) else [upper]
    assert len(upper_terms) == 3 and isinstance(list(upper_terms[2].flatten())[-1], exp.LTE)
    assert [o.this.name for o in tree.args["order"].expressions] == KEYS
    assert "LIMIT" not in sql.upper() and "OFFSET" not in sql.upper()


def test_open_ranges_and_pages() -> None:
    table = keyset.sample_table()
    assert "WHERE 1 = 1 ORDER BY" in keyset.range_sql(table, None, None)
    page = keyset.page_sql(table, (1, 1042, 3), 5000)
    tree = sqlglot.parse_one(page, read="tsql")
    assert page.startswith("SELECT TOP 5000 "), page
    assert tree.args["limit"].expression.name == "5000" and tree.args.get("order") is not None
    _no_row_values(tree)


def test_plan_uses_row_number_without_order_in_the_derived_table() -> None:
    sql = keyset.plan_sql(keyset.sample_table(), 20000)
    tree = sqlglot.parse_one(sql, read="tsql")
    sub = tree.find(exp.Subquery)
    assert sub is not None and sub.alias == "cs_keys"
    inner = sub.this
    # T-SQL refuses ORDER BY in a derived table without TOP: the order lives in OVER (...) only
    assert inner.args.get("order") is None and inner.args.get("limit") is None
    window = inner.find(exp.Window)
    assert window is not None and isinstance(window.this, exp.RowNumber)
    assert [o.this.name for o in window.args["order"].expressions] == KEYS
    assert "% 20000 = 0" in sql and tree.args.get("order") is not None


def test_read_keys_is_an_or_of_ands() -> None:
    wanted = [(1, 1042, 3), (2, 77, 1)]
    sql = keyset.read_keys_sql(keyset.sample_table(), wanted)
    tree = sqlglot.parse_one(sql, read="tsql")
    _no_row_values(tree)
    terms = list(tree.args["where"].this.flatten())
    assert len(terms) == 2 and all(isinstance(t, exp.And) for t in terms)
    assert " IN (" not in sql


def test_renderings_with_bound_parameters_use_pyodbc_markers() -> None:
    table = keyset.sample_table()
    sql = keyset.render(sa.select(table.c.qty).where(table.c.txn_id > 5), literal=False)
    assert sql == "SELECT dbo.transaction_lines.qty FROM dbo.transaction_lines WHERE dbo.transaction_lines.txn_id > ?"


# -- the demo venue and SQL Server types ----------------------------------------------------------------

@pytest.mark.parametrize("dialect", [keyset.dialect(), mssql.dialect()], ids=["sql-server-2022", "no-version"])
def test_demo_venue_schema_compiles_for_sql_server(dialect: sa.Dialect) -> None:
    for table in demo_venue.metadata.sorted_tables:
        ddl = " ".join(str(CreateTable(table).compile(dialect=dialect)).split())
        assert not re.search(r"\b(IMAGE|NTEXT|TEXT)\b", ddl), f"deprecated SQL Server type in {ddl}"
        assert sqlglot.parse_one(ddl, read="tsql") is not None
    products = " ".join(str(CreateTable(demo_venue.products).compile(dialect=dialect)).split())
    assert "image_hash VARBINARY(16)" in products and "name NVARCHAR(120)" in products
    lines = " ".join(str(CreateTable(demo_venue.transaction_lines).compile(dialect=dialect)).split())
    assert "modifiers NVARCHAR(max)" in lines


def test_sql_server_types_map_to_postgresql() -> None:
    pg = postgresql.dialect()
    got = {c.name: cloud_type(c.type, "postgresql").compile(dialect=pg) for c in keyset.sample_table().columns}
    assert got == {"location_id": "SMALLINT", "txn_id": "INTEGER", "line_no": "SMALLINT", "product_id": "INTEGER",
                   "qty": "NUMERIC(10, 3)", "amount": "NUMERIC(12, 2)", "modifiers": "TEXT", "image_hash": "BYTEA",
                   "changed_at": "TIMESTAMP WITHOUT TIME ZONE"}
    assert cloud_type(mssql.MONEY(), "postgresql").compile(dialect=pg) == "NUMERIC(19, 4)"
    assert cloud_type(mssql.BIT(), "postgresql").compile(dialect=pg) == "BOOLEAN"
    assert cloud_type(mssql.DATETIMEOFFSET(), "postgresql").compile(dialect=pg) == "TIMESTAMP WITH TIME ZONE"


# -- change tracking set-up ---------------------------------------------------------------------------

def test_change_tracking_statements_cover_every_table_once_and_in_order() -> None:
    stmts = setup.change_tracking_statements(["clerks", "products"], "dbo", retention_days=2)
    assert stmts[0] == "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON"
    assert "CHANGE_RETENTION = 2 DAYS" in stmts[1] and stmts[1].startswith("IF NOT EXISTS")
    assert [s.split("ALTER TABLE ")[1].split(" ")[0] for s in stmts[2:]] == ["[dbo].[clerks]", "[dbo].[products]"]
    for sql in stmts:
        assert sqlglot.parse_one(sql, read="tsql") is not None


@pytest.mark.parametrize("bad", ["x]; DROP TABLE y --", "a'b", "", "1abc", "tab le"])
def test_names_that_are_not_plain_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        setup.enable_table_tracking(bad)
    with pytest.raises(ConfigError):
        setup.create_database(bad)


def test_retention_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="between 1 and 365"):
        setup.enable_database_tracking(0)
