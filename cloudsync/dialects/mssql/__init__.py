"""SQL Server (T-SQL) statements: everything SQL Server-specific lives in this package.

tests/unit/test_tsql.py parses every statement of every module here as T-SQL (sqlglot). It finds
them through `tsql_statements() -> dict[str, str]` (name → statement rendered with example names)
where a module defines one, and otherwise through its UPPERCASE module-level SQL strings and its
public functions returning `str` or `list[str]`, called with example arguments.
"""
