"""Records as callers send them, and their validation against a schema. Pure: no Django, no database.

SOAP documents, REST bodies and ingest files all become `RecordInput`s (raw text per attribute, the
`_key` and `_operation` Campaign's write grammar adds). `validate_records` turns them into `Row`s of
typed values, or into the list of every problem found (record, attribute, value, what is accepted),
so a call is rejected as a whole with everything the caller has to fix. `collapse_rows` then applies
the per-key rules of one call (duplicates refused by Ingest, merged in order by IngestExt and Write),
and `merge_operation` says what an operation does to a row that is already staged.
"""

from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, Callable, Iterable, Sequence

from staging.xmldata import merge_xml_data, xml_document

from campaignsite.errors import InvalidInput, Problem
from staging.readers import (  # noqa: F401 (re-exported: callers read records through this module)
    _TECHNICAL_ATTRS, JSON_MAX_DEPTH, KEY_ATTR, PATH_SEP, OPERATION_ATTR, SCHEMA_ATTR, RecordInput, check_record_schema,
    collector_paused, is_collection, json_decode, json_scalar, parse_key, record_from_element, record_from_json,
    records_from_csv, records_from_json, records_from_jsonl, records_from_xml,
)
from staging.srcschema import STAGING_SUFFIX, XML_DATA_ATTR, XML_ONLY_TYPES, Attribute, SchemaDescription
from staging.values import (  # noqa: F401 (re-exported)
    _INT_RANGES, ID_ATTR, _converter, _Converters, _string_converter, _to_boolean, new_uuid, new_uuids, parse_date,
    parse_datetime, parse_datetime_naive, parse_time, uuid_factory,
)

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

# Campaign's technical field of staging schemas: `delete="true"` marks a deletion (or, for the
# subscription request log, an opt-out). Accepted by Ingest/IngestExt, stored in iDelete.
DELETE_ATTR = "delete"


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
    # Links set by key (`<company _key="@name" name="Acme"/>`): link name -> (target key attribute
    # names, raw values). The link's foreign-key attributes are supplied (None until resolved).
    links: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None

    @property
    def indexes(self) -> tuple[int, ...]:
        return self.merged or (self.index,)

    @property
    def key_values(self) -> tuple:
        return tuple(self.values.get(name) for name in self.key)

    @property
    def id(self):
        return self.values.get(ID_ATTR)



def _accepted(description: SchemaDescription, mode: str) -> str:
    names = [a.name for a in (*description.attributes, *description.xml_fields) if not a.xml_data]
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
    xml_fields = _XmlFields(description) if description.xml_fields else None
    links = {link.name: link for link in description.links if not link.unbound and link.joins}
    if mode == INGEST:  # (XML fields and links are not plain attributes: such records take the full path)
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
        xml_values = link_values = None
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
                head, slash, rest = name.partition(PATH_SEP)
                if slash and head in links:
                    link_values = link_values or {}
                    link_values.setdefault(head, {})[rest] = raw
                    continue
                if not raw and _is_sub_element(description, name):
                    continue  # an empty sub-element (`<location/>`) sets nothing
                if xml_fields is not None and name in xml_fields.by_name:
                    xml_values = xml_values or []
                    xml_fields.add(xml_values, name, raw, index, record.line, found)
                    continue
                found.append(Problem(f"unknown attribute; {description.id} accepts: {_accepted(description, mode)}",
                                     index, name, raw, record.line))
                continue
            message = _empty_value_problem(check[0], raw, has_id)
            if message:
                found.append(Problem(message, index, name, raw, record.line))
            else:
                values[name] = raw if raw == "" and check[0].type in ("string", "memo") else None
        if xml_values:
            # The XML fields of the record become its mData document; the stores merge it into what
            # is already there, so the fields a partial update does not carry are kept.
            values[XML_DATA_ATTR] = xml_document(xml_fields.root, xml_values)
        row_links = _link_lookups(links, link_values, values, index, record.line, found) if link_values else None
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
                        generated, record.line, links=row_links))
    return rows, problems


def _is_sub_element(description: SchemaDescription, name: str) -> bool:
    prefix = name + PATH_SEP
    return any(a.name.startswith(prefix) for a in (*description.attributes, *description.xml_fields))


def _link_lookups(links: dict, link_values: dict, values: dict, index: int, line, found: list) -> dict:
    """The links a record sets by key, {link: (target key names, raw values)}; their foreign-key
    attributes become supplied values (None until the target is found). Adds problems to `found`."""
    lookups = {}
    for name, given in link_values.items():
        link = links[name]
        raw_key = given.pop(KEY_ATTR, None)
        key = parse_key(raw_key) if raw_key else tuple(given)
        problem = None
        if not key:
            problem = f'link \'{name}\' names no key; write <{name} _key="@name" name="..."/>'
        elif set(given) != set(key):
            problem = (f"link '{name}' is set by its key only ({', '.join('@' + n for n in key)}); "
                       f"got {', '.join('@' + n for n in given) or 'no value'}")
        elif any(given[n] in (None, "") for n in key):
            problem = f"link '{name}' needs a value for every key field ({', '.join('@' + n for n in key)})"
        elif any(fk in values for fk in link.foreign_key):
            problem = f"link '{name}' is set twice: by key and by {', '.join(link.foreign_key)}"
        if problem:
            found.append(Problem(problem, index, name + PATH_SEP + KEY_ATTR, raw_key, line))
            continue
        lookups[name] = (key, tuple(given[n] for n in key))
        for fk in link.foreign_key:
            values[fk] = None
    return lookups


class _XmlFields:
    """The XML fields (stored in mData) a record may set, and the check of their values."""

    def __init__(self, description: SchemaDescription):
        self.by_name = {field.name: field for field in description.xml_fields}
        name = description.name
        self.root = name[:-len(STAGING_SUFFIX)] if description.is_staging_schema and name.endswith(STAGING_SUFFIX) else name
        self.convert = {field.name: _converter(description, field) for field in description.xml_fields
                        if field.type not in XML_ONLY_TYPES}

    def add(self, into: list, name: str, raw, index: int, line, found: list) -> None:
        field = self.by_name[name]
        text = "" if raw is None else raw
        convert = self.convert.get(name)
        if convert is not None and text:
            try:
                convert(text)  # checked like a column; stored as written
            except ValueError as exc:
                found.append(Problem(str(exc), index, name, raw, line))
                return
        into.append((field, text))


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
        if XML_DATA_ATTR in first.values and XML_DATA_ATTR in second.values:
            values[XML_DATA_ATTR] = merge_xml_data(first.values[XML_DATA_ATTR], second.values[XML_DATA_ATTR])
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
    links = {**(first.links or {}), **(second.links or {})} if keep else second.links
    return Row(index=first.index, values=values, supplied=supplied, key=first.key, operation=operation,
               delete=operation == DELETE, generated=generated, line=first.line,
               merged=first.indexes + second.indexes, links=links or None)


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
