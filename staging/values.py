"""Value converters: raw text -> the typed value of a Campaign attribute type, raising ValueError
that says what would be accepted; and the fast generation of UUIDs for new rows. Pure."""

import math
import os
import re
import uuid
from datetime import date, datetime, time, timezone
from typing import Any, Callable

from staging.srcschema import Attribute, SchemaDescription

ID_ATTR = "id"

_INT_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "long": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38  # REAL (4-byte float) on PostgreSQL
_BOOLEANS = {"true": 1, "1": 1, "false": 0, "0": 0}
_INT_RE = re.compile(r"^[+-]?\d+$")


def new_uuid() -> str:
    return str(uuid.uuid4())


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # byte 6: version 4
_RFC_4122 = bytes((b & 0x3F) | 0x80 for b in range(256))  # byte 8: the RFC 4122 variant
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of 8-4-4-4-12
_UUID_TEXT = 37  # 36 characters and a separator


def new_uuids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, like str(uuid.uuid4()) but about ten times faster
    for a large count: randomness is drawn from the OS once, the version bits are set for all ids
    at once, and the text is assembled column by column (hex digit j of every id in one slice
    assignment) rather than id by id. An Ingest of 100 000 records generates 100 000 of them."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_4122)
    digits = raw.hex().encode("ascii")  # 32 per id
    text = bytearray(b"-" * (_UUID_TEXT * count))
    text[_UUID_TEXT - 1::_UUID_TEXT] = b"," * count
    at = 0
    for start, end in _UUID_GROUPS:
        for digit in range(start, end):
            text[at + digit - start::_UUID_TEXT] = digits[digit::32]
        at += end - start + 1  # the group and its dash
    return text[:-1].decode("ascii").split(",") if count else []


def uuid_factory(batch: int = 1024) -> Callable[[], str]:
    """A source of random (version 4) UUIDs as text, drawn `new_uuids` at a time. Draws start at 8
    ids and double up to `batch`, so a one-record call does not pay for a thousand ids it never uses."""
    pool: list[str] = []
    size = [min(8, batch)]

    def make() -> str:
        if not pool:
            pool.extend(new_uuids(size[0]))
            size[0] = min(batch, size[0] * 2)
        return pool.pop()

    return make


class _Converters:
    """One conversion function per attribute of a schema, built once per call."""

    def __init__(self, description: SchemaDescription):
        self.by_name: dict[str, tuple[Attribute, Callable]] = {}
        for attribute in description.attributes:
            self.by_name[attribute.name] = (attribute, _converter(description, attribute))


def _converter(description: SchemaDescription, attribute: Attribute) -> Callable[[str], Any]:
    """A function raw text -> typed value that raises ValueError with what would be accepted."""
    kind = attribute.type
    if description.autopk and attribute.name == ID_ATTR:
        base = _string_converter(attribute.length or 255)  # caller keys such as "ABC12345" are kept as-is
    elif kind == "string":
        base = _string_converter(attribute.length)
    elif kind == "memo":
        base = str
    elif kind == "boolean":
        base = _to_boolean
    elif kind in _INT_RANGES:
        base = _integer_converter(kind)
    elif kind in ("float", "double"):
        base = _float_converter(kind)
    elif kind == "date":
        base = parse_date
    elif kind == "time":
        base = parse_time
    elif kind == "datetimenotz":
        base = parse_datetime_naive
    elif kind in ("datetime", "datetimetz"):
        base = parse_datetime
    elif kind == "uuid":
        base = _to_uuid
    else:  # srcschema only lets the types above through
        raise ValueError(f"unsupported type {kind}")
    if not attribute.enum:
        return base
    enumeration = description.enumerations_by_name.get(attribute.enum)

    def from_enumeration(raw: str):
        stored = enumeration.accepts(raw)
        if stored is None:
            listed = ", ".join(v.value if v.value == v.name else f"{v.value} ({v.name})" for v in enumeration.values)
            raise ValueError(f"not a value of enumeration '{enumeration.name}'; accepted: {listed}")
        return base(stored)

    return from_enumeration


def _string_converter(length: int | None):
    def to_string(raw: str) -> str:
        if length is not None and len(raw) > length:
            raise ValueError(f"is {len(raw)} characters long; the attribute holds at most {length}")
        return raw

    return to_string


def _to_boolean(raw: str) -> int:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError("not a boolean; accepted: true, false, 1, 0") from None


def _integer_converter(kind: str):
    low, high = _INT_RANGES[kind]

    def to_integer(raw: str) -> int:
        text = raw.strip()
        if not _INT_RE.match(text):
            raise ValueError(f"not a whole number ({kind}: {low} to {high})")
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"out of range for {kind} ({low} to {high})")
        return number

    return to_integer


def _float_converter(kind: str):
    def to_float(raw: str) -> float:
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError(f"not a number ({kind}, e.g. 12.5 or 1e-3)") from None
        if math.isnan(number) or math.isinf(number) or (kind == "float" and abs(number) > _FLOAT_MAX):
            raise ValueError(f"out of range for {kind}")
        return number

    return to_float


def _to_uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ValueError("not a UUID (e.g. e1e7c8b3-6f79-44da-a72d-49ed0f73db2c)") from None


_DATETIME_HINT = "accepted: 2026-11-22 10:52:27.000Z (as Campaign writes it) or ISO 8601 (2026-11-22T10:52:27+01:00)"


def _parse_iso_datetime(raw: str) -> datetime:
    text = raw.strip()
    try:
        # Python 3.11 reads ISO 8601 including "Z", a space separator and Campaign's ".000Z".
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date-time; {_DATETIME_HINT}") from None


def parse_datetime(raw: str) -> datetime:
    """An aware UTC datetime; values without an offset are UTC, as Campaign's API dates are."""
    value = _parse_iso_datetime(raw)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_datetime_naive(raw: str) -> datetime:
    """A naive datetime for datetimenotz: the wall-clock time as written (an offset is converted to UTC)."""
    value = _parse_iso_datetime(raw)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def parse_date(raw: str) -> date:
    text = raw.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not a date; accepted: YYYY-MM-DD (e.g. 2026-11-22)") from None
    if value.time() != time(0, 0):
        raise ValueError("a date has no time of day; send YYYY-MM-DD")
    return value.date()


def parse_time(raw: str) -> time:
    try:
        value = time.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError("not a time of day; accepted: HH:MM:SS or HH:MM:SS.fff") from None
    return value.replace(tzinfo=None)

