"""Input readers: SOAP documents, REST bodies and ingest files (XML, JSON, JSON Lines, CSV) as
`RecordInput`s, raw text per attribute plus the `_key` and `_operation` Campaign's write grammar adds.
Pure: no Django, no database. Validation against a schema is `staging.records`.
"""

import csv
import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import is_
from typing import Iterable, Iterator

import orjson

from campaignsite.errors import InvalidInput, Problem

OPERATIONS = ("insertOrUpdate", "insert", "update", "delete")  # as staging.records names them

KEY_ATTR = "_key"
OPERATION_ATTR = "_operation"
SCHEMA_ATTR = "xtkschema"
_TECHNICAL_ATTRS = frozenset({KEY_ATTR, OPERATION_ATTR, SCHEMA_ATTR})
# `@email`, `[@folder-id]`, or a sub-element path `location/@city` (named `location/city`).
_XPATH_RE = re.compile(r"^\[?((?:[A-Za-z][A-Za-z0-9_-]*/)*)@([A-Za-z][A-Za-z0-9_-]*)\]?$")
# Separator of the path names of nested values: `<location city=".."/>` is the value `location/city`.
PATH_SEP = "/"


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
    """`_key="@email, [@folder-id], location/@city"` -> ("email", "folder-id", "location/city"). Parts
    that are not such XPaths are kept as written, so validation can name them."""
    parts = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        match = _XPATH_RE.match(part)
        parts.append(match.group(1) + match.group(2) if match else part)
    return tuple(parts)


def record_from_element(element, index: int) -> RecordInput:
    """A record element (`<sampleTableStg a="..." _key="@id"/>`) as a RecordInput.

    Sub-elements become path-named values (`<location city="Paris"/>` -> `location/city`, the text of
    `<comment>..</comment>` -> `comment`), at any depth; a link element keeps its `_key` as
    `company/_key`. Raises InvalidInput for text directly inside the record or a repeated sub-element.
    """
    values: dict[str, str | None] = dict(element.attrib)
    values.pop(SCHEMA_ATTR, None)  # read by records_from_xml
    if len(element) or element.text:
        _nested_values(element, index, values)
    return _record_input(values, element.sourceline)


def _nested_values(element, index: int, values: dict) -> None:
    """Adds the path-named values of `element`'s sub-elements to `values` (records with children only:
    flat records never come here)."""
    if element.text and element.text.strip():
        raise InvalidInput(
            f"Record {index} contains text; values go in attributes.",
            [Problem("text content inside a record is not accepted; write values as attributes",
                     record=index, value=element.text.strip(), line=element.sourceline)],
        )
    stack = [(child, child.tag) for child in element.iterchildren("*")]
    seen = set()
    while stack:
        child, path = stack.pop()
        if path in seen:
            raise InvalidInput(
                f"Record {index} repeats the element <{path}>.",
                [Problem("a sub-element appears once per record (collections inside a record are not supported)",
                         record=index, attribute=path, line=child.sourceline)])
        seen.add(path)
        for name, value in child.items():
            values[path + PATH_SEP + name] = value
        if child.text is not None and child.text.strip() or len(child) == 0 and not len(child.attrib):
            values[path] = child.text or ""
        stack.extend((grandchild, path + PATH_SEP + grandchild.tag) for grandchild in child.iterchildren("*"))


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
        if not flat and (len(child) or child.text):
            _nested_values(child, index, values)
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
        elif isinstance(value, dict):
            _json_nested(value, name, index, line, values, problems)
        else:
            _json_value(value, name, index, line, values, problems)
    if problems:
        raise InvalidInput(f"Record {index} is not a valid record.", problems)
    return RecordInput(values=values, key=key, operation=operation, line=line)


def _json_nested(item: dict, path: str, index: int, line, values: dict, problems: list) -> None:
    """The values of a nested object as path-named values (`{"location": {"city": ..}}` ->
    `location/city`), any depth; a link's `_key` may be a list of XPaths, kept as one text."""
    for name, value in item.items():
        name = path + PATH_SEP + name
        if isinstance(value, dict):
            _json_nested(value, name, index, line, values, problems)
        elif name.endswith(PATH_SEP + KEY_ATTR) and isinstance(value, list) and all(isinstance(v, str) for v in value):
            values[name] = ", ".join(value)
        else:
            _json_value(value, name, index, line, values, problems)


def _json_value(value, name: str, index: int, line, values: dict, problems: list) -> None:
    """A scalar JSON value as the text of `name`, or a problem naming it (lists are not values)."""
    try:
        values[name] = json_scalar(value)
    except TypeError:
        problems.append(Problem("values are strings, numbers, booleans, null or nested objects; lists are not "
                                "accepted", record=index, attribute=name, value=str(value)[:80], line=line))


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
    """Records of CSV text whose header names the attributes (plus optional `_key`, `_operation`);
    sub-element attributes by path (`location/city` or `location/@city`), a link's key fields too
    (`company/_key`, `company/name`).

    An empty cell means "not supplied" (so a CSV row can carry a partial update); use JSON Lines to
    send an empty string.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        raise InvalidInput("The CSV file is empty.", [Problem("the first line names the attributes", line=1)])
    # `location/city` and `location/@city` both name the sub-element attribute `location/city`.
    header = [PATH_SEP.join(step.lstrip("@") for step in h.strip().split(PATH_SEP)) if PATH_SEP in h else h.strip()
              for h in header]
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


