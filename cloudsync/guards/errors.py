"""The guards' own refusals, placed in cloudsync's error tree (`cloudsync.errors`).

    TerminalError
    ├── BadHours            a schedule, period, time or date staff typed cannot be read
    ├── BadLimit            a rate or concurrency limit is out of range
    ├── TradingHours        a full resync asked for while the venue trades, without the override
    └── UnderMaintenance    the venue database is being re-indexed or inside a declared window

Both refusals are terminal for the request (a person decides when to ask again); a running chunk
that meets maintenance raises `cloudsync.errors.Paused` instead and waits.
"""

from __future__ import annotations

from cloudsync.errors import TerminalError


class BadHours(TerminalError):
    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"bad hours {text.strip()!r}: {problem}", text=text, problem=problem)


class BadLimit(TerminalError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"bad limit {name}: {problem}", name=name, problem=problem)


class TradingHours(TerminalError):
    def __init__(self, venue: str, local_time: str, until: str) -> None:
        super().__init__(
            f"venue {venue}: trading hours now ({local_time}{', until ' + until if until else ''}); "
            "a full resync degrades its services: retry outside trading hours or pass --during-trading",
            venue=venue, local_time=local_time, until=until,
        )


class UnderMaintenance(TerminalError):
    def __init__(self, venue: str, reason: str) -> None:
        super().__init__(f"venue {venue}: database under maintenance ({reason}); retry when it ends",
                         venue=venue, reason=reason)
