"""Every T-SQL statement the change feeds send to SQL Server parses as T-SQL (sqlglot, read="tsql").

sqlglot 30 has no grammar for two T-SQL forms we use, so those are checked as closely as it allows:
- `CREATE TRIGGER … AS BEGIN … END` falls back to a generic command for its header; the statements
  of the trigger body are parsed strictly, one by one, and the whole text must split cleanly;
- `CHANGETABLE(CHANGES table, @v)`: the `CHANGES` keyword is unknown to it; the statement is parsed
  with the keyword removed (the rest of the query, quoting and the table-valued call must parse).
"""

from __future__ import annotations

import logging

import pytest
import sqlglot
from sqlglot import exp

from cloudsync.dialects.mssql import changes

NAMES = [("transactions", ["location_id", "txn_id"], "dbo"), ("Odd ]Table", ["Order", "line no"], None),
         ("members", ["member_no"], "pos")]


def tsql(sql: str) -> exp.Expression:
    """Strict parse of one statement; SQLAlchemy-style :params become T-SQL @variables."""
    tree = sqlglot.parse_one(sql.replace(":since", "@since").replace(":upto", "@upto"), read="tsql")
    assert not isinstance(tree, exp.Command), f"fell back to a generic command: {sql}"
    return tree


def test_version_queries_parse():
    assert isinstance(tsql(changes.CT_CURRENT_VERSION), exp.Select)
    assert isinstance(tsql(changes.MIN_ACTIVE_ROWVERSION), exp.Select)


@pytest.mark.parametrize(("table", "keys", "schema"), NAMES)
def test_min_valid_version_and_rowversion_queries_parse(table, keys, schema):
    assert isinstance(tsql(changes.ct_min_valid_version(table, schema)), exp.Select)
    tree = tsql(changes.rowversion_changes(table, keys, "row_ver", schema))
    assert isinstance(tree, exp.Select)
    assert tree.find(exp.Table).name == table  # the bracket-quoted name survives, `]` doubled


@pytest.mark.parametrize(("table", "keys", "schema"), NAMES)
def test_changetable_query_parses_but_for_the_changes_keyword(table, keys, schema):
    sql = changes.ct_changes(table, keys, schema)
    assert "CHANGETABLE(CHANGES " in sql
    tree = tsql(sql.replace("CHANGETABLE(CHANGES ", "CHANGETABLE("))
    assert isinstance(tree, exp.Select)
    assert [c.name for c in tree.expressions][:len(keys)] == keys
    with pytest.raises(sqlglot.errors.ParseError):  # if sqlglot learns the form, check it strictly instead
        sqlglot.parse_one(sql.replace(":since", "@since"), read="tsql")


@pytest.mark.parametrize(("table", "keys", "schema"), NAMES)
def test_changelog_trigger_parses(table, keys, schema, caplog):
    body = changes.changelog_trigger_body(table, keys, "cloudsync_changelog", schema)
    assert len(body) == 2
    for stmt in body:
        tree = tsql(stmt)
        assert isinstance(tree, exp.Insert)
        assert tree.find(exp.Table).name == "cloudsync_changelog"
    with caplog.at_level(logging.ERROR, logger="sqlglot"):
        trees = sqlglot.parse(changes.changelog_trigger(table, keys, "cloudsync_changelog", schema), read="tsql")
    inserts = [t for t in trees if isinstance(t, exp.Insert)]
    assert len(inserts) == 2  # both body statements are found inside BEGIN … END
    assert isinstance(trees[0], exp.Command) and trees[0].this == "CREATE"
    drop = tsql(changes.drop_trigger(table, schema))
    assert isinstance(drop, exp.Drop) and drop.args.get("exists")


def test_names_are_quoted_not_pasted():
    sql = changes.changelog_trigger("t]; DROP TABLE x; --", ["a"], "cloudsync_changelog")
    assert "[t]]; DROP TABLE x; --]" in sql
    assert "N't]; DROP TABLE x; --'" in sql
