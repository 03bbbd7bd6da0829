"""Writes of the staging app. SOAP, REST, commands and the admin all come through here."""

import re
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from campaignsite.errors import Conflict, NotFound, Problem, SchemaInvalid, StructureRefused
from staging import ddl
from staging.models import Schema
from staging.srcschema import SchemaDescription, parse_srcschema

BUILTIN_SCHEMA_DIR = Path(__file__).resolve().parent / "builtin_schemas"


def _describe(source: str, *, built_in: bool) -> SchemaDescription:
    return parse_srcschema(source, builtin=built_in, max_bytes=settings.SCHEMA_MAX_BYTES)


def _apply_source(schema: Schema, source: str, description: SchemaDescription, user) -> None:
    schema.source = source
    schema.namespace = description.namespace
    schema.name = description.name
    schema.label = description.label
    schema.auto_stg = description.auto_stg
    schema.target_fingerprint = ddl.fingerprint(ddl.desired_tables(description))
    schema.modified_by = user if user is not None and user.is_authenticated else None
    schema.__dict__.pop("description", None)


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
def schema_create(*, source: str, user=None, built_in: bool = False) -> Schema:
    """Register a new schema from its srcSchema XML (structure not applied yet)."""
    description = _describe(source, built_in=built_in)
    if Schema.objects.filter(namespace=description.namespace, name=description.name).exists():
        raise Conflict(f"Schema {description.id} already exists; update it instead.")
    schema = Schema(built_in=built_in)
    _apply_source(schema, source, description, user)
    schema.save()
    return schema


@transaction.atomic(using="default")
def schema_update(*, schema: Schema, source: str, user=None) -> Schema:
    """Replace a schema's source. Its id (namespace:name) cannot change."""
    description = _describe(source, built_in=schema.built_in)
    if description.id != schema.schema_id:
        raise SchemaInvalid(
            f"The document defines {description.id}, not {schema.schema_id}.",
            [Problem("a schema's namespace and name cannot change; create a new schema instead",
                     attribute="name", value=description.id)],
        )
    _apply_source(schema, source, description, user)
    schema.save()
    return schema


def schema_load(*, source: str, user=None, built_in: bool = False) -> tuple[Schema, bool]:
    """Create the schema, or update it when one with the same id exists. Returns (schema, created)."""
    description = _describe(source, built_in=built_in)
    existing = Schema.objects.filter(namespace=description.namespace, name=description.name).first()
    if existing is None:
        return schema_create(source=source, user=user, built_in=built_in), True
    if existing.source == source:
        return existing, False
    return schema_update(schema=existing, source=source, user=user), False


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


def schema_set_auto_stg(*, schema: Schema, enabled: bool, user=None) -> Schema:
    """Turn staging on or off by rewriting autoStg in the source; the structure update applies it."""
    if schema.auto_stg == enabled:
        return schema
    source = set_auto_stg_in_source(schema.source, name=schema.name, enabled=enabled)
    return schema_update(schema=schema, source=source, user=user)


def structure_plan(*, schema: Schema) -> ddl.Plan:
    """The DDL that would bring both databases to the schema's current source (nothing runs)."""
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


def structure_update(*, schema: Schema, confirm_destructive: bool = False, dry_run: bool = False) -> ddl.Plan:
    """Plan and apply the DDL for `schema`; returns the plan (applied unless `dry_run`).

    Refuses (StructureRefused) when the plan drops columns or changes types without
    `confirm_destructive`, and when it would drop a staging table that still holds unsynced rows.
    """
    plan = structure_plan(schema=schema)
    if dry_run:
        return plan
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


def builtin_schemas_load() -> list[Schema]:
    """Load the built-in schemas shipped in staging/builtin_schemas and apply their structure.

    Idempotent: unchanged files leave their schema alone, and an up-to-date structure yields an
    empty plan.
    """
    loaded = []
    for path in sorted(BUILTIN_SCHEMA_DIR.glob("*.xml")):
        schema, _ = schema_load(source=path.read_text(encoding="utf-8"), built_in=True)
        structure_update(schema=schema)
        loaded.append(schema)
    return loaded
