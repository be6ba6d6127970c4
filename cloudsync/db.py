"""SQLAlchemy engines, one per URL per process, and the wrapping of driver errors into cloudsync's tree."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from cloudsync.dsn import mask_dsn, parse_dsn
from cloudsync.errors import BadDSN, ControlUnavailable, SourceUnavailable, TargetUnavailable, TerminalError

_engines: dict[tuple[int, str], Engine] = {}

#: PostgreSQL sessions never wait forever: a dead peer is noticed by TCP keepalives, a lock held by
#: a stuck writer (e.g. a duplicate chunk after a restart) errors after LOCK_TIMEOUT_S and is retried,
#: and a transaction abandoned by a killed worker is ended by the server after IDLE_TX_TIMEOUT_S.
PG_CONNECT_TIMEOUT_S = 10
PG_LOCK_TIMEOUT_S = 60
PG_IDLE_TX_TIMEOUT_S = 600
PG_KEEPALIVE_IDLE_S = 15
PG_TCP_USER_TIMEOUT_MS = 60_000


def _pg_connect_args(relaxed: bool = False) -> dict[str, object]:
    args: dict[str, object] = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": PG_KEEPALIVE_IDLE_S,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        "options": f"-c lock_timeout={PG_LOCK_TIMEOUT_S * 1000} "
                   f"-c idle_in_transaction_session_timeout={PG_IDLE_TX_TIMEOUT_S * 1000}"
                   + (" -c synchronous_commit=off -c plan_cache_mode=force_generic_plan" if relaxed else ""),
    }
    if relaxed:
        # a chunk's bookkeeping is the same few statements by primary key, thousands of times: each is
        # prepared on its first use and planned once per connection (planning the chunk's read of its
        # state, a seven-table join, took longer than running it)
        args["prepare_threshold"] = 0
    return args
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def engine_for(dsn: str, role: str = "s", relaxed: bool = False) -> Engine:
    """The process-wide engine for `dsn`; a forked worker gets its own (keyed by pid).

    `relaxed`: a second engine for the same database whose connections are in autocommit and, on
    PostgreSQL, commit without waiting for the disk (`synchronous_commit` off): for the control
    database's lease and checkpoint writes, one statement each (`cloudsync.control.store.chunk_session`).
    """
    key = (os.getpid(), dsn + ("#relaxed" if relaxed else ""))
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        url = parse_dsn(dsn, role)
        # the connection checked in last is handed out first: it is the one least likely to need a ping,
        # and the one whose prepared statements are warm; the others age out instead of taking turns
        kwargs: dict[str, object] = {"pool_use_lifo": True}
        if url.drivername.startswith("sqlite"):
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"connect_args": {"timeout": 60, "check_same_thread": False}}
        elif url.drivername.startswith("mysql"):
            kwargs["pool_recycle"] = 3600
        elif url.drivername.startswith("postgresql"):
            kwargs["connect_args"] = _pg_connect_args(relaxed)
        if relaxed:
            kwargs["isolation_level"] = "AUTOCOMMIT"
        try:
            engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
            raise BadDSN(mask_dsn(dsn), str(err).splitlines()[0]) from err
        if url.drivername.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            _ping_when_idle(engine)
        _engines[key] = engine
        return engine


#: a pooled connection that sat unused longer than this is pinged before it is handed out again
PING_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it sat idle in the pool for `PING_IDLE_S`.

    A connection killed while it waited (a restarted server, a terminated backend) is replaced before
    it is used. One back within a second is handed out as it is: a chunk takes several connections in
    a few milliseconds, and a ping each was a round trip each. If it died in that second, its first
    statement fails as a lost connection: SQLAlchemy invalidates it (the raw-driver COPY paths do the
    same, `driver_error`) and the work is retried on a fresh one.
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi: object, record: object) -> None:
        record.info["cs_idle_since"] = time.monotonic()  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: object, record: object) -> None:
        record.info["cs_idle_since"] = time.monotonic()  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi: Any, record: object, _proxy: object) -> None:
        since = record.info.get("cs_idle_since")  # type: ignore[attr-defined]
        if since is not None and time.monotonic() - since < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as err:  # noqa: BLE001 - any failure means: not usable, take another
            raise sa.exc.DisconnectionError(f"pooled connection failed its ping: {err}") from err


def driver_error(conn: Connection, statement: str, err: Exception, base: type[Exception]) -> sa.exc.StatementError:
    """A raw-driver error (the COPY paths bypass SQLAlchemy's execution) as SQLAlchemy's wrapper, so the
    error wrappers tell transient from terminal; a connection the error left broken is invalidated, so
    the pool never hands it out again. `base`: the driver's base error class."""
    raw = conn.connection.driver_connection
    broken = bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))
    if broken:
        with contextlib.suppress(Exception):
            conn.invalidate()
    return sa.exc.DBAPIError.instance(statement, None, err, base, connection_invalidated=broken)


def dispose_all() -> None:
    """Drop every pooled connection (after a fork, or when a test tears down)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def is_connection_error(err: BaseException) -> bool:
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, ConnectionError))


@contextlib.contextmanager
def source_errors(venue: str) -> Iterator[None]:
    """Wrap driver errors raised while touching a venue database."""
    try:
        yield
    except sa.exc.SQLAlchemyError as err:
        detail = _detail(err)
        if is_connection_error(err):
            raise SourceUnavailable(venue, detail) from err
        raise TerminalError(f"venue {venue}: source error: {detail}", venue=venue) from err
    except (ConnectionError, OSError) as err:
        raise SourceUnavailable(venue, str(err)) from err


@contextlib.contextmanager
def target_errors() -> Iterator[None]:
    """Wrap driver errors raised while touching the cloud database."""
    try:
        yield
    except sa.exc.SQLAlchemyError as err:
        detail = _detail(err)
        if is_connection_error(err) or _is_lock_error(err):
            raise TargetUnavailable(detail) from err
        raise TerminalError(f"cloud database error: {detail}") from err


@contextlib.contextmanager
def control_errors() -> Iterator[None]:
    """A lost control-database connection is transient (the work is retried); other errors pass as they are."""
    try:
        yield
    except sa.exc.SQLAlchemyError as err:
        if not is_connection_error(err):
            raise
        detail = _detail(err)
        raise ControlUnavailable(detail) from err


def _detail(err: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line about an error, with any password in it masked."""
    return mask_dsn(str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err) else type(err).__name__)


def _is_lock_error(err: BaseException) -> bool:
    text = str(err).lower()
    return any(s in text for s in ("database is locked", "deadlock", "could not serialize", "lock timeout"))
