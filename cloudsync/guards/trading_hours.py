"""Trading hours: a weekly schedule in the venue's own time zone plus dated exceptions.

Staff type schedules as `mon-fri 07:00-23:30; sat 10:00-02:00; sun closed`. A period whose end is not
after its start runs past midnight into the next day (Saturday 10:00 to Sunday 02:00). A dated
exception (`2026-12-25 closed`, `2026-12-31 18:00-03:00`) replaces that day's own periods, including
the part of them that would run past midnight; the previous day's late period still ends as planned.

Times are local wall-clock times, so a period means the same hours on both sides of a daylight-saving
change: an instant is converted to the venue's zone and compared as wall time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from cloudsync.guards.errors import BadHours

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {name: i for i, name in enumerate(DAYS)} | {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
    "tues": 1, "thur": 3, "thurs": 3,
}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_PERIOD = re.compile(r"^([^-\s]+)\s*-\s*([^-\s]+)$")
_MINUTES_PER_DAY = 24 * 60

Clock = Callable[[], dt.datetime]


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, order=True)
class Period:
    """Open from `start_min` to `end_min` minutes after the local midnight of its day; end may pass 1440."""

    start_min: int
    end_min: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end_min > _MINUTES_PER_DAY

    def __str__(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min % _MINUTES_PER_DAY if self.end_min != 1440 else 1440)}"


@dataclass(frozen=True)
class Schedule:
    """A venue's week (index 0 = Monday) and its dated exceptions; no periods on a day means closed."""

    week: tuple[tuple[Period, ...], ...] = field(default_factory=lambda: ((),) * 7)
    exceptions: dict[dt.date, tuple[Period, ...]] = field(default_factory=dict)

    def periods_on(self, day: dt.date) -> tuple[Period, ...]:
        """The periods that start on local date `day` (an exception replaces the weekday's)."""
        if day in self.exceptions:
            return self.exceptions[day]
        return self.week[day.weekday()]

    def is_open(self, local: dt.datetime) -> bool:
        """Whether local wall time `local` (naive or aware; its wall clock is used) is within trading hours."""
        day = local.date()
        minute = local.hour * 60 + local.minute + local.second / 60
        if any(p.start_min <= minute < p.end_min for p in self.periods_on(day)):
            return True
        # yesterday's periods that run past midnight into today
        return any(p.start_min <= minute + _MINUTES_PER_DAY < p.end_min
                   for p in self.periods_on(day - dt.timedelta(days=1)))

    def trading(self, at: dt.datetime, tz: str) -> bool:
        """Whether the aware instant `at` falls in trading hours in time zone `tz`."""
        return self.is_open(_aware(at).astimezone(ZoneInfo(tz)))

    def next_change(self, at: dt.datetime, tz: str, horizon_days: int = 9) -> dt.datetime | None:
        """The first instant after `at` at which trading starts or stops (None if nothing changes soon)."""
        zone = ZoneInfo(tz)
        at = _aware(at)
        now_open = self.trading(at, tz)
        local_day = at.astimezone(zone).date()
        candidates: set[dt.datetime] = set()
        for offset in range(-1, horizon_days):
            day = local_day + dt.timedelta(days=offset)
            for p in self.periods_on(day):
                for minute in (p.start_min, p.end_min):
                    wall = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)
                    candidates.add(wall.replace(tzinfo=zone).astimezone(dt.UTC))
            # midnights too: an exception day may end trading there
            midnight = dt.datetime.combine(day, dt.time()).replace(tzinfo=zone).astimezone(dt.UTC)
            candidates.add(midnight)
        for instant in sorted(c for c in candidates if c > at):
            if self.trading(instant, tz) != now_open:
                return instant
        return None

    def describe_week(self) -> str:
        """The weekly schedule in the form the parser reads back."""
        parts = []
        for i, periods in enumerate(self.week):
            parts.append(f"{DAYS[i]} {', '.join(str(p) for p in periods) if periods else 'closed'}")
        return "; ".join(parts)


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- parsing ----------------------------------------------------------------------------------------

def parse_time_min(text: str, *, allow_24: bool = False) -> int:
    """`7:00`, `07:30`, `24:00` (as an end only) → minutes after midnight."""
    m = _TIME.match(text.strip())
    if not m:
        raise BadHours(text, "times are HH:MM, e.g. 07:00")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise BadHours(text, f"{text.strip()} is not a time of day" + (" (24:00 only ends a period)"
                                                                      if hours == 24 and not minutes else ""))
    return hours * 60 + minutes


def parse_periods(text: str) -> tuple[Period, ...]:
    """`closed`, or periods like `07:00-23:30` / `11:00-15:00, 17:00-02:00` → sorted, non-overlapping periods."""
    text = re.sub(r"\s*-\s*", "-", text.strip().lower())
    if text == "closed":
        return ()
    if not text:
        raise BadHours(text, "give opening hours like 07:00-23:30, or closed")
    periods = []
    for piece in re.split(r"[,\s]+(?=\d)", text):
        m = _PERIOD.match(piece.strip().rstrip(","))
        if not m:
            raise BadHours(piece, "a period is HH:MM-HH:MM, e.g. 10:00-02:00 (or closed)")
        start = parse_time_min(m.group(1))
        end = parse_time_min(m.group(2), allow_24=True)
        if end == start:
            raise BadHours(piece, "a period cannot start and end at the same time (use 00:00-24:00 for all day)")
        if end < start:
            end += _MINUTES_PER_DAY  # runs past midnight into the next day
        periods.append(Period(start, end))
    periods.sort()
    for a, b in zip(periods, periods[1:], strict=False):
        if b.start_min < a.end_min:
            raise BadHours(text, f"periods {a} and {b} overlap")
    return tuple(periods)


def _parse_days(text: str) -> list[int]:
    days: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if part in ("daily", "every day", "everyday", "all"):
            days.extend(range(7))
            continue
        bounds = [b.strip() for b in part.split("-")]
        if len(bounds) > 2 or not all(bounds):
            raise BadHours(text, f"{part!r} is not a day or a day range like mon-fri")
        for b in bounds:
            if b not in _DAY_NAMES:
                raise BadHours(text, f"unknown day {b!r} (use mon, tue, wed, thu, fri, sat, sun)")
        first, last = _DAY_NAMES[bounds[0]], _DAY_NAMES[bounds[-1]]
        span = (last - first) % 7
        days.extend((first + i) % 7 for i in range(span + 1))
    return days


def parse_week(text: str) -> tuple[tuple[Period, ...], ...]:
    """`mon-fri 07:00-23:30; sat 10:00-02:00; sun closed` → seven days of periods.

    Days not named are closed; naming a day twice is an error, so a typo never silently wins.
    """
    week: list[tuple[Period, ...] | None] = [None] * 7
    clauses = [c.strip() for c in text.strip().lower().split(";") if c.strip()]
    if not clauses:
        raise BadHours(text, "empty schedule; e.g. \"mon-fri 07:00-23:30; sat 10:00-02:00; sun closed\"")
    for clause in clauses:
        m = re.match(r"^(daily|every day|everyday|[a-z]+(?:\s*[-,]\s*[a-z]+)*)\s+(.+)$", clause)
        if not m:
            raise BadHours(clause, "each part is DAYS HOURS, e.g. mon-fri 07:00-23:30 or sun closed")
        periods = parse_periods(m.group(2))
        for day in _parse_days(m.group(1)):
            if week[day] is not None:
                raise BadHours(clause, f"{DAYS[day]} is given more than once")
            week[day] = periods
    full = tuple(p or () for p in week)
    # an overnight period must not run into the next day's first opening
    for i, periods in enumerate(full):
        if periods and periods[-1].crosses_midnight:
            spill = periods[-1].end_min - _MINUTES_PER_DAY
            nxt = full[(i + 1) % 7]
            if nxt and nxt[0].start_min < spill:
                raise BadHours(text, f"{DAYS[i]} {periods[-1]} runs into {DAYS[(i + 1) % 7]} {nxt[0]}")
    return full


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadHours(text, "dates are YYYY-MM-DD, e.g. 2026-12-25") from None


def parse_schedule(week_text: str | None, exceptions: dict[str, str] | None = None) -> Schedule:
    """A schedule from stored text: the weekly form and {date: 'closed' | periods}."""
    week = parse_week(week_text) if week_text else ((),) * 7
    dated = {parse_date(d): parse_periods(spec) for d, spec in (exceptions or {}).items()}
    return Schedule(week, dated)
