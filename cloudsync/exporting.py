"""Exporting the venue status view to CSV and Excel (XLSX) for operators' reports.

Both formats have the same columns in the same order. The XLSX keeps the status colours as cell
fills on every row (red, yellow, green), like the terminal view, so a saved report reads the same.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cloudsync.status import VenueStatus

# ARGB fills close to Excel's own "bad / neutral / good" cell styles
FILLS = {"red": "FFFFC7CE", "yellow": "FFFFEB9C", "green": "FFC6EFCE"}


def _when(value: dt.datetime | None) -> dt.datetime | None:
    # Excel has no time zones: export UTC wall time (the header says so)
    return value.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0) if value else None


def _progress(s: VenueStatus) -> str:
    if s.job_id is None:
        return ""
    return f"job {s.job_id} {s.job_kind} {s.job_state} {s.job_progress_pct or 0:.1f}%"


COLUMNS: list[tuple[str, Callable[[VenueStatus], Any]]] = [
    ("Venue", lambda s: s.venue_id),
    ("Name", lambda s: s.name),
    ("POS version", lambda s: s.pos_version or ""),
    ("Status", lambda s: s.colour),
    ("Last successful sync (UTC)", lambda s: _when(s.last_success_at)),
    ("Lag (s)", lambda s: None if s.lag_s is None else int(s.lag_s)),
    ("Current job", _progress),
    ("Cloud services", lambda s: s.services),
    ("Last error (UTC)", lambda s: _when(s.last_error_at)),
    ("Last error", lambda s: s.last_error or ""),
    ("Attention", lambda s: "; ".join(s.reasons)),
]
HEADERS = [name for name, _ in COLUMNS]


def export_rows(statuses: Sequence[VenueStatus]) -> list[list[Any]]:
    return [[get(s) for _, get in COLUMNS] for s in statuses]


def write_csv(statuses: Sequence[VenueStatus], path: str | Path) -> int:
    """Write the rows as CSV (UTF-8, header first). Returns the number of venue rows."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADERS)
        for row in export_rows(statuses):
            writer.writerow(["" if v is None else v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v
                             for v in row])
    return len(statuses)


def write_xlsx(statuses: Sequence[VenueStatus], path: str | Path) -> int:
    """Write an Excel workbook, one sheet, each row filled with its status colour. Returns rows written."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = "Venue status"
    sheet.append(HEADERS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for status, row in zip(statuses, export_rows(statuses), strict=True):
        sheet.append(row)
        fill = PatternFill(fill_type="solid", start_color=FILLS[status.colour], end_color=FILLS[status.colour])
        for cell in sheet[sheet.max_row]:
            cell.fill = fill
            if isinstance(cell.value, dt.datetime):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
    for i, name in enumerate(HEADERS, start=1):
        width = max([len(name)] + [len(str(r[i - 1] or "")) for r in export_rows(statuses)])
        sheet.column_dimensions[get_column_letter(i)].width = min(width + 2, 80)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    book.save(path)
    return len(statuses)
