"""Links set by key: find the target row a record names (`<company _key="@name" name="Acme"/>`) in the
target's cloud table, and give the foreign-key values of the link.

Write resolves at once (a record whose target is missing refuses the call); the sync resolves the
staged rows of a batch (a row whose target is missing fails alone, with the reason). Both call
`resolve_links`, one SELECT per link and key shape per chunk of distinct values. A target is never
created: a link by key points at a row that exists.
"""

from datetime import date, datetime, time, timezone

from django.db import connections

from staging import ddl
from staging.records import ID_ATTR
from staging.srcschema import Link, SchemaDescription
from staging.values import _converter

CHUNK = 500  # distinct key values per SELECT, far below SQLite's parameter limit

# What a lookup is: (link name, target key attribute names, raw key values as the caller wrote them).
Lookup = tuple[str, tuple[str, ...], tuple[str, ...]]


def _target(link: Link) -> SchemaDescription | None:
    from staging.models import Schema

    namespace, _, name = link.target.partition(":")
    schema = Schema.objects.find(namespace, name)
    return None if schema is None else schema.description


def _db_value(value, vendor: str):
    if vendor != ddl.SQLITE:
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(" ", timespec="microseconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return value


def describe(link: Link, key: tuple[str, ...], values: tuple[str, ...]) -> str:
    where = " and ".join(f"@{name}='{value}'" for name, value in zip(key, values))
    return f"link '{link.name}': no {link.target} with {where}"


def resolve_links(description: SchemaDescription, lookups: list[Lookup]) -> tuple[dict, dict]:
    """({lookup: {foreign-key attribute: value}}, {lookup: reason it failed}) for `lookups` of
    records of `description`."""
    links = {link.name: link for link in description.links}
    found: dict = {}
    failed: dict = {}
    groups: dict[tuple[str, tuple[str, ...]], set] = {}
    for lookup in lookups:
        groups.setdefault(lookup[:2], set()).add(lookup[2])
    for (name, key), raw_values in groups.items():
        link = links[name]
        target = _target(link)
        attributes = [None if target is None else target.attribute(n) for n in key]
        if target is None or None in attributes or any(a.xml for a in attributes):
            reason = (f"link '{name}': {link.target} is not loaded" if target is None else
                      f"link '{name}': {link.target} has no attribute "
                      f"{', '.join('@' + n for n, a in zip(key, attributes) if a is None or a.xml)} to look it up by")
            failed.update({(name, key, raw): reason for raw in raw_values})
            continue
        converters = [_converter(target, a) for a in attributes]
        alias = ddl.table_alias(target)
        vendor = connections[alias].vendor
        typed: dict[tuple, tuple] = {}  # database value -> raw value
        for raw in raw_values:
            try:
                typed[tuple(_db_value(c(v), vendor) for c, v in zip(converters, raw))] = raw
            except ValueError as exc:
                failed[(name, key, raw)] = f"link '{name}': @{key[0]} {exc}"
        q = lambda n: ddl.quote(n, vendor)  # noqa: E731
        key_sql = [q(a.sql_name) for a in attributes]
        wanted = [q(target.attribute(t).sql_name) for _, t in link.joins]
        matches: dict[tuple, list] = {}
        values = list(typed)
        with connections[alias].cursor() as cursor:
            for start in range(0, len(values), CHUNK):
                chunk = values[start:start + CHUNK]
                row_sql = "(" + ", ".join(["%s"] * len(key)) + ")"
                where = (f"({', '.join(key_sql)}) IN (VALUES {', '.join([row_sql] * len(chunk))})" if len(key) > 1
                         else f"{key_sql[0]} IN ({', '.join(['%s'] * len(chunk))})")
                cursor.execute(f"SELECT {', '.join(key_sql + wanted)} FROM {q(target.sql_table)} WHERE {where}",
                               [v for k in chunk for v in k])
                for row in cursor.fetchall():
                    matches.setdefault(tuple(_db_value(v, vendor) for v in row[:len(key)]), []).append(row[len(key):])
        for db_key, raw in typed.items():
            rows = matches.get(db_key, [])
            if len(rows) == 1:
                found[(name, key, raw)] = {source: value for (source, _), value in zip(link.joins, rows[0])}
            elif not rows:
                failed[(name, key, raw)] = describe(link, key, raw)
            else:
                failed[(name, key, raw)] = (f"link '{name}': {len(rows)} rows of {link.target} match "
                                            f"{describe(link, key, raw).split(' with ', 1)[1]}; use a unique key "
                                            f"such as @{ID_ATTR}")
    return found, failed
