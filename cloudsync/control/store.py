"""The control database: connecting, migrating to the newest schema, and small shared helpers."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cloudsync.db import engine_for
from cloudsync.dsn import mask_dsn
from cloudsync.errors import TerminalError

MIGRATIONS = Path(__file__).with_name("migrations")
_migrated: set[str] = set()
_lock = threading.Lock()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


Bind = Engine | Connection


@contextlib.contextmanager
def reading(bind: Bind) -> Iterator[Connection]:
    """`bind` as it is when it is a connection (the caller's session or transaction), else a pooled one.

    Lets a caller run several reads or writes on one checkout, and several writes in one commit.
    """
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


@contextlib.contextmanager
def writing(bind: Bind) -> Iterator[Connection]:
    """A transaction: the caller's when `bind` is a connection (the caller commits), else one of its own."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.begin() as conn:
        yield conn


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the control schema to the newest revision (every head: issues add branches)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def control_engine(dsn: str) -> Engine:
    """The control database's engine, migrated once per process."""
    engine = engine_for(dsn, role="t")
    with _lock:
        if dsn not in _migrated:
            try:
                migrate(engine)
            except SQLAlchemyError as err:
                raise TerminalError(
                    f"control database {mask_dsn(dsn)} unusable: {str(getattr(err, 'orig', err)).splitlines()[0]}"
                ) from err
            _migrated.add(dsn)
    return engine


@contextlib.contextmanager
def chunk_session(control: Engine) -> Iterator[Engine | Connection]:
    """One control-database session for the whole of a chunk's bookkeeping (PostgreSQL), else the engine.

    A chunk reads its state, claims its lease, checks its fence and checkpoints itself: on a pooled
    engine that is a checkout (with its ping), BEGIN, SET, the statement and COMMIT for each, about a
    dozen round trips. On this session each is one statement in autocommit, committed without waiting
    for the disk (what `jobs._relaxed` does per transaction; a lost lease or checkpoint write only makes
    a chunk run again). A job's state changes still commit synchronously (`jobs.settle_job`).
    """
    if control.dialect.name != "postgresql":
        yield control
        return
    relaxed = engine_for(control.url.render_as_string(hide_password=False), role="t", relaxed=True)
    with relaxed.connect() as conn:
        yield conn
