"""The re-indexing guard: is the venue database under index maintenance, or inside a declared window?

A resync reading a venue while its indexes are rebuilt slows the rebuild and the venue's trading, and
may block on its locks. So before a resync starts and before each chunk, the venue database is asked
(a chunk takes another chunk's answer that found nothing, if it is younger than `reindex_check_ms`:
`cloudsync.guards._reindexing`):

- PostgreSQL: `pg_stat_progress_create_index` (CREATE INDEX, REINDEX), `pg_stat_progress_cluster`
  (CLUSTER, VACUUM FULL) and, for commands still waiting for their locks, `pg_stat_activity`;
- MariaDB/MySQL: ALTER / OPTIMIZE / CREATE INDEX statements in the process list;
- SQL Server: `cloudsync.dialects.mssql.maintenance` (`sys.dm_exec_requests`, `sys.index_resumable_operations`).

Seeing other sessions needs the monitoring privilege of each database (pg_read_all_stats, PROCESS,
VIEW SERVER STATE); without it only the sync login's own work is visible.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloudsync.db import engine_for, source_errors
from cloudsync.dialects.mssql import maintenance as mssql_maintenance

log = logging.getLogger(__name__)

# statements that rebuild or reorganise indexes or whole tables
_MAINTENANCE_SQL = re.compile(
    r"^\s*(REINDEX\b|CLUSTER\b|VACUUM\s*(\([^)]*\bFULL\b|FULL\b)|CREATE\s+(UNIQUE\s+)?INDEX\b|"
    r"ALTER\s+(ONLINE\s+|IGNORE\s+)*TABLE\b|OPTIMIZE\s+(NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLE\b|"
    r"DROP\s+INDEX\b|ALTER\s+INDEX\b|REPAIR\s+TABLE\b)",
    re.IGNORECASE,
)

# one statement (one round trip before each chunk): index builds and table rewrites in progress first,
# then the other sessions' active statements (commands still waiting for their locks show only there)
PG_MAINTENANCE_SQL = """
SELECT 1 AS rank, p.pid, p.command, p.phase, p.relid::regclass::text AS relation, NULL AS query
FROM pg_stat_progress_create_index AS p
WHERE p.datname = current_database() AND p.pid <> pg_backend_pid()
UNION ALL
SELECT 1, c.pid, c.command, c.phase, c.relid::regclass::text, NULL
FROM pg_stat_progress_cluster AS c
WHERE c.datname = current_database() AND c.pid <> pg_backend_pid()
UNION ALL
SELECT 2, a.pid, NULL, NULL, NULL, left(a.query, 200)
FROM pg_stat_activity AS a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.state = 'active'
ORDER BY rank
"""

MYSQL_PROCESSLIST_SQL = """
SELECT ID, COMMAND, STATE, LEFT(INFO, 200) AS INFO
FROM information_schema.PROCESSLIST
WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND = 'Query'
"""


def is_maintenance_statement(sql: str | None) -> bool:
    """Whether a statement's text is index or table maintenance."""
    return bool(sql) and bool(_MAINTENANCE_SQL.match(_strip_comments(sql or "")))


def _strip_comments(sql: str) -> str:
    return re.sub(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*", "", sql, flags=re.DOTALL)


def index_maintenance(venue_id: str, dsn: str) -> str | None:
    """What index maintenance is running on the venue database now (a short description), or None."""
    engine = engine_for(dsn, "s")
    backend = engine.dialect.name
    if backend not in ("postgresql", "mysql", "mariadb", "mssql"):
        return None  # SQLite (the demo) has no concurrent maintenance to wait for
    with source_errors(venue_id), engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no BEGIN or ROLLBACK round trips
        if backend == "postgresql":
            found = _postgresql(conn)
        elif backend == "mssql":
            found = mssql_maintenance.index_maintenance(conn)
        else:
            found = _mysql(conn)
    if found:
        log.info("venue=%s index maintenance: %s", venue_id, found)
    return found


def _postgresql(conn: Connection) -> str | None:
    for row in conn.execute(sa.text(PG_MAINTENANCE_SQL)):
        m = row._mapping
        if m["rank"] == 1:
            return f"{m['command']} on {m['relation'] or '?'} (pid {m['pid']}, {m['phase']})"
        if is_maintenance_statement(m["query"]):
            return f"{_first_words(m['query'])} (pid {m['pid']})"
    return None


def _mysql(conn: Connection) -> str | None:
    for row in conn.execute(sa.text(MYSQL_PROCESSLIST_SQL)):
        m = row._mapping
        if is_maintenance_statement(m["INFO"]):
            return f"{_first_words(m['INFO'])} (connection {m['ID']}, {m['STATE'] or 'running'})"
    return None


def _first_words(sql: str, limit: int = 80) -> str:
    text = " ".join(_strip_comments(sql).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
