"""Row checksums that agree across databases for equal data.

Values are normalised before hashing (exact decimals without trailing zeros, timestamps in UTC,
binary as hex, NULL as its own marker), rows hash with BLAKE2b, and a table's checksum is the sum of
its row hashes modulo 2**64, so it does not depend on the order rows were read in.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_MASK = (1 << 64) - 1


def normalise(value: Any) -> str:
    if value is None:
        return "\x00N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        text = format(value.normalize(), "f")
        return "0" if text in {"-0", "0"} else text
    if isinstance(value, float):
        return normalise(decimal.Decimal(repr(value)))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def row_hash(row: Sequence[Any]) -> int:
    text = "\x1f".join(normalise(v) for v in row)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@dataclass
class TableSum:
    rows: int = 0
    checksum: int = 0

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.rows += 1
            self.checksum = (self.checksum + row_hash(row)) & _MASK

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "checksum": f"{self.checksum:016x}"}


#: How `row_digest64` joins a row's normalised values; the SQL in `cloudsync/verify/rangehash.py`
#: builds the same bytes inside each database.
FIELD_SEPARATOR = "\x1f"
NULL_MARKER = normalise(None)


def row_digest64(row: Sequence[Any]) -> int:
    """The first 8 bytes (big-endian) of the MD5 of a row's normalised UTF-8 text.

    MD5 rather than BLAKE2b because every database computes it natively (PostgreSQL `md5`, MariaDB
    `MD5`, SQL Server `HASHBYTES('MD5', …)`), so a key range is checksummed where its rows live.
    """
    text = FIELD_SEPARATOR.join(normalise(v) for v in row)
    return int.from_bytes(hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()[:8],
                          "big")
