"""Records as callers send them, and their validation against a schema. Pure: no Django, no database.

SOAP documents, REST bodies and ingest files all become `RecordInput`s (raw text per attribute, the
`_key` and `_operation` Campaign's write grammar adds). `validate_records` turns them into `Row`s of
typed values, or into the list of every problem found (record, attribute, value, what is accepted),
so a call is rejected as a whole with everything the caller has to fix. `collapse_rows` then applies
the per-key rules of one call (duplicates refused by Ingest, merged in order by IngestExt and Write),
and `merge_operation` says what an operation does to a row that is already staged.
"""

import csv
import gc
import json
import math
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from itertools import chain, compress, repeat
from operator import attrgetter, is_
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from campaignsite.errors import InvalidInput, Problem
from staging.srcschema import Attribute, SchemaDescription

# Modes: which API the records came through. They differ in operations and technical fields allowed.
INGEST = "ingest"
INGEST_EXT = "ingest_ext"
WRITE = "write"
MODES = (INGEST, INGEST_EXT, WRITE)

INSERT = "insert"
INSERT_OR_UPDATE = "insertOrUpdate"
UPDATE = "update"
DELETE = "delete"
OPERATIONS = (INSERT_OR_UPDATE, INSERT, UPDATE, DELETE)

KEY_ATTR = "_key"
OPERATION_ATTR = "_operation"
SCHEMA_ATTR = "xtkschema"
# Campaign's technical field of staging schemas: `delete="true"` marks a deletion (or, for the
# subscription request log, an opt-out). Accepted by Ingest/IngestExt, stored in iDelete.
DELETE_ATTR = "delete"
ID_ATTR = "id"
_TECHNICAL_ATTRS = frozenset({KEY_ATTR, OPERATION_ATTR, SCHEMA_ATTR})

_INT_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "long": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38  # REAL (4-byte float) on PostgreSQL
_BOOLEANS = {"true": 1, "1": 1, "false": 0, "0": 0}
_XPATH_RE = re.compile(r"^\[?@([A-Za-z][A-Za-z0-9_-]*)\]?$")
_INT_RE = re.compile(r"^[+-]?\d+$")


@contextmanager
def collector_paused():
    """Pause Python's cyclic garbage collector while a call's records are read and built.

    A 100 000-record call allocates a few hundred thousand long-lived objects (records, rows),
    none of them cyclic; each allocation advances the collector, whose full passes over a server's
    heap (Django, the records so far) then cost more than reading the records itself. Usable as a
    decorator; nested pauses leave the collector as the outermost one found it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- Input -------------------------------------------------------------------------------------

@dataclass(slots=True)
class RecordInput:
    """One record as the caller wrote it. Not frozen: a full call builds 100 000 of them, and a frozen
    dataclass pays for its immutability on every construction; nothing changes a record once read."""

    values: dict[str, str | None]  # attribute name -> raw text (None: JSON null)
    key: tuple[str, ...] | None  # from _key: "@email, [@x]" -> ("email", "x"); None when absent
    operation: str | None  # _operation as written, None when absent
    line: int | None = None  # source line (XML element, file line) for error messages


def parse_key(raw: str) -> tuple[str, ...]:
    """`_key="@email, [@folder-id]"` -> ("email", "folder-id"). Parts that are not `@name` XPaths are
    kept as written, so validation can name them."""
    parts = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        match = _XPATH_RE.match(part)
        parts.append(match.group(1) if match else part)
    return tuple(parts)


def record_from_element(element, index: int) -> RecordInput:
    """A record element (`<sampleTableStg a="..." _key="@id"/>`) as a RecordInput.

    Raises InvalidInput for child elements or text inside the record: records are flat documents
    (links and XML collections inside a record are not supported).
    """
    _check_flat(element, index)
    values: dict[str, str | None] = dict(element.attrib)
    values.pop(SCHEMA_ATTR, None)  # read by records_from_xml
    return _record_input(values, element.sourceline)


def _check_flat(element, index: int) -> None:
    for child in element if len(element) else ():
        if isinstance(child.tag, str):
            raise InvalidInput(
                f"Record {index} contains an element <{child.tag}>; records must be flat.",
                [Problem("child elements (links, collections) inside a record are not supported; write the data "
                         "as attributes of the record element", record=index, attribute=child.tag,
                         line=child.sourceline)],
            )
    if element.text and element.text.strip():
        raise InvalidInput(
            f"Record {index} contains text; values go in attributes.",
            [Problem("text content inside a record is not accepted; write values as attributes",
                     record=index, value=element.text.strip(), line=element.sourceline)],
        )


def _record_input(values: dict, line: int | None) -> RecordInput:
    """A RecordInput from attribute values still holding the technical `_key` and `_operation`."""
    key = values.pop(KEY_ATTR, None)
    operation = values.pop(OPERATION_ATTR, None)
    return RecordInput(values=values, key=None if key is None else parse_key(key),
                       operation=None if operation is None else operation.strip(), line=line)


def is_collection(element) -> bool:
    return isinstance(element.tag, str) and element.tag.endswith("-collection")


@collector_paused()
def records_from_xml(root) -> tuple[str | None, list[RecordInput]]:
    """(xtkschema or None, records) of a document: one record element, or `<xxx-collection
    xtkschema=...>` whose child elements are records (each may repeat the same xtkschema)."""
    if not is_collection(root):
        return root.get(SCHEMA_ATTR), [record_from_element(root, 0)]
    schema_id = root.get(SCHEMA_ATTR)
    # A full call holds 100 000 records, so the common collection is read at C speed: one XPath tells
    # whether any record holds text or elements, the attributes of all records are read in one
    # comprehension, and when the whole collection sits on one line (as clients send it) its line is
    # read once. Only a collection where some record is not flat or carries a technical attribute
    # (xtkschema, _key, _operation) goes through the record-by-record path.
    children = list(root.iterchildren("*"))
    all_values = [dict(child.items()) for child in children]
    one_line = not children or children[-1].sourceline == root.sourceline
    flat = not root.xpath("count(*/node())")
    lines = repeat(root.sourceline) if one_line else [child.sourceline for child in children]
    if flat and _TECHNICAL_ATTRS.isdisjoint(chain.from_iterable(all_values)):
        return schema_id, [*map(RecordInput, all_values, repeat(None), repeat(None), lines)]
    records = []
    for index, (child, values, line) in enumerate(zip(children, all_values, lines)):
        own = values.pop(SCHEMA_ATTR, None)
        if own is not None and own != schema_id:
            schema_id = check_record_schema(schema_id, own, index, child.sourceline)
        if not flat:
            _check_flat(child, index)
        records.append(_record_input(values, line))
    return schema_id, records


def check_record_schema(collection_schema: str | None, record_schema: str | None, index: int, line) -> str | None:
    """The schema a collection's record belongs to; a record naming another schema is an error."""
    if record_schema is None or record_schema == collection_schema:
        return collection_schema
    if collection_schema is None and index == 0:
        return record_schema
    raise InvalidInput(
        "The records of one collection must all belong to the same schema.",
        [Problem(f"this record names xtkschema '{record_schema}' but the collection is '{collection_schema}'",
                 record=index, attribute=SCHEMA_ATTR, value=record_schema, line=line)],
    )


# JSON nesting refused beyond this depth (records are two levels deep, `_key` lists three). Deeper
# documents would overflow Python's stack in whatever walks them next (json.dumps, repr, DRF).
JSON_MAX_DEPTH = 64
_JSON_CONTAINERS = frozenset({dict, list})


def json_decode(data: bytes | str, *, what: str = "The JSON body", line: int | None = None):
    """Decoded JSON, or InvalidInput naming the fault (with `line` when the caller counts lines).

    orjson parses without recursing in Python and stops at 1024 levels by itself; then the depth is
    checked level by level at C speed (a 100 000-record body is three levels to look at). orjson
    refuses NaN, Infinity and lone surrogates; integers beyond 64 bits come back as floats.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in exc.msg:
            raise _too_deep(what, line) from None
        raise InvalidInput(f"{what} is not valid JSON.",
                           [Problem(f"{exc.msg} (column {exc.colno})", line=line or exc.lineno)]) from None
    level, depth = _containers([value]), 0
    while level:
        depth += 1
        if depth > JSON_MAX_DEPTH:
            raise _too_deep(what, line)
        kinds = [*map(type, level)]
        dicts = compress(level, map(is_, kinds, repeat(dict)))
        lists = compress(level, map(is_, kinds, repeat(list)))
        level = _containers([*chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(lists))])
    return value


def _containers(values: list) -> list:
    return [*compress(values, map(_JSON_CONTAINERS.__contains__, map(type, values)))]


def _too_deep(what: str, line: int | None) -> InvalidInput:
    return InvalidInput(f"{what} is nested too deeply.",
                        [Problem(f"arrays and objects may be nested at most {JSON_MAX_DEPTH} levels deep",
                                 line=line)])


def json_scalar(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value if isinstance(value, str) else repr(value)
    raise TypeError


def record_from_json(item, index: int, line: int | None = None) -> RecordInput:
    """One JSON object as a RecordInput. `xtkschema` keys are left to the caller (see REST)."""
    if not isinstance(item, dict):
        raise InvalidInput(
            f"Record {index} is not a JSON object.",
            [Problem(f"each record is an object of attribute names to values, got {type(item).__name__}",
                     record=index, line=line)],
        )
    values: dict[str, str | None] = {}
    key = operation = None
    problems = []
    for name, value in item.items():
        if name == KEY_ATTR:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                key = tuple(p for v in value for p in parse_key(v))
            elif isinstance(value, str):
                key = parse_key(value)
            else:
                problems.append(Problem('_key is a string such as "@id" or "@email, @x", or a list of them',
                                        record=index, attribute=KEY_ATTR, value=str(value), line=line))
        elif name == OPERATION_ATTR:
            if isinstance(value, str):
                operation = value.strip()
            else:
                problems.append(Problem(f"_operation is one of {', '.join(OPERATIONS)}",
                                        record=index, attribute=OPERATION_ATTR, value=str(value), line=line))
        elif name == SCHEMA_ATTR:
            continue
        else:
            try:
                values[name] = json_scalar(value)
            except TypeError:
                problems.append(Problem("values are strings, numbers, booleans or null; nested objects and lists "
                                        "are not accepted", record=index, attribute=name, value=str(value)[:80],
                                        line=line))
    if problems:
        raise InvalidInput(f"Record {index} is not a valid record.", problems)
    return RecordInput(values=values, key=key, operation=operation, line=line)


_TEXTS = frozenset({str, type(None)})


@collector_paused()
def records_from_json(data) -> list[RecordInput]:
    """Records of a decoded JSON body: one object, or an array of objects. The records keep the
    body's objects as their values (not copied): the body is not used for anything else."""
    items = data if isinstance(data, list) else [data]
    if ({*map(type, items)} <= {dict} and _TECHNICAL_ATTRS.isdisjoint(chain.from_iterable(items))
            and {*map(type, chain.from_iterable(map(dict.values, items)))} <= _TEXTS):
        # The common body, objects of attribute names to strings (or null), checked for the whole
        # call at C speed and taken as it is (a full call holds 100 000 records).
        return [RecordInput(item, None, None) for item in items]
    records, problems = [], []
    for index, item in enumerate(items):
        try:
            records.append(record_from_json(item, index))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(f"{len({p.record for p in problems})} record(s) are not valid records.", problems)
    return records


def records_from_jsonl(lines: Iterable[str]) -> Iterator[RecordInput]:
    """Records of JSON Lines text, one object per line (blank lines skipped), each with its line."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        item = json_decode(text, what=f"Line {number}", line=number)
        yield record_from_json(item, number - 1, line=number)


def records_from_csv(lines: Iterable[str]) -> Iterator[RecordInput]:
    """Records of CSV text whose header names the attributes (plus optional `_key`, `_operation`).

    An empty cell means "not supplied" (so a CSV row can carry a partial update); use JSON Lines to
    send an empty string.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        raise InvalidInput("The CSV file is empty.", [Problem("the first line names the attributes", line=1)])
    header = [h.strip() for h in header]
    ended = reader.line_num
    for cells in reader:
        line, ended = ended + 1, reader.line_num
        if not cells:
            continue
        if len(cells) != len(header):
            raise InvalidInput(
                f"Line {line} has {len(cells)} cells; the header has {len(header)}.",
                [Problem(f"write one cell per column of the header ({', '.join(header)})", line=line)],
            )
        values: dict[str, str | None] = {}
        key = operation = None
        for name, cell in zip(header, cells):
            if cell == "":
                continue
            if name == KEY_ATTR:
                key = parse_key(cell)
            elif name == OPERATION_ATTR:
                operation = cell.strip()
            else:
                values[name] = cell
        yield RecordInput(values=values, key=key, operation=operation, line=line)


# --- Validation --------------------------------------------------------------------------------

@dataclass(slots=True)
class Row:
    """A validated record (or several records of one call merged on their key), ready to write."""

    index: int  # the first record it comes from
    values: dict[str, Any]  # attribute name -> typed value, supplied attributes plus a generated id
    supplied: tuple[str, ...]  # attribute names the caller supplied (what a partial update touches)
    key: tuple[str, ...]  # reconciliation fields
    operation: str
    delete: bool = False  # Campaign's @delete technical field (staging only)
    generated: bool = False  # the id was generated here, not supplied
    line: int | None = None
    merged: tuple[int, ...] = ()  # every record merged into this row, when there are several

    @property
    def indexes(self) -> tuple[int, ...]:
        return self.merged or (self.index,)

    @property
    def key_values(self) -> tuple:
        return tuple(self.values.get(name) for name in self.key)

    @property
    def id(self):
        return self.values.get(ID_ATTR)


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


def _accepted(description: SchemaDescription, mode: str) -> str:
    names = [a.name for a in description.attributes]
    if mode != WRITE:
        names.append(DELETE_ATTR)
    return ", ".join(names)


def validate_records(
    description: SchemaDescription,
    records: Sequence[RecordInput],
    *,
    mode: str,
    make_id: Callable[[], str] | None = None,
) -> tuple[list[Row], list[Problem]]:
    """Typed rows for `records`, one per record in order, and every problem found.

    Nothing is collapsed here (see `collapse_rows`). A generated id is set for records that need a
    new row and did not supply one: Ingest without an id, IngestExt/Write keyed on other fields.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    # Per attribute: (attribute, converter, max length). Plain strings have no converter: their length
    # is checked inline, the one check they need.
    checks = {}
    for attribute, convert in _Converters(description).by_name.values():
        plain = attribute.type in ("string", "memo") and not attribute.enum and attribute.name != ID_ATTR
        checks[attribute.name] = (attribute, None if plain else convert, attribute.length if plain else None)
    has_id = description.attribute(ID_ATTR) is not None
    primary_key = tuple(description.primary_key)
    if mode == INGEST:
        # The common Ingest call, every record plain, is checked for the whole call at once.
        plain = {name: length for name, (_, convert, length) in checks.items() if convert is None}
        if _all_plain(records, plain):
            return _plain_rows(records, primary_key, has_id, make_id), []
    make_id = make_id or uuid_factory()
    rows: list[Row] = []
    problems: list[Problem] = []
    default_op = INSERT if mode == INGEST else INSERT_OR_UPDATE
    allowed_ops = (INSERT,) if mode == INGEST else OPERATIONS
    found = problems  # appended in place: a record is bad when the list grew past its mark
    for index, record in enumerate(records):
        mark = len(problems)
        values: dict[str, Any] = {}
        delete = False
        for name, raw in record.values.items():
            check = checks.get(name)
            if check is not None and raw:
                attribute, convert, length = check
                if convert is None:
                    if length is None or len(raw) <= length:
                        values[name] = raw
                        continue
                    convert = _string_converter(length)
                try:
                    values[name] = convert(raw)
                except ValueError as exc:
                    found.append(Problem(str(exc), index, name, raw, record.line))
                continue
            if check is None:
                if name == DELETE_ATTR and mode != WRITE:
                    try:
                        delete = bool(_to_boolean(raw or ""))
                    except ValueError as exc:
                        found.append(Problem(str(exc), index, name, raw, record.line))
                    continue
                found.append(Problem(f"unknown attribute; {description.id} accepts: {_accepted(description, mode)}",
                                     index, name, raw, record.line))
                continue
            message = _empty_value_problem(check[0], raw, has_id)
            if message:
                found.append(Problem(message, index, name, raw, record.line))
            else:
                values[name] = raw if raw == "" and check[0].type in ("string", "memo") else None
        supplied = tuple(values)
        operation = record.operation or default_op
        if operation not in allowed_ops or delete and mode == INGEST_EXT or record.key is not None \
                or mode != INGEST or ID_ATTR in values or len(problems) > mark:
            # Anything but a plain Ingest record: the full rules (operation, _key, delete).
            key, operation = _check_grammar(description, record, index, values, supplied, operation, delete,
                                            mode, allowed_ops, problems, mark)
        else:
            key = None
        if len(problems) > mark:
            continue
        generated = False
        if has_id and ID_ATTR not in values:
            values[ID_ATTR] = make_id()
            generated = True
        rows.append(Row(index, values, supplied, key or primary_key, operation, delete or operation == DELETE,
                        generated, record.line))
    return rows, problems


def _all_plain(records: Sequence[RecordInput], lengths: dict[str, int | None]) -> bool:
    """Whether every record is a plain Ingest record: no _key or _operation, and every value a
    non-empty string of a plain attribute (`lengths`: strings without enumeration, name -> maximum
    length) within its length. A full call holds 100 000 records, so this is checked for all of
    them at once with sets and C-level iteration, not record by record."""
    if {*map(attrgetter("key"), records)} != {None} or {*map(attrgetter("operation"), records)} != {None}:
        return False
    all_values = [*map(attrgetter("values"), records)]
    if not lengths.keys() >= {*chain.from_iterable(all_values)}:
        return False
    values = [*chain.from_iterable(map(dict.values, all_values))]
    if not {*map(type, values)} <= {str}:  # a null is not plain
        return False
    sizes = [*map(len, values)]
    if not sizes:
        return True
    if min(sizes) == 0:  # an empty value is not plain
        return False
    if max(sizes) <= min((n for n in lengths.values() if n is not None), default=max(sizes)):
        return True  # within the shortest length allowed: no need to look attribute by attribute
    return all(max(map(len, filter(None, map(dict.get, all_values, repeat(name)))), default=0) <= length
               for name, length in lengths.items() if length is not None)


def _plain_rows(records: Sequence[RecordInput], primary_key: tuple[str, ...], has_id: bool,
                make_id: Callable[[], str] | None) -> list[Row]:
    """The rows of plain Ingest records (see _all_plain): inserts, with a generated id when the
    schema has one (all drawn at once unless the caller brings its own `make_id`)."""
    if not has_id:
        return [Row(index, dict(record.values), tuple(record.values), primary_key, INSERT, False, False, record.line)
                for index, record in enumerate(records)]
    ids = new_uuids(len(records)) if make_id is None else [make_id() for _ in records]
    rows = []
    append = rows.append
    for index, (record, new_id) in enumerate(zip(records, ids)):
        values = record.values.copy()
        supplied = tuple(values)
        values[ID_ATTR] = new_id
        append(Row(index, values, supplied, primary_key, INSERT, False, True, record.line))
    return rows


_NUMBER_TYPES = frozenset({"boolean", "float", "double", *_INT_RANGES})


def _empty_value_problem(attribute: Attribute, raw, has_id: bool) -> str | None:
    """Why an empty or null value does not fit `attribute`, or None when it does (it clears it)."""
    if raw == "" and attribute.type in ("string", "memo") and attribute.name != ID_ATTR:
        return None
    if attribute.type in _NUMBER_TYPES:
        return f"a {attribute.type} needs a value (numbers are never empty in Campaign; send 0)"
    if attribute.not_null or (has_id and attribute.name == ID_ATTR):
        return "this attribute cannot be empty"
    return None


def _check_grammar(description, record, index, values, supplied, operation, delete, mode, allowed_ops, found, mark):
    """(key, operation) of a record after the rules of _operation, _key and delete; adds problems."""
    line = record.line

    def problem(message, attribute=None, value=None):
        found.append(Problem(message, record=index, attribute=attribute, value=value, line=line))

    if operation not in allowed_ops:
        if mode == INGEST:
            problem("Ingest only inserts; use IngestExt to update or delete", OPERATION_ATTR, operation)
        else:
            problem(f"unknown operation; accepted: {', '.join(OPERATIONS)}", OPERATION_ATTR, operation)
    if delete and mode == INGEST_EXT:
        # In IngestExt, Campaign's @delete flag asks for a deletion, like _operation="delete".
        if record.operation is None:
            operation = DELETE
        elif operation != DELETE:
            problem(f'delete="true" contradicts _operation="{operation}"; use _operation="delete"',
                    DELETE_ATTR, "true")
    # Reconciliation key: _key as written, else the primary key (Ingest: only when an id is given).
    key = record.key
    if key is not None and not key:
        problem("_key names no attribute; write it as \"@id\" or \"@email, @other\"", KEY_ATTR, "")
    for name in key or ():
        if description.attribute(name) is None:
            problem(f"_key names '{name}', which is not an attribute of {description.id}; accepted: "
                    f"{', '.join(a.name for a in description.attributes)} (as @name)", KEY_ATTR, name)
    if key is None:
        key = None if mode == INGEST and ID_ATTR not in values else tuple(description.primary_key)
    if key is None or len(found) > mark:
        return key, operation
    missing = [name for name in key if values.get(name) in (None, "")]
    if missing:
        if mode == WRITE and operation in (INSERT, INSERT_OR_UPDATE) and record.key is None:
            return None, operation  # Write without a key: a plain insert with a new id
        problem(f"the record has no usable key: {', '.join('@' + n for n in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing (_key is "
                f"\"{', '.join('@' + n for n in key)}\")", KEY_ATTR, ", ".join("@" + n for n in key))
    if operation == DELETE:
        extra = [n for n in supplied if n not in key]
        if extra:
            problem(f"a delete takes only the key ({', '.join('@' + n for n in key)}); remove "
                    f"{', '.join(extra)}", extra[0], str(record.values.get(extra[0])))
    return key, operation


# --- One call's records on the same key --------------------------------------------------------

def merge_operation(previous: str, new: str) -> tuple[str, bool]:
    """The operation a row carries after `new` is applied on top of a pending `previous`, and
    whether the previously supplied columns still count (False: start from the new ones only).

    insert + update/insertOrUpdate -> insert (the row does not exist yet; merged values);
    anything + delete -> delete; delete + insertOrUpdate -> insertOrUpdate with the new columns only;
    delete + update -> delete (an update of a deleted record does nothing); update + insertOrUpdate ->
    insertOrUpdate. `insert` on top of anything is refused by the caller (already staged).
    """
    if new == DELETE:
        return DELETE, False
    if previous == DELETE:
        return (INSERT_OR_UPDATE, False) if new == INSERT_OR_UPDATE else (DELETE, True)
    if previous == INSERT:
        return INSERT, True
    if previous == INSERT_OR_UPDATE or new == INSERT_OR_UPDATE:
        return INSERT_OR_UPDATE, True
    return UPDATE, True


def merge_rows(first: Row, second: Row) -> Row:
    """`second` applied on top of `first` (same key): last value wins per column."""
    operation, keep = merge_operation(first.operation, second.operation)
    if keep:
        values = {**first.values, **second.values}
        supplied = tuple(dict.fromkeys(first.supplied + second.supplied))
    else:
        values = {**second.values}
        supplied = second.supplied
    generated = False
    if ID_ATTR in second.supplied:
        values[ID_ATTR] = second.values[ID_ATTR]
    elif ID_ATTR in first.values:
        # One row per key: the id the first record got (supplied or generated) stays.
        values[ID_ATTR] = first.values[ID_ATTR]
        generated = first.generated
    return Row(index=first.index, values=values, supplied=supplied, key=first.key, operation=operation,
               delete=operation == DELETE, generated=generated, line=first.line,
               merged=first.indexes + second.indexes)


def collapse_rows(rows: Iterable[Row], *, mode: str) -> tuple[list[Row], list[Problem]]:
    """One row per key. Ingest (and `insert`) refuses a key repeated within the call; IngestExt and
    Write merge repeated keys in document order."""
    position: dict[tuple, int] = {}
    problems: list[Problem] = []
    out: list[Row] = []
    for row in rows:
        if row.generated and row.key == (ID_ATTR,):
            out.append(row)  # a fresh id cannot repeat
            continue
        identity = (row.key, row.key_values)
        at = position.get(identity)
        if at is None:
            position[identity] = len(out)
            out.append(row)
            continue
        previous = out[at]
        if mode == INGEST or row.operation == INSERT:
            keys = ", ".join(f"@{n}={v}" for n, v in zip(row.key, row.key_values))
            problems.append(Problem(
                f"repeats the key of record {previous.indexes[-1]} ({keys}); Ingest inserts each key once "
                "(use IngestExt to update it)", record=row.index, attribute=KEY_ATTR, value=keys, line=row.line))
            continue
        out[at] = merge_rows(previous, row)
    return out, problems


def validated_rows(description: SchemaDescription, records: Sequence[RecordInput], *, mode: str,
                   make_id: Callable[[], str] | None = None) -> list[Row]:
    """Validated and collapsed rows, or InvalidInput listing every bad record."""
    rows, problems = validate_records(description, records, mode=mode, make_id=make_id)
    rows, duplicates = collapse_rows(rows, mode=mode)
    problems += duplicates
    if problems:
        bad = len({p.record for p in problems})
        raise InvalidInput(
            f"{bad} of {len(records)} record(s) are invalid; nothing was written.",
            sorted(problems, key=lambda p: (p.record if p.record is not None else -1)),
        )
    return rows
