"""Mapping reflected source column types to cloud column types, per target dialect.

Decimals stay exact, timestamps keep their zone, text stays unicode and binary stays binary. SQLite
has no exact decimal nor zoned timestamp, so there they are stored as canonical text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator, TypeEngine


class ExactDecimal(TypeDecorator[decimal.Decimal]):
    """A decimal stored as its exact text on SQLite (SQLite's NUMERIC would round through a float)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(decimal.Decimal(value))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> decimal.Decimal | None:
        return None if value is None else decimal.Decimal(value)


class ZonedDateTime(TypeDecorator[dt.datetime]):
    """A timestamp with its UTC offset, stored as ISO-8601 text on SQLite."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else value.isoformat()

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        return None if value is None else dt.datetime.fromisoformat(value)


class TextUuid(TypeDecorator[uuid.UUID]):
    impl = sa.String(36)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)


#: SQL Server types that SQLAlchemy cannot turn into a generic type by itself
_NAMED: dict[str, TypeEngine[Any]] = {
    "MONEY": sa.Numeric(19, 4),
    "SMALLMONEY": sa.Numeric(10, 4),
    "ROWVERSION": sa.LargeBinary(),
    "TIMESTAMP": sa.LargeBinary(),  # SQL Server's TIMESTAMP is a rowversion, not a time
    "SQL_VARIANT": sa.Text(),
    "XML": sa.Text(),
}


def generic(source_type: TypeEngine[Any]) -> TypeEngine[Any]:
    name = type(source_type).__name__.upper()
    if name in _NAMED and type(source_type).__module__.startswith("sqlalchemy.dialects.mssql"):
        return _NAMED[name]
    try:
        return source_type.as_generic()
    except NotImplementedError:
        return sa.Text()


def cloud_type(source_type: TypeEngine[Any], target_dialect: str) -> TypeEngine[Any]:
    """The cloud column type for a reflected source column type."""
    gen = generic(source_type)
    sqlite = target_dialect == "sqlite"
    if isinstance(gen, sa.Boolean):
        return sa.Boolean()
    if isinstance(gen, sa.BigInteger):
        return sa.BigInteger()
    if isinstance(gen, sa.SmallInteger):
        return sa.SmallInteger() if not sqlite else sa.Integer()
    if isinstance(gen, sa.Integer):
        return sa.Integer() if not sqlite else sa.BigInteger()
    if isinstance(gen, sa.Float) or (isinstance(gen, sa.Numeric) and not gen.asdecimal):
        return sa.Float(precision=53)
    if isinstance(gen, sa.Numeric):
        return ExactDecimal() if sqlite else sa.Numeric(gen.precision, gen.scale)
    if isinstance(gen, sa.DateTime):
        zoned = bool(getattr(source_type, "timezone", False)) or "OFFSET" in type(source_type).__name__.upper()
        if zoned:
            return ZonedDateTime() if sqlite else sa.DateTime(timezone=True)
        return sa.DateTime()
    if isinstance(gen, (sa.Date, sa.Time, sa.Interval)):
        return type(gen)()
    if isinstance(gen, sa.LargeBinary):
        return sa.LargeBinary()
    if isinstance(gen, sa.Uuid):
        return TextUuid() if sqlite else sa.Uuid()
    if isinstance(gen, sa.JSON):
        return sa.JSON()
    if isinstance(gen, sa.String) and not isinstance(gen, sa.Enum):
        return sa.Text() if sqlite or not gen.length else sa.String(gen.length)
    return sa.Text()


def type_family(t: TypeEngine[Any]) -> str:
    """A coarse family name used to tell a compatible change (wider varchar) from an incompatible one."""
    if isinstance(t, (ExactDecimal,)):
        return "number"
    if isinstance(t, ZonedDateTime):
        return "datetime"
    if isinstance(t, TextUuid):
        return "uuid"
    gen = generic(t)
    for family, kinds in (
        ("boolean", (sa.Boolean,)),
        ("number", (sa.Integer, sa.Numeric, sa.Float)),
        ("datetime", (sa.DateTime,)),
        ("date", (sa.Date,)),
        ("time", (sa.Time,)),
        ("binary", (sa.LargeBinary,)),
        ("uuid", (sa.Uuid,)),
        ("json", (sa.JSON,)),
        ("text", (sa.String,)),
    ):
        if isinstance(gen, kinds):
            return family
    return "text"
