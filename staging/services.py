"""Writes of the staging app. SOAP, REST, commands and the admin all come through here.

Each service that writes takes `user` and checks its permission itself, once (the adapters' own checks
only answer earlier): the requesting user, or `campaignsite.permissions.SYSTEM` for commands and
scheduled tasks; None is refused as unauthenticated.
"""

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone as dt_timezone
from pathlib import Path
from typing import Sequence

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from campaignsite.db import retry_on_deadlock
from campaignsite.errors import Conflict, InvalidInput, NotFound, Problem, SchemaInvalid, StructureRefused, TooLarge
from campaignsite.permissions import acting_user, permission_require
from staging import ddl
from staging import records as rec
from staging.models import Schema, SchemaRegistry, StructureState, description_digest
from staging.srcschema import STAGING_SUFFIX, XML_DATA_ATTR, SchemaDescription, parse_srcschema
from staging.links import resolve_links
from staging.xmldata import merge_xml_data

BUILTIN_SCHEMA_DIR = Path(__file__).resolve().parent / "builtin_schemas"


def _described(source: str, *, built_in: bool, existing: Schema | None = None) -> tuple[SchemaDescription, str]:
    """The description `source` would have once saved, checked against the registry, and its extends.

    An extension is described by itself and merged into the schema it extends, which must hold too;
    a schema is described with its extensions merged in. Raises SchemaInvalid naming what is wrong.
    """
    # The document by itself first, so a broken file is refused before the registry is read.
    local = parse_srcschema(source, builtin=built_in, max_bytes=settings.SCHEMA_MAX_BYTES, local_only=True)
    schema_id, extends = local.id, local.extends
    if existing is not None and schema_id != existing.schema_id:
        raise SchemaInvalid(
            f"The document defines {schema_id}, not {existing.schema_id}.",
            [Problem("a schema's namespace and name cannot change; create a new schema instead",
                     attribute="name", value=schema_id)],
        )
    registry = SchemaRegistry.load(overrides={schema_id: (source, built_in, extends or "")})
    if extends:
        base = registry.rows.get(extends)
        if base is None:
            raise SchemaInvalid(
                f"Extension schemas of '{extends}' need '{extends}' loaded first.",
                [Problem(f"load the schema {extends}, then this extension", attribute="extendedSchema",
                         value=extends)],
            )
        if base[2]:
            raise SchemaInvalid(
                f"{extends} is itself an extension (of {base[2]}); extend {base[2]} instead.",
                [Problem(f'set extendedSchema="{base[2]}"', attribute="extendedSchema", value=extends)],
            )
    description = registry.describe(schema_id)
    if extends:
        merged = registry.describe(extends)
        if merged.view:
            raise SchemaInvalid(f"{extends} is a view; a view cannot be extended.")
    return description, extends or ""


def _apply_source(schema: Schema, source: str, description: SchemaDescription, extends: str, user) -> None:
    schema.source = source
    schema.namespace = description.namespace
    schema.name = description.name
    schema.label = description.label
    schema.extends = extends
    # An extension owns no table: its columns are its base's, and so is its structure update.
    schema.auto_stg = description.auto_stg and not extends
    schema.target_fingerprint = ddl.fingerprint(() if extends else ddl.desired_tables(description))
    schema.description_digest = description_digest(description)
    schema.modified_by = acting_user(user)
    schema.__dict__.pop("description", None)


def _refresh_registry(*, skip: str | None = None) -> None:
    """Re-describe every other schema after a change: a base gains or loses an extension's columns, a
    link's foreign key follows its target's key. A schema whose structure changed shows "needs update"."""
    registry = SchemaRegistry.load()
    for schema in Schema.objects.order_by("namespace", "name"):
        if schema.schema_id == skip:
            continue
        try:
            description = registry.describe(schema.schema_id)
        except SchemaInvalid:
            continue  # left as it was: its next update says what is wrong
        fields = {
            "label": description.label,
            "auto_stg": description.auto_stg and not schema.extends,
            "target_fingerprint": ddl.fingerprint(() if schema.extends else ddl.desired_tables(description)),
            "description_digest": description_digest(description),
        }
        changed = [name for name, value in fields.items() if getattr(schema, name) != value]
        if changed:
            for name in changed:
                setattr(schema, name, fields[name])
            schema.save(update_fields=changed)


def _dependants(schema: Schema) -> list[str]:
    """Ids of the schemas that need `schema`: its extensions, and those that link to or include it."""
    registry = SchemaRegistry.load()
    found = set(registry.extensions_of(schema.schema_id))
    for other in registry.rows:
        if other == schema.schema_id or other in found:
            continue
        try:
            registry.describe(other)
        except SchemaInvalid:
            continue
        if schema.schema_id in registry.dependencies.get(other, ()):
            found.add(other)
    return sorted(found)


def schema_get(*, schema_id: str) -> Schema:
    """The schema `ns:name`; its staging id `ns:nameStg` is accepted too."""
    namespace, _, name = schema_id.partition(":")
    schema = Schema.objects.filter(namespace=namespace, name=name).first()
    if schema is None and name.endswith("Stg"):
        schema = Schema.objects.filter(namespace=namespace, name=name[:-3], auto_stg=True).first()
    if schema is None:
        raise NotFound(f"Unknown schema '{schema_id}'.", [Problem("no schema has this id", value=schema_id)])
    return schema


@transaction.atomic(using="default")
def schema_create(*, source: str, user, built_in: bool = False) -> Schema:
    """Register a new schema from its srcSchema XML (structure not applied yet). Needs `staging.add_schema`.

    An extension schema (`extendedSchema`) needs the schema it extends; creating it changes that
    schema's structure (it shows "needs update").
    """
    permission_require(user, "staging.add_schema", "create schemas")
    description, extends = _described(source, built_in=built_in)
    if Schema.objects.filter(namespace=description.namespace, name=description.name).exists():
        raise Conflict(f"Schema {description.id} already exists; update it instead.")
    schema = Schema(built_in=built_in)
    _apply_source(schema, source, description, extends, user)
    schema.save()
    _refresh_registry(skip=schema.schema_id)
    return schema


def schema_update(*, schema: Schema, source: str, user) -> Schema:
    """Replace a schema's source. Its id (namespace:name) cannot change. Needs `staging.change_schema`."""
    permission_require(user, "staging.change_schema", "change schemas")
    return _schema_update(schema, source, user)


@transaction.atomic(using="default")
def _schema_update(schema: Schema, source: str, user) -> Schema:
    description, extends = _described(source, built_in=schema.built_in, existing=schema)
    _apply_source(schema, source, description, extends, user)
    schema.save()
    _refresh_registry(skip=schema.schema_id)
    return schema


def schema_load(*, source: str, user, built_in: bool = False) -> tuple[Schema, str]:
    """Create the schema, or update it when one with the same id exists (needing `staging.add_schema`
    or `staging.change_schema`).

    Returns (schema, outcome) with outcome "created", "updated" or "unchanged".
    """
    local = parse_srcschema(source, builtin=built_in, max_bytes=settings.SCHEMA_MAX_BYTES, local_only=True)
    existing = Schema.objects.filter(namespace=local.namespace, name=local.name).first()
    if existing is None:
        return schema_create(source=source, user=user, built_in=built_in), "created"
    permission_require(user, "staging.change_schema", "change schemas")
    if existing.source == source:
        return existing, "unchanged"
    return _schema_update(existing, source, user), "updated"


@transaction.atomic(using="default")
def schema_delete(*, schema: Schema, user) -> None:
    """Forget a schema. Its tables stay in the databases: dropping data is a separate, manual step.

    Refused for built-in schemas, for schemas that others extend, link to or include, and while the
    staging table holds rows not synchronized yet. Deleting an extension changes the structure of the
    schema it extended: its columns are dropped by that schema's next (confirmed) structure update.
    Needs `staging.delete_schema`.
    """
    permission_require(user, "staging.delete_schema", "delete schemas")
    dependants = _dependants(schema)
    if dependants:
        raise Conflict(
            f"{schema.schema_id} cannot be deleted: {', '.join(dependants)} extend, link to or include it.",
            [Problem("delete or change those schemas first", value=schema.schema_id)],
        )
    if schema.built_in:
        raise Conflict(
            f"{schema.schema_id} is a built-in schema and cannot be deleted.",
            [Problem("built-in schemas ship with the product; turn staging off instead", value=schema.schema_id)],
        )
    staging = schema.applied_table("staging")
    if staging and ddl.inspect_table(connections[ddl.LOCAL], staging["name"]) is not None:
        waiting = unsynced_row_count(staging["name"])
        if waiting:
            raise Conflict(
                f"{schema.schema_id} cannot be deleted: {waiting} staged row(s) are not synchronized yet.",
                [Problem("synchronize them, or discard the failed ones, first", value=schema.schema_id)],
            )
    schema_id = schema.schema_id
    schema.delete()
    _refresh_registry(skip=schema_id)


_ELEMENT_TAG = re.compile(r"""<element(?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")
_NAME_ATTR = re.compile(r"""\sname\s*=\s*(["'])(.*?)\1""")
_AUTO_STG_ATTR = re.compile(r"""(\sautoStg\s*=\s*)(["'])(.*?)\2""")


def set_auto_stg_in_source(source: str, *, name: str, enabled: bool) -> str:
    """`source` with autoStg set on the main element, leaving every other byte as it was."""
    value = "true" if enabled else "false"
    for match in _ELEMENT_TAG.finditer(source):
        tag = match.group(0)
        element_name = _NAME_ATTR.search(tag)
        if not element_name or element_name.group(2) != name:
            continue
        if _AUTO_STG_ATTR.search(tag):
            new_tag = _AUTO_STG_ATTR.sub(lambda m: f"{m.group(1)}{m.group(2)}{value}{m.group(2)}", tag, count=1)
        else:
            new_tag = f'<element autoStg="{value}"' + tag[len("<element"):]
        return source[: match.start()] + new_tag + source[match.end():]
    raise SchemaInvalid(f'The source has no main <element name="{name}">.')


def schema_set_auto_stg(*, schema: Schema, enabled: bool, user) -> Schema:
    """Turn staging on or off by rewriting autoStg in the source; the structure update applies it.
    Needs `staging.change_schema`."""
    permission_require(user, "staging.change_schema", "change schemas")
    if schema.auto_stg == enabled:
        return schema
    source = set_auto_stg_in_source(schema.source, name=schema.name, enabled=enabled)
    return _schema_update(schema, source, user)


def structure_owner(schema: Schema) -> Schema:
    """The schema whose tables a structure update changes: an extension's is the schema it extends."""
    if not schema.extends:
        return schema
    base = schema.base
    if base is None:
        raise Conflict(f"{schema.schema_id} extends {schema.extends}, which is not loaded.",
                       [Problem(f"load {schema.extends} first", value=schema.extends)])
    return base


def structure_plan(*, schema: Schema) -> ddl.Plan:
    """The DDL that would bring both databases to the schema's current source (nothing runs).

    For an extension: the plan of the schema it extends (the extension owns no table).
    """
    schema = structure_owner(schema)
    description = schema.description
    desired = ddl.desired_tables(description)
    previous = {(t["role"], t["alias"], t["name"]) for t in schema.applied_structure.get("tables", [])}
    # A staging table may exist without a record of it (e.g. restored database): consider it too.
    previous.add(("staging", ddl.LOCAL, description.staging_table))
    names = {(t.alias, t.name) for t in desired} | {(alias, name) for _, alias, name in previous}
    current = {name: ddl.inspect_table(connections[alias], name) for alias, name in names}
    applied_types = {t["name"].lower(): t["types"] for t in schema.applied_structure.get("tables", [])}
    vendors = {alias: connections[alias].vendor for alias in (ddl.CLOUD, ddl.LOCAL)}
    return ddl.plan_changes(
        desired, current, vendors=vendors, applied_types=applied_types, previous_tables=tuple(sorted(previous))
    )


def unsynced_row_count(table: str) -> int:
    """Rows of a staging table that the sync has not applied yet (pending or failed)."""
    connection = connections[ddl.LOCAL]
    vendor = connection.vendor
    placeholders = ", ".join(["%s"] * len(ddl.UNSYNCED_STATUSES))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {ddl.quote(table, vendor)} WHERE {ddl.quote(ddl.COL_STATUS, vendor)} "
            f"IN ({placeholders})",
            ddl.UNSYNCED_STATUSES,
        )
        return cursor.fetchone()[0]


def structure_update(*, schema: Schema, user, confirm_destructive: bool = False, dry_run: bool = False) -> ddl.Plan:
    """Plan and apply the DDL for `schema`; returns the plan (applied unless `dry_run`).

    Needs `staging.update_structure` (a dry run only `staging.view_schema`). Refuses (StructureRefused)
    when the plan drops columns or changes types without `confirm_destructive`, and when it would drop
    a staging table that still holds unsynced rows.
    """
    schema = structure_owner(schema)
    if dry_run:
        permission_require(user, "staging.view_schema", "view schemas")
        return structure_plan(schema=schema)
    permission_require(user, "staging.update_structure", "update database structures")
    plan = structure_plan(schema=schema)
    if plan.destructive and not confirm_destructive:
        raise StructureRefused(
            f"Updating {schema.schema_id} would drop columns or change column types; confirm to apply.",
            [Problem(s.sql) for s in plan.destructive],
        )
    for statement in plan.statements:
        if statement.kind == "drop_table" and statement.role == "staging":
            waiting = unsynced_row_count(statement.table)
            if waiting:
                raise StructureRefused(
                    f"Staging cannot be turned off for {schema.schema_id}: {waiting} row(s) of "
                    f"{schema.schema_id}Stg are not synchronized yet (pending or failed).",
                    [Problem(f"synchronize them first (manage.py sync_staging {schema.schema_id}, or 'Sync now' "
                             "in the admin), retry or discard failed rows, then update the structure again")],
                )
    for alias in (ddl.CLOUD, ddl.LOCAL):
        statements = [s for s in plan.statements if s.alias == alias]
        if not statements:
            continue
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            for statement in statements:
                cursor.execute(statement.sql)
    schema.applied_structure = {
        "tables": [
            {"role": t.role, "alias": t.alias, "name": t.name, "types": ddl.column_types(t)} for t in plan.tables
        ]
    }
    schema.applied_fingerprint = schema.target_fingerprint
    schema.structure_applied_at = timezone.now()
    schema.save(update_fields=["applied_structure", "applied_fingerprint", "structure_applied_at"])
    return plan


def builtin_schemas_load(*, user) -> list[Schema]:
    """Load the built-in schemas shipped in staging/builtin_schemas and apply their structure (the
    load_builtin_schemas command passes SYSTEM).

    Idempotent: unchanged files leave their schema alone, and an up-to-date structure yields an
    empty plan.
    """
    loaded = []
    for path in sorted(BUILTIN_SCHEMA_DIR.glob("*.xml")):
        schema, _ = schema_load(source=path.read_text(encoding="utf-8"), user=user, built_in=True)
        structure_update(schema=schema, user=user)
        loaded.append(schema)
    return loaded


# --- Ingestion: Ingest, IngestExt, Write -------------------------------------------
# One implementation for SOAP, REST and the ingest command. Each call is validated as a whole
# first (staging.records), then written in one transaction with bulk statements: one SELECT per
# batch of keys, one executemany for the inserts, one per set of updated columns.

KEY_BATCH = 500  # keys per `IN (...)` lookup: far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class IngestResult:
    uuids: tuple[str | None, ...]  # per record, document order: the generated UUID, None if the caller gave the id
    ids: tuple[str | None, ...] = ()  # per record: the id of the staging row it landed in

    def as_pstr(self) -> str:
        """Campaign's `pstrSUuids`: comma-separated, an empty entry per caller-supplied id."""
        return ",".join(u or "" for u in self.uuids)


def _require_size(records: Sequence) -> None:
    if len(records) > settings.INGEST_MAX_RECORDS:
        raise TooLarge(
            f"The call holds {len(records)} records; the limit is {settings.INGEST_MAX_RECORDS} per call "
            "(INGEST_MAX_RECORDS). Split it into several calls, or use manage.py ingest for files."
        )
    if not records:
        raise InvalidInput("The call holds no record.", [Problem("send at least one record")])


def _require_structure(schema: Schema) -> None:
    state = schema.structure_state
    if state != StructureState.UP_TO_DATE:
        raise Conflict(
            f"The database structure of {schema.schema_id} is not up to date ({state.label}).",
            [Problem(f"update the database structure first: admin action 'Update database structure', "
                     f"or manage.py update_structure {schema.schema_id}", value=schema.schema_id)],
        )


def _split_id(schema_id: str) -> tuple[str, str]:
    namespace, _, name = (schema_id or "").strip().partition(":")
    return namespace, name


def staging_schema_get(*, schema_id: str) -> Schema:
    """The schema whose staging table `schema_id` ("ns:nameStg") names, ready to receive rows.

    Refuses a source id (InvalidInput naming xtkschema), staging turned off or a structure not up
    to date (Conflict), and unknown schemas (NotFound).
    """
    namespace, name = _split_id(schema_id)
    if not name.endswith(STAGING_SUFFIX):
        if Schema.objects.filter(namespace=namespace, name=name).exists():
            raise InvalidInput(
                f"'{schema_id}' is a source schema; Ingest and IngestExt write into its staging schema.",
                [Problem(f'set xtkschema="{schema_id}{STAGING_SUFFIX}" (the staging schema, root element '
                         f'<{name}{STAGING_SUFFIX}>)', attribute="xtkschema", value=schema_id)],
            )
        raise NotFound(f"Unknown schema '{schema_id}'.", [Problem("no schema has this id", attribute="xtkschema",
                                                                   value=schema_id)])
    schema = Schema.objects.find(namespace, name[: -len(STAGING_SUFFIX)])
    if schema is None:
        raise NotFound(f"Unknown schema '{schema_id}'.", [Problem("no schema has this staging id",
                                                                   attribute="xtkschema", value=schema_id)])
    _refuse_extension(schema, schema_id, staging=True)
    if not schema.auto_stg:
        raise Conflict(
            f"Staging is not enabled on {schema.schema_id}, so {schema_id} does not exist.",
            [Problem(f'set autoStg="true" on the main element of {schema.schema_id} and update the database '
                     f"structure, or write to the cloud table with Write", attribute="xtkschema", value=schema_id)],
        )
    _require_structure(schema)
    return schema


def cloud_schema_get(*, schema_id: str) -> Schema:
    """The source schema `schema_id` ("ns:name") for direct cloud writes; a staging id is refused."""
    namespace, name = _split_id(schema_id)
    schema = Schema.objects.find(namespace, name)
    if schema is None:
        source_name = name[: -len(STAGING_SUFFIX)]
        if name.endswith(STAGING_SUFFIX) and Schema.objects.filter(namespace=namespace, name=source_name).exists():
            raise InvalidInput(
                f"'{schema_id}' is a staging schema; Write and WriteCollection write to the source schema.",
                [Problem(f'set xtkschema="{namespace}:{source_name}", or use Ingest/IngestExt to stage records',
                         attribute="xtkschema", value=schema_id)],
            )
        raise NotFound(f"Unknown schema '{schema_id}'.", [Problem("no schema has this id", attribute="xtkschema",
                                                                   value=schema_id)])
    _refuse_extension(schema, schema_id, staging=False)
    _require_structure(schema)
    return schema


def _refuse_extension(schema: Schema, schema_id: str, *, staging: bool) -> None:
    if schema.extends:
        target = f"{schema.extends}{STAGING_SUFFIX}" if staging else schema.extends
        raise InvalidInput(
            f"'{schema.schema_id}' is an extension of {schema.extends}; its fields are written through "
            f"{target}.", [Problem(f'set xtkschema="{target}"', attribute="xtkschema", value=schema_id)],
        )


# Values as the database driver wants them. SQLite gets text that sorts and compares correctly
# (UTC, `YYYY-MM-DD HH:MM:SS.ffffff`, the form Django itself stores); PostgreSQL gets Python objects.

def _sqlite_value(value):
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt_timezone.utc).replace(tzinfo=None)
        return value.isoformat(" ", timespec="microseconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return value


def _identity(value):
    return value


class _Table:
    """SQL of one data table (staging or cloud) for a schema, built once per call."""

    def __init__(self, description, *, name: str, alias: str):
        self.connection = connections[alias]
        self.alias = alias
        self.vendor = self.connection.vendor
        q = self.q = lambda n: ddl.quote(n, self.vendor)
        self.name = q(name)
        self.attributes = description.attributes
        self.column = {a.name: q(a.sql_name) for a in self.attributes}
        self.to_db = _sqlite_value if self.vendor == ddl.SQLITE else _identity
        temporal = {"date", "time", "datetime", "datetimetz", "datetimenotz"}
        # Per attribute: convert only temporal values, the rest go to the driver untouched.
        self.converters = [(a.name, self.to_db if a.type in temporal else None) for a in self.attributes]
        self.temporal = {a.name for a in self.attributes if a.type in temporal}
        self.names = [a.name for a in self.attributes]
        self.links = None  # the staging table's link-lookup column (see _staging_table)
        self.link_keys = {link.name: link.foreign_key for link in description.links if link.joins}

    def db(self, name: str, value):
        return self.to_db(value) if name in self.temporal and value is not None else value

    def business_values(self, values: dict):
        if not self.temporal:
            return map(values.get, self.names)
        get = values.get
        return [get(name) if convert is None else (None if get(name) is None else convert(get(name)))
                for name, convert in self.converters]

    def now(self):
        return self.to_db(timezone.now())

    def existing(self, cursor, key: tuple[str, ...], key_values: list[tuple], columns: list[str],
                 *, lock: bool = False) -> list[tuple]:
        """Rows (selected `columns` after the key columns) whose key is among `key_values`."""
        key_sql = [self.column[n] for n in key]
        select = ", ".join(key_sql + columns)
        found = []
        # Staged rows are locked in sequence order, as the sync's bookkeeping locks them.
        suffix = f" ORDER BY {self.q(ddl.COL_SEQ)} FOR UPDATE" if lock and self.vendor == ddl.POSTGRESQL else ""
        for start in range(0, len(key_values), KEY_BATCH):
            chunk = key_values[start:start + KEY_BATCH]
            if len(key) == 1:
                where = f"{key_sql[0]} IN ({', '.join(['%s'] * len(chunk))})"
                params = [self.db(key[0], k[0]) for k in chunk]
            else:
                row_sql = "(" + ", ".join(["%s"] * len(key)) + ")"
                where = f"({', '.join(key_sql)}) IN (VALUES {', '.join([row_sql] * len(chunk))})"
                params = [self.db(n, v) for k in chunk for n, v in zip(key, k)]
            cursor.execute(f"SELECT {select} FROM {self.name} WHERE {where}{suffix}", params)
            found.extend(cursor.fetchall())
        return found

    def key_of(self, key: tuple[str, ...], values) -> tuple:
        """A key tuple in the comparable form (SQLite dates as text), from Python or fetched values."""
        return tuple(self.db(n, v) if not isinstance(v, str) else v for n, v in zip(key, values))


def _key_text(key: tuple[str, ...], values) -> tuple[str, str]:
    return ", ".join(key), ", ".join("" if v is None else str(v) for v in values)


def _staging_table(schema: Schema) -> _Table:
    description = schema.description
    table = _Table(description, name=description.staging_table, alias=ddl.LOCAL)
    if ddl.has_link_lookups(description):
        table.links = table.q(ddl.COL_LINKS)
    return table


def _links_text(links: dict | None) -> str | None:
    """The staged form of a row's links by key (the sync resolves them): JSON {link: [[names], [values]]}."""
    return json.dumps({name: [list(key), list(values)] for name, (key, values) in links.items()}) if links else None


# New rows take the table's defaults for status (pending), attempts (0) and version (1).
_STG_INSERT_COLUMNS = (ddl.COL_DELETE, ddl.COL_LAST_MODIFIED, ddl.COL_OPERATION, ddl.COL_COLUMNS, ddl.COL_KEY)


COPY_MIN_ROWS = 100  # from this many staged rows on, PostgreSQL gets them with COPY (one row: an INSERT is cheaper)


def _stage_inserts(cursor, table: _Table, rows: list, now) -> None:
    if not rows:
        return
    columns = [table.column[a.name] for a in table.attributes] + [table.q(c) for c in _STG_INSERT_COLUMNS]
    if table.links:
        columns.append(table.links)
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    business = table.business_values
    joined: dict[tuple, str] = {}  # "a,b" per tuple of names: the same few tuples recur on every row

    def join(names: tuple) -> str:
        text = joined.get(names)
        if text is None:
            text = joined[names] = ",".join(names)
        return text

    params = [(*business(row.values), 1 if row.delete else 0, now, row.operation, join(row.supplied),
               join(row.key)) for row in rows]
    if table.links:
        params = [(*values, _links_text(row.links)) for values, row in zip(params, rows)]
    if table.vendor == ddl.POSTGRESQL and len(params) >= COPY_MIN_ROWS:
        # psycopg's executemany still costs a round of the protocol per row; COPY streams them.
        with table.connection.wrap_database_errors, \
                cursor.cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        return
    cursor.executemany(sql, params)


def _refuse_staged(cursor, table: _Table, rows: list) -> None:
    """Conflict naming every record whose key is already in the staging table (one SELECT per batch)."""
    by_key: dict[tuple[str, ...], list] = {}
    for row in rows:
        if not (row.generated and row.key == (rec.ID_ATTR,)):  # a fresh UUID cannot be staged yet
            by_key.setdefault(row.key, []).append(row)
    problems = []
    for key, group in by_key.items():
        wanted = {table.key_of(key, row.key_values): row for row in group}
        for found in table.existing(cursor, key, list(wanted), []):
            row = wanted.get(table.key_of(key, found))
            if row is not None:
                fields, values = _key_text(key, row.key_values)
                problems.append(Problem("already staged; use IngestExt to update", record=row.index,
                                        attribute=fields, value=values, line=row.line))
    if problems:
        problems.sort(key=lambda p: p.record)
        raise Conflict(f"{len(problems)} record(s) are already staged; use IngestExt to update them. "
                       "Nothing was written.", problems)


def _integrity_conflict(table: _Table, rows: list) -> Conflict:
    """After the unique index refused a batch: name the records whose id exists (a concurrent call
    may have staged the same key between our check and our insert)."""
    ids = [(row.id,) for row in rows if row.id is not None]
    by_id = {row.id: row for row in rows}
    with table.connection.cursor() as cursor:
        found = table.existing(cursor, (rec.ID_ATTR,), ids, [])
    problems = [Problem("already present (unique key); use IngestExt to update", record=by_id[f[0]].index,
                        attribute=rec.ID_ATTR, value=str(f[0]), line=by_id[f[0]].line)
                for f in found if f[0] in by_id]
    return Conflict("A unique key of the table is already present; nothing was written. If another call wrote "
                    "the same key at the same time, retry.", sorted(problems, key=lambda p: p.record))


def _result(records: Sequence, rows: list) -> IngestResult:
    uuids: list[str | None] = [None] * len(records)
    ids: list[str | None] = [None] * len(records)
    for row in rows:
        for index in row.indexes:
            ids[index] = row.id
            uuids[index] = row.id if row.generated else None
    return IngestResult(uuids=tuple(uuids), ids=tuple(ids))


@rec.collector_paused()
@retry_on_deadlock()
def records_ingest(*, schema_id: str, records: Sequence[rec.RecordInput], user) -> IngestResult:
    """Ingest: insert `records` into the staging table of `schema_id` ("ns:nameStg").

    Records without a key get a generated UUID (returned); a key already staged, or repeated in
    the call, rejects the whole call. Needs `staging.ingest`.
    """
    permission_require(user, "staging.ingest", "ingest records")
    _require_size(records)
    schema = staging_schema_get(schema_id=schema_id)
    rows = rec.validated_rows(schema.description, records, mode=rec.INGEST)
    table = _staging_table(schema)
    try:
        if len(rows) == 1 and rows[0].generated and rows[0].key == (rec.ID_ATTR,):
            # One record under a fresh UUID: nothing can be staged under it yet, and one INSERT is atomic
            # by itself, so no BEGIN/COMMIT around it (two round trips fewer per call on PostgreSQL).
            with table.connection.cursor() as cursor:
                _stage_inserts(cursor, table, rows, table.now())
        else:
            with transaction.atomic(using=ddl.LOCAL), table.connection.cursor() as cursor:
                _refuse_staged(cursor, table, rows)
                _stage_inserts(cursor, table, rows, table.now())
    except IntegrityError:
        raise _integrity_conflict(table, rows) from None
    return _result(records, rows)


@rec.collector_paused()
@retry_on_deadlock()
def records_ingest_ext(*, schema_id: str, records: Sequence[rec.RecordInput], user) -> IngestResult:
    """IngestExt: insert, update or delete staged rows of `schema_id` ("ns:nameStg") by key.

    A key already staged is changed in place (one row per key): supplied attributes are merged in,
    absent ones keep their value, the operation follows `staging.records.merge_operation`, and the
    row is pending again with a new version. Needs `staging.ingest`.
    """
    permission_require(user, "staging.ingest", "ingest records")
    _require_size(records)
    schema = staging_schema_get(schema_id=schema_id)
    rows = rec.validated_rows(schema.description, records, mode=rec.INGEST_EXT)
    table = _staging_table(schema)
    try:
        with transaction.atomic(using=ddl.LOCAL), table.connection.cursor() as cursor:
            inserts, updates = _plan_ext(cursor, table, rows)
            now = table.now()
            _stage_inserts(cursor, table, inserts, now)
            _stage_updates(cursor, table, updates, now)
    except IntegrityError:
        raise _integrity_conflict(table, rows) from None
    return _result(records, rows)


def _plan_ext(cursor, table: _Table, rows: list) -> tuple[list, list]:
    """Split rows into new ones and in-place updates of staged rows (one locked SELECT per batch)."""
    q = table.q
    info = [q(c) for c in (ddl.COL_OPERATION, ddl.COL_STATUS, ddl.COL_COLUMNS)]
    xml_data = XML_DATA_ATTR in table.column
    if xml_data:  # the staged XML fields, to merge a partial update's into
        info.append(table.column[XML_DATA_ATTR])
    if table.links:  # the staged links by key, kept unless replaced
        info.append(table.links)
    by_key: dict[tuple[str, ...], list] = {}
    for row in rows:
        by_key.setdefault(row.key, []).append(row)
    staged: dict[tuple, list] = {}
    for key, group in by_key.items():
        lookups = list({table.key_of(key, row.key_values) for row in group})
        for found in table.existing(cursor, key, lookups, [table.column[rec.ID_ATTR]] + info, lock=True):
            staged.setdefault((key, table.key_of(key, found[:len(key)])), []).append(found[len(key):])
    inserts, updates, problems = [], [], []
    for row in rows:
        matches = staged.get((row.key, table.key_of(row.key, row.key_values)), [])
        fields, values = _key_text(row.key, row.key_values)
        if not matches:
            inserts.append(row)
            continue
        if len(matches) > 1:
            problems.append(Problem(f"{len(matches)} staged rows have this key; use a unique key such as @id",
                                    record=row.index, attribute="_key", value=values, line=row.line))
            continue
        staged_id, previous_op, status, previous_columns, *extra = matches[0]
        staged_data = extra[0] if xml_data else None
        staged_links = extra[-1] if table.links else None
        if row.operation == rec.INSERT:
            problems.append(Problem("already staged; _operation=\"insert\" only adds new keys (use the default "
                                    "insertOrUpdate to change it)", record=row.index, attribute=fields,
                                    value=values, line=row.line))
            continue
        if rec.ID_ATTR in row.supplied and row.id != staged_id:
            problems.append(Problem(f"the staged row with this key has id '{staged_id}'; an id cannot change",
                                    record=row.index, attribute=rec.ID_ATTR, value=str(row.id), line=row.line))
            continue
        row.values[rec.ID_ATTR] = staged_id
        row.generated = False
        if status in ddl.UNSYNCED_STATUSES:
            operation, keep = rec.merge_operation(previous_op, row.operation)
        else:  # the previous operation reached the cloud: this one starts afresh
            operation, keep = row.operation, False
        columns = [c for c in (previous_columns or "").split(",") if c] if keep else []
        if keep and xml_data and XML_DATA_ATTR in row.supplied:
            row.values[XML_DATA_ATTR] = merge_xml_data(staged_data, row.values[XML_DATA_ATTR])
        if keep and staged_links:
            # A link still waiting for the sync stays, unless this record sets it (by key or by its foreign key).
            kept = {name: (tuple(key), tuple(values)) for name, (key, values) in json.loads(staged_links).items()
                    if not set(table.link_keys.get(name, ())) & set(row.supplied)}
            row.links = {**kept, **(row.links or {})} or None
        updates.append((row, operation, ",".join(dict.fromkeys(columns + list(row.supplied)))))
    if problems:
        raise Conflict(f"{len(problems)} record(s) conflict with staged rows; nothing was written.",
                       sorted(problems, key=lambda p: p.record))
    return inserts, updates


def _stage_updates(cursor, table: _Table, updates: list, now) -> None:
    """In-place updates, one executemany per set of supplied attributes."""
    q = table.q
    groups: dict[tuple[str, ...], list] = {}
    for row, operation, columns in updates:
        changed = tuple(n for n in row.supplied if n != rec.ID_ATTR)
        groups.setdefault(changed, []).append((row, operation, columns))
    for changed, group in groups.items():
        assignments = [f"{table.column[n]} = %s" for n in changed] + [
            f"{q(ddl.COL_DELETE)} = %s", f"{q(ddl.COL_LAST_MODIFIED)} = %s", f"{q(ddl.COL_OPERATION)} = %s",
            f"{q(ddl.COL_COLUMNS)} = %s", f"{q(ddl.COL_KEY)} = %s", f"{q(ddl.COL_STATUS)} = '{ddl.STATUS_PENDING}'",
            f"{q(ddl.COL_ATTEMPTS)} = 0", f"{q(ddl.COL_ERROR)} = NULL",
            f"{q(ddl.COL_VERSION)} = {q(ddl.COL_VERSION)} + 1",
        ] + ([f"{table.links} = %s"] if table.links else [])
        sql = f"UPDATE {table.name} SET {', '.join(assignments)} WHERE {table.column[rec.ID_ATTR]} = %s"
        cursor.executemany(sql, [
            [table.db(n, row.values.get(n)) for n in changed]
            + [1 if operation == rec.DELETE else 0, now, operation, columns, ",".join(row.key)]
            + ([_links_text(row.links)] if table.links else []) + [row.id]
            for row, operation, columns in group
        ])


@rec.collector_paused()
def records_write(*, schema_id: str, records: Sequence[rec.RecordInput], user) -> None:
    """Write/WriteCollection: apply `records` straight to the cloud table of the source schema
    `schema_id` ("ns:name"), bypassing staging. Same grammar as IngestExt; an update of a missing
    record does nothing, as in Campaign. Needs `staging.write_cloud`.
    """
    permission_require(user, "staging.write_cloud", "write to cloud tables")
    _require_size(records)
    schema = cloud_schema_get(schema_id=schema_id)
    description = schema.description
    rows = rec.validated_rows(description, records, mode=rec.WRITE)
    _resolve_write_links(description, rows)
    alias = ddl.table_alias(description)
    table = _Table(description, name=description.sql_table, alias=alias)
    try:
        with transaction.atomic(using=alias), table.connection.cursor() as cursor:
            _write_rows(cursor, table, rows)
    except IntegrityError as exc:
        raise Conflict(
            f"The cloud table of {schema.schema_id} refused the write (a unique key is already present); "
            "nothing was written.", [Problem(str(exc).splitlines()[0])],
        ) from None


def _resolve_write_links(description: SchemaDescription, rows: list) -> None:
    """Set the foreign keys of links written by key, or refuse the call naming every record whose
    target row is missing (a Write never creates the target)."""
    lookups = {row.index: [(name, key, values) for name, (key, values) in row.links.items()]
               for row in rows if row.links}
    if not lookups:
        return
    found, failed = resolve_links(description, [lookup for group in lookups.values() for lookup in group])
    problems = []
    for row in rows:
        for lookup in lookups.get(row.index, ()):
            if lookup in failed:
                problems.append(Problem(failed[lookup], record=row.index, attribute=f"{lookup[0]}/_key",
                                        value=", ".join(lookup[2]), line=row.line))
            else:
                row.values.update(found[lookup])
    if problems:
        raise InvalidInput(f"{len({p.record for p in problems})} record(s) link to rows that do not exist; "
                           "nothing was written.", problems)


def _write_rows(cursor, table: _Table, rows: list) -> None:
    keyed = [r for r in rows if r.operation in (rec.INSERT_OR_UPDATE, rec.UPDATE)]
    present: set = set()
    by_key: dict[tuple[str, ...], list] = {}
    for row in keyed:
        by_key.setdefault(row.key, []).append(row)
    for key, group in by_key.items():
        lookups = list({table.key_of(key, row.key_values) for row in group})
        present |= {(key, table.key_of(key, found)) for found in table.existing(cursor, key, lookups, [])}
    inserts: dict[tuple, list] = {}
    updates: dict[tuple, list] = {}
    deletes: dict[tuple, list] = {}
    for row in rows:
        exists = (row.key, table.key_of(row.key, row.key_values)) in present
        if row.operation == rec.DELETE:
            deletes.setdefault(row.key, []).append(row)
        elif row.operation == rec.INSERT or (row.operation == rec.INSERT_OR_UPDATE and not exists):
            columns = tuple(dict.fromkeys(((rec.ID_ATTR,) if rec.ID_ATTR in row.values else ()) + row.supplied))
            inserts.setdefault(columns, []).append(row)
        elif exists:
            changed = tuple(n for n in row.supplied if n != rec.ID_ATTR and n not in row.key)
            if changed:
                updates.setdefault((row.key, changed), []).append(row)
        # update of a missing record: nothing to do (Campaign's Write does the same)
    for columns, group in inserts.items():
        sql = (f"INSERT INTO {table.name} ({', '.join(table.column[n] for n in columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))})")
        cursor.executemany(sql, [[table.db(n, row.values.get(n)) for n in columns] for row in group])
    for (key, changed), group in updates.items():
        if XML_DATA_ATTR in changed:  # XML fields not written keep their value: merge into the stored mData
            stored = {table.key_of(key, found[:len(key)]): found[-1] for found in table.existing(
                cursor, key, list({table.key_of(key, row.key_values) for row in group}), [table.column[XML_DATA_ATTR]])}
            for row in group:
                row.values[XML_DATA_ATTR] = merge_xml_data(stored.get(table.key_of(key, row.key_values)),
                                                           row.values[XML_DATA_ATTR])
        where = " AND ".join(f"{table.column[n]} = %s" for n in key)
        sql = f"UPDATE {table.name} SET {', '.join(f'{table.column[n]} = %s' for n in changed)} WHERE {where}"
        cursor.executemany(sql, [[table.db(n, row.values.get(n)) for n in changed + key] for row in group])
    for key, group in deletes.items():
        where = " AND ".join(f"{table.column[n]} = %s" for n in key)
        cursor.executemany(f"DELETE FROM {table.name} WHERE {where}",
                           [[table.db(n, v) for n, v in zip(key, row.key_values)] for row in group])
