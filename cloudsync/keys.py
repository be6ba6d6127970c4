"""Primary-key values: a JSON encoding for key bounds stored on chunks and carried in task arguments,
and the keyset predicates in the expanded form that SQL Server understands (it has no row values):

    (a, b) >  (x, y)   ⇔   a > x OR (a = x AND b > y)
    (a, b) <= (x, y)   ⇔   a < x OR (a = x AND b <= y)
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

Key = tuple[Any, ...]


def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"d": str(value)}
    if isinstance(value, dt.datetime):
        return {"ts": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    raise TypeError(f"cannot encode key value of type {type(value).__name__}")


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, text), = value.items()
    decoders: dict[str, Callable[[str], Any]] = {
        "f": float,
        "d": decimal.Decimal,
        "ts": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "b": base64.b64decode,
        "u": uuid.UUID,
    }
    return decoders[tag](text)


def encode_key(key: Sequence[Any] | None) -> list[Any] | None:
    return None if key is None else [encode_value(v) for v in key]


def decode_key(data: Sequence[Any] | None) -> Key | None:
    return None if data is None else tuple(decode_value(v) for v in data)


def format_key(key: Sequence[Any] | None) -> str:
    if key is None:
        return "…"
    return ",".join(str(v) for v in key)


def after(cols: Sequence[ColumnElement[Any]], key: Sequence[Any]) -> ColumnElement[bool]:
    """`cols > key`, lexicographically, without row-value comparison."""
    terms = []
    for i, col in enumerate(cols):
        eqs = [cols[j] == key[j] for j in range(i)]
        terms.append(sa.and_(*eqs, col > key[i]))
    return sa.or_(*terms)


def at_or_before(cols: Sequence[ColumnElement[Any]], key: Sequence[Any]) -> ColumnElement[bool]:
    """`cols <= key`, lexicographically, without row-value comparison."""
    terms = []
    last = len(cols) - 1
    for i, col in enumerate(cols):
        eqs = [cols[j] == key[j] for j in range(i)]
        terms.append(sa.and_(*eqs, col <= key[i] if i == last else col < key[i]))
    return sa.or_(*terms)


def in_range(cols: Sequence[ColumnElement[Any]], lo: Key | None, hi: Key | None) -> ColumnElement[bool]:
    """Keys in the half-open range (lo, hi]; a missing bound is unbounded."""
    conds: list[ColumnElement[bool]] = []
    if lo is not None:
        conds.append(after(cols, lo))
    if hi is not None:
        conds.append(at_or_before(cols, hi))
    return sa.and_(sa.true(), *conds)


def key_in(cols: Sequence[ColumnElement[Any]], keys: Sequence[Key]) -> ColumnElement[bool]:
    """Rows whose key is one of `keys` (IN for one column, OR of ANDs for composite keys)."""
    if len(cols) == 1:
        return cols[0].in_([k[0] for k in keys])
    return sa.or_(*(sa.and_(*(c == v for c, v in zip(cols, k, strict=True))) for k in keys))
