"""Database URLs: validation with clear messages, and masking so passwords never reach output or logs."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cloudsync.errors import BadDSN

#: dialect+driver pairs cloudsync supports, as a source (s) and/or a target (t)
SUPPORTED = {
    "sqlite": "st",
    "postgresql": "st",
    "postgresql+psycopg": "st",
    "mysql+pymysql": "s",
    "mariadb+pymysql": "s",
    "mysql+pyodbc": "s",
    "mssql+pyodbc": "s",
}

# a password may hold spaces (SQLAlchemy renders them as they are), never an unescaped "/" or "@"
_PASSWORD_IN_URL = re.compile(r"(?P<pre>[a-z0-9+]+://[^:/@\s]*:)(?P<pw>[^@/\n]*)(?P<post>@)", re.IGNORECASE)
# ODBC `PWD=` / `Password=`, also URL-encoded inside `odbc_connect=` (`;` is %3B, `=` is %3D)
_PASSWORD_IN_ODBC = re.compile(
    r"(?P<pre>(?:^|(?<=[;?&\s{])|(?<=%3B))(?:PWD|Password)\s*(?:=|%3D)\s*)"
    r"(?P<pw>\{[^}]*\}|%7B.*?%7D|(?:(?!%3B)[^;&\s])*)",
    re.IGNORECASE,
)


def mask_dsn(text: str) -> str:
    """Replace every password in `text` (URL userinfo or ODBC `PWD=`) with ***."""
    text = _PASSWORD_IN_URL.sub(lambda m: m["pre"] + "***" + m["post"], text)
    return _PASSWORD_IN_ODBC.sub(lambda m: m["pre"] + "***", text)


def parse_dsn(dsn: str, role: str = "s") -> URL:
    """Parse and check a URL; `role` is "s" for a venue source, "t" for the cloud target."""
    shown = mask_dsn(dsn)
    try:
        url = make_url(dsn)
    except (ArgumentError, ValueError) as err:
        raise BadDSN(shown, "not a database URL (expected e.g. postgresql+psycopg://user@host/db)") from err
    name = url.drivername
    if name == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
        name = url.drivername
    if name == "mariadb+pymysql":
        url = url.set(drivername="mysql+pymysql")
        name = url.drivername
    if name not in SUPPORTED:
        raise BadDSN(shown, f"unsupported driver {name!r}; use one of {', '.join(sorted(SUPPORTED))}")
    if role not in SUPPORTED[name]:
        raise BadDSN(shown, f"{name} cannot be used as {'a target' if role == 't' else 'a source'}")
    if not name.startswith("sqlite") and not (url.host or url.query.get("odbc_connect")):
        raise BadDSN(shown, "no host")
    if name.startswith("sqlite") and not url.database:
        raise BadDSN(shown, "no database file")
    return url
