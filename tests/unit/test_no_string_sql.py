"""No string-built SQL: a lint, with `ast`, over the product's source (`cloudsync/`, `worker/`, `tasks/`,
`scheduler/`).

Table and column names come from reflection and reach SQL only through SQLAlchemy constructs, which
quote them; values travel as bound parameters. So the text handed to an SQL sink (`text()`,
`exec_driver_sql`, a DB-API `execute`/`executemany`/`executescript`, `literal_column`) must be a
constant: an f-string with substitutions, `%`/`.format` formatting or `+` concatenation is refused,
also when it reaches the sink through a local variable. The few vetted exceptions are listed below
with the reason each is safe; a new one needs a review and an entry here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cloudsync", "worker", "tasks", "scheduler")
SINK_FUNCTIONS = {"text", "literal_column", "exec_driver_sql", "execute", "executemany", "executescript",
                  "DDL"}

#: (path, function, why it is safe): SQL built from strings that is vetted
VETTED: dict[tuple[str, str], str] = {
    ("cloudsync/demo/databases.py", "_create"):
        "CREATE DATABASE cannot take a bound parameter; the name is quoted by the dialect's identifier preparer",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    sink: str
    how: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function}(): {self.how} passed to {self.sink}()"


def _sink_name(call: ast.Call) -> str | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name if name in SINK_FUNCTIONS else None


def _dynamic(node: ast.AST, assigned: dict[str, list[ast.AST]], seen: frozenset[str] = frozenset()) -> str | None:
    """How `node` builds a string at run time, or None when it is constant (or not a string at all)."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string" if any(isinstance(v, ast.FormattedValue) and not _named_constant(v.value)
                                    for v in node.values) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _stringish(node.left, assigned):
        return "%-formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _dynamic(node.left, assigned, seen), _dynamic(node.right, assigned, seen)
        if left or right:
            return left or right
        if _stringish(node.left, assigned) or _stringish(node.right, assigned):
            if not (_constant(node.left) and _constant(node.right)):
                return "string concatenation"
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "format" and _stringish(node.func.value, assigned):
            return ".format()"
        if node.func.attr == "join" and _stringish(node.func.value, assigned):
            return "str.join()"
    if isinstance(node, ast.Name) and node.id in assigned and node.id not in seen:
        for value in assigned[node.id]:
            how = _dynamic(value, assigned, seen | {node.id})
            if how:
                return f"{how} (via variable {node.id!r})"
    if isinstance(node, ast.IfExp):
        return _dynamic(node.body, assigned, seen) or _dynamic(node.orelse, assigned, seen)
    return None


def _named_constant(node: ast.AST) -> bool:
    """`TS_FORMAT`, `self.TS_FORMAT`, `module.SQL`: an UPPER_CASE constant of the code, not input."""
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return bool(name) and name.isupper()


def _constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) or (isinstance(node, ast.JoinedStr) and not any(
        isinstance(v, ast.FormattedValue) for v in node.values))


def _stringish(node: ast.AST, assigned: dict[str, list[ast.AST]]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _stringish(node.left, assigned) or _stringish(node.right, assigned)
    if isinstance(node, ast.Name):
        return any(_stringish(v, assigned) for v in assigned.get(node.id, []))
    return False


def _assignments(scope: ast.AST) -> dict[str, list[ast.AST]]:
    out: dict[str, list[ast.AST]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, []).append(node.value)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) and node.value:
            value = node.value if isinstance(node, ast.AnnAssign) else ast.BinOp(
                ast.Name(node.target.id), node.op, node.value)
            out.setdefault(node.target.id, []).append(value)
    return out


def scan_source(text: str, path: str = "<string>") -> list[Finding]:
    tree = ast.parse(text)
    module_vars = {k: v for k, v in _assignments(tree).items()}
    findings: list[Finding] = []

    def visit(scope: ast.AST, function: str, assigned: dict[str, list[ast.AST]]) -> None:
        for node in ast.iter_child_nodes(scope):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node, node.name, {**module_vars, **_assignments(node)})
                continue
            if isinstance(node, ast.ClassDef):
                visit(node, node.name, assigned)
                continue
            if isinstance(node, ast.Call):
                sink = _sink_name(node)
                if sink and node.args:
                    how = _dynamic(node.args[0], assigned)
                    if how:
                        findings.append(Finding(path, node.lineno, function, sink, how))
            visit(node, function, assigned)

    visit(tree, "<module>", module_vars)
    return findings


def scan_tree() -> list[Finding]:
    findings = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            findings.extend(scan_source(file.read_text(), rel))
    return findings


def test_no_sql_is_built_from_strings_in_the_product():
    found = [f for f in scan_tree() if (f.path, f.function) not in VETTED]
    assert not found, "SQL built from strings (use SQLAlchemy constructs and bound parameters):\n" + "\n".join(
        map(str, found))


def test_every_vetted_exception_still_exists():
    """A vetted entry whose code changed or went away must be reviewed again, not linger."""
    present = {(f.path, f.function) for f in scan_tree()}
    assert not set(VETTED) - present, sorted(set(VETTED) - present)


def test_the_lint_catches_each_way_of_building_sql():
    bad = '''
import sqlalchemy as sa
def f(conn, cur, table, name):
    conn.execute(sa.text(f"SELECT * FROM {table}"))
    conn.exec_driver_sql("DELETE FROM " + table)
    cur.execute("SELECT %s FROM t" % name)
    cur.execute("SELECT {} FROM t".format(name))
    sql = f"DROP TABLE {table}"
    conn.execute(sa.text(sql))
    stmt = "UPDATE t SET a = 1 WHERE b = "
    stmt += name
    cur.executemany(stmt, [])
    conn.execute(sa.text(", ".join([name])))
'''
    found = scan_source(bad)
    assert [f.line for f in found] == [4, 5, 6, 7, 9, 12, 13], [str(f) for f in found]
    good = '''
import sqlalchemy as sa
def f(conn, cur, table, value):
    conn.execute(sa.text("SELECT 1 WHERE a = :a"), {"a": value})
    conn.execute(sa.select(table).where(table.c.a == value))
    cur.execute("SELECT * FROM t WHERE a = %s", (value,))
    sql = ("SELECT 1 "
           "FROM t")
    conn.exec_driver_sql(sql)
    conn.execute(sa.text("SELECT 1 " "FROM t"))
    conn.execute(sa.literal_column(f"'{self.TS_FORMAT}'"))
'''
    assert scan_source(good) == []
