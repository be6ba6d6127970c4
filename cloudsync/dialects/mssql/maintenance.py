"""SQL Server: is the venue database under index maintenance right now?

Two views answer it: `sys.dm_exec_requests` shows running ALTER INDEX / CREATE INDEX / DBCC / ALTER
TABLE commands in this database, and `sys.index_resumable_operations` (SQL Server 2017+) shows
resumable index builds that are running. The login needs VIEW SERVER STATE (or VIEW DATABASE STATE
on 2022) to see other sessions' requests; without it only its own are visible.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Commands of index and storage maintenance as sys.dm_exec_requests names them.
MAINTENANCE_COMMANDS = ("ALTER INDEX", "CREATE INDEX", "DROP INDEX", "ALTER TABLE", "DBCC", "DBCC TABLE CHECK",
                        "DBCC TABLE REPAIR", "UPDATE STATISTIC", "UPDATE STATISTICS")

REQUESTS_SQL = """
SELECT r.session_id, r.command, r.percent_complete, LEFT(CAST(t.text AS nvarchar(4000)), 200) AS sql_text
FROM sys.dm_exec_requests AS r
OUTER APPLY sys.dm_exec_sql_text(r.sql_handle) AS t
WHERE r.database_id = DB_ID()
  AND r.session_id <> @@SPID
  AND (r.command IN ('ALTER INDEX', 'CREATE INDEX', 'DROP INDEX', 'ALTER TABLE', 'UPDATE STATISTIC',
                     'UPDATE STATISTICS')
       OR r.command LIKE 'DBCC%')
"""

RESUMABLE_SQL = """
SELECT OBJECT_NAME(o.object_id) AS table_name, o.name AS index_name, o.state_desc, o.percent_complete
FROM sys.index_resumable_operations AS o
WHERE o.state_desc = 'RUNNING'
"""

STATEMENTS = (REQUESTS_SQL, RESUMABLE_SQL)


def index_maintenance(conn: Connection) -> str | None:
    """A short description of the maintenance running in this database, or None."""
    for row in conn.execute(sa.text(REQUESTS_SQL)):
        m = row._mapping
        what = str(m["command"]).strip()
        detail = f" {str(m['sql_text']).strip()[:80]}" if m["sql_text"] else ""
        return f"{what} (session {m['session_id']}, {float(m['percent_complete'] or 0):.0f}%){detail}"
    try:
        rows = conn.execute(sa.text(RESUMABLE_SQL)).all()
    except sa.exc.DBAPIError as err:  # before SQL Server 2017 the view does not exist
        if "index_resumable_operations" in str(err):
            return None
        raise
    for row in rows:
        m = row._mapping
        return (f"resumable index build {m['index_name']} on {m['table_name']} "
                f"({float(m['percent_complete'] or 0):.0f}%)")
    return None
