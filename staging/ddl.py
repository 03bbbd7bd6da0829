"""Schema description → tables, and the DDL that brings a database to them.

The planning half is pure: `desired_tables` turns a description into table specs and `plan_changes`
diffs them against what the database holds (`TableState`, read by `inspect_table`) and against the
column types recorded at the last update. The result is a `Plan` of SQL statements that the admin,
the API and `update_structure --dry-run` show verbatim before anything runs.

Identifiers: on PostgreSQL every identifier is created lower-case, so `SELECT sTestcol1 FROM
DemSampleTable` works unquoted (PostgreSQL folds unquoted names to lower case); SQLite keeps
Campaign's spelling and compares names case-insensitively anyway.
"""

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from staging.srcschema import NUMERIC_TYPES, Attribute, SchemaDescription

CLOUD = "cloud"
LOCAL = "default"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"

# Staging bookkeeping columns. Campaign's own technical fields first.
COL_SEQ = "iStgSeq"
COL_DELETE = "iDelete"
COL_LAST_MODIFIED = "tsLastModified"
COL_OPERATION = "sStgOperation"
COL_KEY = "sStgKey"  # attribute names of the reconciliation key (_key), comma-separated
COL_COLUMNS = "mStgColumns"
COL_STATUS = "sStgStatus"
COL_ATTEMPTS = "iStgAttempts"
COL_ERROR = "mStgError"
COL_SYNCED_AT = "tsStgSynced"
COL_VERSION = "iStgVersion"
# Links set by key, resolved by the sync against the target's cloud table: JSON {link: [[key names],
# [values]]}. Only staging tables of schemas with links have it.
COL_LINKS = "mStgLinks"

STATUS_PENDING = "pending"
STATUS_SYNCED = "synced"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
UNSYNCED_STATUSES = (STATUS_PENDING, STATUS_FAILED)

_MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # a Campaign type, or "serial" for the staging sequence
    length: int | None = None
    nullable: bool = True
    default: str | None = None  # portable SQL literal or CURRENT_TIMESTAMP
    attribute: str | None = None  # the schema attribute it stores, None for technical columns


@dataclass(frozen=True)
class IndexSpec:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class TableSpec:
    role: str  # "cloud" (the schema's own table) or "staging"
    alias: str  # database alias
    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[IndexSpec, ...] = ()

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


@dataclass(frozen=True)
class TableState:
    """What the database holds for one table, as read by `inspect_table` (names lower-cased)."""

    columns: frozenset[str]
    indexes: frozenset[str]


@dataclass(frozen=True)
class Statement:
    alias: str
    sql: str
    kind: str  # create_table, drop_table, add_column, drop_column, alter_type, rebuild, create_index, drop_index
    table: str
    role: str
    destructive: bool = False


@dataclass(frozen=True)
class Plan:
    statements: tuple[Statement, ...] = ()
    tables: tuple[TableSpec, ...] = field(default=(), compare=False)

    @property
    def is_empty(self) -> bool:
        return not self.statements

    @property
    def destructive(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.destructive)

    def as_text(self) -> str:
        if not self.statements:
            return "-- The database structure is up to date: nothing to do."
        lines, current = [], None
        for statement in self.statements:
            if statement.alias != current:
                current = statement.alias
                label = "cloud database" if current == CLOUD else "local database"
                lines.append(f"-- {label} ({current})")
            if statement.destructive:
                lines.append("-- DESTRUCTIVE: needs confirmation")
            lines.append(statement.sql + ";")
        return "\n".join(lines)


# --- Desired tables -------------------------------------------------------------------------

def table_alias(description: SchemaDescription) -> str:
    """The database of a schema's own table: the cloud one, unless its dataSource keeps it local."""
    return CLOUD if description.is_cloud else LOCAL


def desired_tables(description: SchemaDescription) -> tuple[TableSpec, ...]:
    """The tables a description calls for: its own table, and its staging table when autoStg is on.

    A view (`view="true"`) maps a table that exists already and that nobody here manages: none. A
    key-less schema gets a table without primary key.
    """
    if description.view:
        return ()
    business = business_columns(description)
    pk_columns = tuple(description.attribute(n).sql_name for n in description.primary_key)
    indexes = _key_indexes(description, description.sql_table)
    tables = [TableSpec("cloud", table_alias(description), description.sql_table, business, pk_columns, indexes)]
    if description.auto_stg:
        tables.append(staging_table(description))
    return tuple(tables)


def business_columns(description: SchemaDescription) -> tuple[ColumnSpec, ...]:
    """The columns of the schema's own table (or of the existing table a view maps), in order."""
    return tuple(_business_column(a, staging=False) for a in description.attributes)


def staging_table(description: SchemaDescription) -> TableSpec:
    name = description.staging_table
    pk_columns = tuple(description.attribute(n).sql_name for n in description.primary_key)
    columns = (
        ColumnSpec(COL_SEQ, "serial", nullable=False),
        *(_business_column(a, staging=True) for a in description.attributes),
        ColumnSpec(COL_DELETE, "boolean", nullable=False, default="0"),
        ColumnSpec(COL_LAST_MODIFIED, "datetime", nullable=False, default="CURRENT_TIMESTAMP"),
        ColumnSpec(COL_OPERATION, "string", length=16, nullable=False, default="'insert'"),
        ColumnSpec(COL_KEY, "string", length=255, nullable=False, default="'id'"),
        ColumnSpec(COL_COLUMNS, "memo", nullable=False, default="''"),
        ColumnSpec(COL_STATUS, "string", length=16, nullable=False, default=f"'{STATUS_PENDING}'"),
        ColumnSpec(COL_ATTEMPTS, "long", nullable=False, default="0"),
        ColumnSpec(COL_ERROR, "memo"),
        ColumnSpec(COL_SYNCED_AT, "datetime"),
        ColumnSpec(COL_VERSION, "long", nullable=False, default="1"),
        *((ColumnSpec(COL_LINKS, "memo"),) if has_link_lookups(description) else ()),
    )
    indexes = (
        IndexSpec(index_name(name, "id"), pk_columns, unique=True),
        *_key_indexes(description, name),
        IndexSpec(index_name(name, "lastModifiedStg"), (COL_LAST_MODIFIED,)),
        IndexSpec(index_name(name, "status"), (COL_STATUS, COL_SEQ)),
    )
    return TableSpec("staging", LOCAL, name, columns, (COL_SEQ,), indexes)


def has_link_lookups(description: SchemaDescription) -> bool:
    """Whether staged rows of `description` may set links by key (it has a link with a foreign key)."""
    return any(not link.unbound and link.joins for link in description.links)


def _business_column(attribute: Attribute, *, staging: bool) -> ColumnSpec:
    # Staging rows may carry only some attributes (partial IngestExt), so only the key is required
    # there. Cloud tables follow Campaign: numbers are NOT NULL with a default (0 unless declared).
    default = _default_literal(attribute)
    nullable = not attribute.not_null
    if attribute.type in NUMERIC_TYPES:
        nullable, default = False, default or "0"
    if attribute.type in ("string",) and attribute.not_null and default is None:
        default = "''"
    if staging:
        nullable, default = attribute.name != "id", None
    return ColumnSpec(attribute.sql_name, attribute.type, attribute.length, nullable, default, attribute.name)


def _default_literal(attribute: Attribute) -> str | None:
    raw = (attribute.default or "").strip()
    if not raw:
        return None
    if attribute.type in NUMERIC_TYPES:
        lowered = raw.lower()
        if lowered in ("true", "false"):
            return "1" if lowered == "true" else "0"
        try:
            float(raw)
        except ValueError:
            return None
        return raw
    if raw.lower() == "getdate()" and attribute.type.startswith("date"):
        return "CURRENT_TIMESTAMP"
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return "'" + raw[1:-1].replace("'", "''") + "'"
    return None  # an XTK expression with no SQL equivalent: applied by nobody, kept in the source


def _key_indexes(description: SchemaDescription, table: str) -> tuple[IndexSpec, ...]:
    def columns(fields):
        return tuple(description.attribute(f).sql_name for f in fields)

    specs = [IndexSpec(index_name(table, k.name), columns(k.fields), unique=True)
             for k in description.keys if k.db_index]
    specs += [IndexSpec(index_name(table, i.name), columns(i.fields), unique=i.unique) for i in description.indexes]
    return tuple(specs)


def index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:_MAX_IDENTIFIER - 9]}_{digest}"


def fingerprint(tables: tuple[TableSpec, ...]) -> str:
    """A stable digest of the structure; equal digests mean nothing to apply."""
    payload = json.dumps([asdict(t) for t in tables], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def column_types(table: TableSpec) -> dict[str, str]:
    """Portable column types recorded after an update, to spot type changes next time."""
    return {c.name.lower(): f"{c.kind}({c.length})" if c.length else c.kind for c in table.columns}


# --- SQL rendering --------------------------------------------------------------------------

def quote(name: str, vendor: str) -> str:
    """`name` as a quoted SQL identifier; a schema-qualified table (`public.MyTable`, only a view's
    sqltable can be one) is quoted part by part: `"public"."mytable"` on PostgreSQL."""
    return ".".join('"' + (part.lower() if vendor == POSTGRESQL else part) + '"' for part in name.split("."))


def sql_type(column: ColumnSpec, vendor: str) -> str:
    kind = column.kind
    if kind == "serial":
        return "BIGINT GENERATED BY DEFAULT AS IDENTITY" if vendor == POSTGRESQL else "INTEGER"
    if kind in ("string", "uuid"):
        return f"VARCHAR({column.length or 36})"
    if kind == "memo":
        return "TEXT"
    if kind in ("boolean", "byte", "short"):
        return "SMALLINT"
    if kind == "long":
        return "INTEGER"
    if kind == "int64":
        return "BIGINT"
    if kind == "float":
        return "REAL"
    if kind == "double":
        return "DOUBLE PRECISION"
    if kind == "date":
        return "DATE"
    if kind == "time":
        return "TIME"
    if kind in ("datetime", "datetimetz"):
        return "TIMESTAMP WITH TIME ZONE" if vendor == POSTGRESQL else "DATETIME"
    if kind == "datetimenotz":
        return "TIMESTAMP WITHOUT TIME ZONE" if vendor == POSTGRESQL else "DATETIME"
    raise ValueError(f"no SQL type for {kind!r}")


def _column_sql(column: ColumnSpec, vendor: str, *, inline_pk: bool = False) -> str:
    parts = [quote(column.name, vendor), sql_type(column, vendor)]
    if inline_pk:
        parts.append("PRIMARY KEY AUTOINCREMENT" if vendor == SQLITE else "PRIMARY KEY")
    elif not column.nullable:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    return " ".join(parts)


def create_table_sql(table: TableSpec, vendor: str, name: str | None = None) -> str:
    serial_pk = table.primary_key == (COL_SEQ,)
    lines = [_column_sql(c, vendor, inline_pk=serial_pk and c.name == COL_SEQ) for c in table.columns]
    if table.primary_key and not serial_pk:
        lines.append("PRIMARY KEY (" + ", ".join(quote(c, vendor) for c in table.primary_key) + ")")
    body = ",\n  ".join(lines)
    return f"CREATE TABLE {quote(name or table.name, vendor)} (\n  {body}\n)"


def create_index_sql(table: TableSpec, index: IndexSpec, vendor: str) -> str:
    unique = "UNIQUE " if index.unique else ""
    columns = ", ".join(quote(c, vendor) for c in index.columns)
    return f"CREATE {unique}INDEX {quote(index.name, vendor)} ON {quote(table.name, vendor)} ({columns})"


# --- Planning -------------------------------------------------------------------------------

def plan_changes(
    desired: tuple[TableSpec, ...],
    current: dict[str, TableState | None],
    *,
    vendors: dict[str, str],
    applied_types: dict[str, dict[str, str]] | None = None,
    previous_tables: tuple[tuple[str, str, str], ...] = (),
) -> Plan:
    """Statements that take the databases from `current` to `desired`.

    `current` maps every table name involved (desired ones and `previous_tables`) to its state, or
    None when absent. `applied_types` holds the column types recorded at the last update, keyed by
    table. `previous_tables` lists (role, alias, name) of tables the schema had before, so a staging
    table that is no longer wanted is dropped.
    """
    applied_types = applied_types or {}
    statements: list[Statement] = []
    wanted = {t.name.lower() for t in desired}
    for role, alias, name in previous_tables:
        if name.lower() not in wanted and current.get(name) is not None:
            statements.append(Statement(alias, f"DROP TABLE {quote(name, vendors[alias])}", "drop_table", name, role))
    for table in desired:
        vendor = vendors[table.alias]
        state = current.get(table.name)
        if state is None:
            statements.append(Statement(table.alias, create_table_sql(table, vendor), "create_table", table.name, table.role))
            statements += [
                Statement(table.alias, create_index_sql(table, i, vendor), "create_index", table.name, table.role)
                for i in table.indexes
            ]
            continue
        statements += _alter_table(table, state, vendor, applied_types.get(table.name.lower(), {}))
    return Plan(tuple(statements), desired)


def _alter_table(table: TableSpec, state: TableState, vendor: str, applied: dict[str, str]) -> list[Statement]:
    wanted_types = column_types(table)
    missing = [c for c in table.columns if c.name.lower() not in state.columns]
    removed = sorted(name for name in state.columns if name not in wanted_types)
    retyped = [c for c in table.columns
               if c.name.lower() in state.columns and applied.get(c.name.lower(), wanted_types[c.name.lower()])
               != wanted_types[c.name.lower()]]
    wanted_indexes = {i.name.lower(): i for i in table.indexes}
    prefix = table.name.lower() + "_"
    # Only indexes this tool named (table_...) are ours to drop; others were added by hand.
    stale_indexes = sorted(n for n in state.indexes if n.startswith(prefix) and n not in wanted_indexes)

    def stmt(sql, kind, destructive=False):
        return Statement(table.alias, sql, kind, table.name, table.role, destructive)

    # A longer string (an extension growing a length) loses nothing: PostgreSQL widens the VARCHAR in
    # place, and SQLite does not enforce VARCHAR lengths at all, so there is nothing to run there.
    widened = [c for c in retyped if _widens(applied.get(c.name.lower(), ""), wanted_types[c.name.lower()])]
    retyped = [c for c in retyped if c not in widened]
    if vendor == SQLITE and (removed or retyped):
        return _sqlite_rebuild(table, state, removed, retyped, stmt)

    out = [stmt(f"DROP INDEX {quote(n, vendor)}", "drop_index") for n in stale_indexes]
    qt = quote(table.name, vendor)
    for name in removed:
        out.append(stmt(f"ALTER TABLE {qt} DROP COLUMN {quote(name, vendor)}", "drop_column", True))
    for column in retyped:
        qc = quote(column.name, vendor)
        out.append(stmt(f"ALTER TABLE {qt} ALTER COLUMN {qc} TYPE {sql_type(column, vendor)} USING {qc}::"
                        f"{sql_type(column, vendor)}", "alter_type", True))
    if vendor == POSTGRESQL:
        for column in widened:
            out.append(stmt(f"ALTER TABLE {qt} ALTER COLUMN {quote(column.name, vendor)} TYPE "
                            f"{sql_type(column, vendor)}", "alter_type"))
    for column in missing:
        out.append(stmt(f"ALTER TABLE {qt} ADD COLUMN {_column_sql(column, vendor)}", "add_column"))
    for name, index in wanted_indexes.items():
        if name not in state.indexes:
            out.append(stmt(create_index_sql(table, index, vendor), "create_index"))
    return out


_SIZED = re.compile(r"^(string|uuid)\((\d+)\)$")


def _widens(applied: str, wanted: str) -> bool:
    before, after = _SIZED.match(applied), _SIZED.match(wanted)
    return bool(before and after and before.group(1) == after.group(1) and int(after.group(2)) >= int(before.group(2)))


def _sqlite_rebuild(table, state, removed, retyped, stmt) -> list[Statement]:
    # SQLite cannot change a column's type and refuses to drop an indexed column, so the table is
    # rebuilt the way SQLite's documentation describes: new table, copy, drop, rename, re-index.
    vendor = SQLITE
    temp = f"{table.name}__rebuild"
    kept = [c.name for c in table.columns if c.name.lower() in state.columns]
    columns = ", ".join(quote(c, vendor) for c in kept)
    out = [stmt(create_table_sql(table, vendor, name=temp), "rebuild", True)]
    if kept:  # when no column survives (a new key replaces every old column) there is nothing to copy
        out.append(stmt(f"INSERT INTO {quote(temp, vendor)} ({columns}) SELECT {columns} FROM "
                        f"{quote(table.name, vendor)}", "rebuild", True))
    out += [
        stmt(f"DROP TABLE {quote(table.name, vendor)}", "rebuild", True),
        stmt(f"ALTER TABLE {quote(temp, vendor)} RENAME TO {quote(table.name, vendor)}", "rebuild", True),
    ]
    out += [stmt(create_index_sql(table, i, vendor), "create_index") for i in table.indexes]
    return out


# --- Reading the database (the one impure corner) -------------------------------------------

def inspect_table(connection, name: str) -> TableState | None:
    """Columns and index names of `name` in `connection`'s database, or None if it does not exist."""
    vendor = connection.vendor
    physical = name.lower() if vendor == POSTGRESQL else name
    with connection.cursor() as cursor:
        tables = {t.lower(): t for t in connection.introspection.table_names(cursor)}
        if physical.lower() not in tables:
            return None
        actual = tables[physical.lower()]
        columns = frozenset(c.name.lower() for c in connection.introspection.get_table_description(cursor, actual))
        constraints = connection.introspection.get_constraints(cursor, actual)
    indexes = frozenset(n.lower() for n, info in constraints.items() if info.get("index") and not info.get("primary_key"))
    return TableState(columns=columns, indexes=indexes)
