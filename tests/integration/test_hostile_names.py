"""Hostile names: tables and columns with spaces, quotes, reserved words, SQL fragments and mixed case
sync correctly from PostgreSQL and MariaDB sources (full resync, then incremental changes through the
changelog feed); a name that is not in the reflected schema, even one differing only in case, is refused.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudsync import incremental, resync
from cloudsync.control.venues import add_venue
from cloudsync.db import engine_for
from cloudsync.errors import CloudSyncError
from cloudsync.sources import open_source
from tests.helpers import run_job_inline

pytestmark = pytest.mark.integration

TABLES = ['Guest Tabs', 'order', 'it\'s "quoted"', 'x"; DROP TABLE order; --']
COLUMNS = ["Tab No", "select", "from", "Mixed Case", 'say "hi"', "it's", "a;b--c", "UPPER"]


def _make(dsn: str) -> None:
    engine = engine_for(dsn)
    md = sa.MetaData()
    for name in TABLES:
        sa.Table(name, md,
                 sa.Column("Tab No", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("select", sa.Integer, primary_key=True, autoincrement=False),
                 *(sa.Column(c, sa.Unicode(50)) for c in COLUMNS[2:]))
    with engine.begin() as conn:
        md.create_all(conn)
        for table in md.tables.values():
            conn.execute(table.insert(), [
                {"Tab No": i % 7, "select": i, **{c: f"{c}={i} '\"`\\" for c in COLUMNS[2:]}} for i in range(300)])


def _change(dsn: str) -> None:
    engine = engine_for(dsn)
    md = sa.MetaData()
    with engine.begin() as conn:
        md.reflect(conn, only=TABLES)
        for table in md.tables.values():
            conn.execute(table.update().where(table.c["select"] < 20).values({"Mixed Case": "changed ✓"}))
            conn.execute(table.delete().where(table.c["select"].between(100, 120)))
            conn.execute(table.insert().values({"Tab No": 99, "select": 1000, "UPPER": "new"}))


@pytest.mark.parametrize("source_kind", ["pg_db", "mysql_db"])
def test_hostile_names_sync(request, pg_db, make_ctx, target_equals_source, source_kind):
    src = request.getfixturevalue(source_kind)()
    _make(src)
    ctx = make_ctx(cloud_url=pg_db(), chunk_rows=70)
    add_venue(ctx.control, "v1", src, tables=TABLES)
    incremental.install_changelog(ctx, "v1")
    incremental.configure_feed(ctx, "v1", "changelog")
    job = run_job_inline(ctx, resync.request_full_resync(ctx, "v1"))
    assert job.state == "done", job.error
    assert job.verification["match"], job.verification
    assert sorted(job.verification["tables"]) == sorted(TABLES)
    target_equals_source(ctx, "v1")
    _change(src)
    result = incremental.sync_venue(ctx, "v1")
    assert result.state == "applied" and result.changed_keys >= len(TABLES) * 42, result
    target_equals_source(ctx, "v1")
    # every source table has its cloud table, under the same hostile name
    cloud = sa.inspect(engine_for(ctx.settings.cloud_dsn, "t")).get_table_names()
    assert set(TABLES) <= set(cloud)


@pytest.mark.parametrize("source_kind", ["pg_db", "mysql_db"])
def test_names_not_in_the_schema_are_refused(request, make_ctx, source_kind):
    src = request.getfixturevalue(source_kind)()
    _make(src)
    ctx = make_ctx()
    for wrong in ["guest tabs", "GUEST TABS", "Guest Tabs; DROP TABLE order", "order--", "missing"]:
        with pytest.raises(CloudSyncError, match="not in the source schema"):
            add_venue(ctx.control, "v1", src, tables=[wrong])
    source = open_source("v1", src)
    table = source.table("Guest Tabs")
    for wrong in ["mixed case", "Select", "UPPER; --", "nope"]:
        with pytest.raises(CloudSyncError, match=wrong.split(";")[0]):
            source.column(table, wrong)
    with pytest.raises(CloudSyncError):
        source.table('Guest Tabs"')
