"""The errors cloudsync raises, one tree for the engine, the tasks and the CLI.

    CloudSyncError                  every error the engine raises on purpose
    ├── TransientError              retry with backoff; the world may change
    │   ├── SourceUnavailable       venue database unreachable or connection dropped
    │   ├── TargetUnavailable       cloud database unreachable or connection dropped
    │   ├── ControlUnavailable      control database unreachable or connection dropped
    │   ├── Paused                  a guard holds the work back (re-indexing, rate limit)
    │   └── ChunkBusy               another live worker holds this chunk's lease
    └── TerminalError               fail, with a message a person can act on
        ├── ConfigError             a setting is missing or malformed
        ├── BadDSN                  a database URL cannot be used
        ├── UnknownVenue / UnknownJob / UnknownTable / UnknownColumn
        ├── NoPrimaryKey            a table cannot be chunked or upserted without one
        ├── SchemaDrift             an incompatible source type change
        ├── AlreadyRunning          a resync of that venue is already running
        ├── JobStateError           the job cannot do that in its current state
        ├── StaleFence              a writer's fencing token is no longer current
        └── ChunkFailed             a chunk failed for good (carries table and key range)

Every error keeps its facts as attributes, builds its message once and survives pickling, because
Celery carries errors between processes.
"""

from __future__ import annotations

from typing import Any


class CloudSyncError(Exception):
    """Root of every error cloudsync raises on purpose."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts
        for name, value in facts.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.facts))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[CloudSyncError], message: str, facts: dict[str, Any]) -> CloudSyncError:
    err = cls.__new__(cls)
    CloudSyncError.__init__(err, message, **facts)
    return err


class TransientError(CloudSyncError):
    """Retry later: the cause is expected to go away by itself."""


class TerminalError(CloudSyncError):
    """Retrying will not help; a person has to act on the message."""


class SourceUnavailable(TransientError):
    def __init__(self, venue: str, detail: str) -> None:
        super().__init__(f"venue {venue}: source database unavailable: {detail}", venue=venue, detail=detail)


class TargetUnavailable(TransientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"cloud database unavailable: {detail}", detail=detail)


class ControlUnavailable(TransientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"control database unavailable: {detail}", detail=detail)


class Paused(TransientError):
    """A guard holds the work; retry after `countdown_s` without counting it as a failure."""

    def __init__(self, venue: str, reason: str, countdown_s: float) -> None:
        super().__init__(f"venue {venue}: paused: {reason}", venue=venue, reason=reason, countdown_s=countdown_s)


class ChunkBusy(TransientError):
    def __init__(self, chunk_id: int, owner: str) -> None:
        super().__init__(f"chunk {chunk_id} is held by {owner}", chunk_id=chunk_id, owner=owner)


class ConfigError(TerminalError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}", setting=setting, problem=problem)


class BadDSN(TerminalError):
    def __init__(self, dsn_masked: str, problem: str) -> None:
        super().__init__(f"bad database URL {dsn_masked}: {problem}", dsn=dsn_masked, problem=problem)


class UnknownVenue(TerminalError):
    def __init__(self, venue: str) -> None:
        super().__init__(f"unknown venue: {venue}", venue=venue)


class UnknownJob(TerminalError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"unknown job: {job_id}", job_id=job_id)


class UnknownTable(TerminalError):
    def __init__(self, venue: str, table: str) -> None:
        super().__init__(f"venue {venue}: table {table!r} is not in the source schema", venue=venue, table=table)


class UnknownColumn(TerminalError):
    def __init__(self, venue: str, table: str, column: str) -> None:
        super().__init__(
            f"venue {venue}: column {column!r} is not in table {table!r}", venue=venue, table=table, column=column
        )


class NoPrimaryKey(TerminalError):
    def __init__(self, venue: str, table: str) -> None:
        super().__init__(
            f"venue {venue}: table {table!r} has no primary key; cloudsync needs one to chunk and upsert it",
            venue=venue,
            table=table,
        )


class SchemaDrift(TerminalError):
    def __init__(self, table: str, column: str, source_type: str, target_type: str) -> None:
        super().__init__(
            f"table {table!r} column {column!r}: source type {source_type} is incompatible with "
            f"cloud type {target_type}; fix the cloud table or reset the venue",
            table=table,
            column=column,
            source_type=source_type,
            target_type=target_type,
        )


class AlreadyRunning(TerminalError):
    def __init__(self, venue: str, job_id: int) -> None:
        super().__init__(f"venue {venue}: a resync is already running: job {job_id}", venue=venue, job_id=job_id)


class JobStateError(TerminalError):
    def __init__(self, job_id: int, state: str, wanted: str) -> None:
        super().__init__(f"job {job_id} is {state}; cannot {wanted}", job_id=job_id, state=state, wanted=wanted)


class StaleFence(TerminalError):
    def __init__(self, job_id: int, chunk_id: int, token: int, current: int) -> None:
        super().__init__(
            f"job {job_id} chunk {chunk_id}: fencing token {token} is stale (current {current}); write refused",
            job_id=job_id,
            chunk_id=chunk_id,
            token=token,
            current=current,
        )


class ChunkFailed(TerminalError):
    def __init__(self, table: str, lo: object, hi: object, detail: str) -> None:
        super().__init__(
            f"table {table!r} keys ({lo}, {hi}]: {detail}", table=table, lo=lo, hi=hi, detail=detail
        )
