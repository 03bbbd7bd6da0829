"""Reads shared by the REST API, the admin and commands."""

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.utils import timezone as dj_timezone

from campaignsite.errors import Conflict, Forbidden, InvalidInput, NotFound, Problem, Unauthenticated
from staging import ddl, query
from staging.models import Schema, SyncRun
from staging.srcschema import STAGING_SUFFIX, xpath_to_name

STAGED_STATUSES = (ddl.STATUS_PENDING, ddl.STATUS_SYNCED, ddl.STATUS_SKIPPED, ddl.STATUS_FAILED)
_TECHNICAL = (
    ("delete", ddl.COL_DELETE),
    ("lastModified", ddl.COL_LAST_MODIFIED),
    ("operation", ddl.COL_OPERATION),
    ("columns", ddl.COL_COLUMNS),
    ("status", ddl.COL_STATUS),
    ("attempts", ddl.COL_ATTEMPTS),
    ("error", ddl.COL_ERROR),
    ("syncedAt", ddl.COL_SYNCED_AT),
    ("version", ddl.COL_VERSION),
)


VIEW_SCHEMA_PERMISSION = "staging.view_schema"
INGEST_PERMISSION = "staging.ingest"


def schema_read_require(*, user, schema_id: str) -> None:
    """Unauthenticated or Forbidden unless `user` may read the definition of the schema `schema_id`.

    A source schema needs staging.view_schema, as the REST schema endpoints do. A staging schema
    (`...Stg`) is readable with staging.view_schema OR staging.ingest: its document is the record
    format an ingesting client writes. The answer depends on the id only, never on whether the
    schema exists, so a refusal does not reveal which schemas are registered.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        raise Unauthenticated("Authentication is required to read a schema.")
    if user.has_perm(VIEW_SCHEMA_PERMISSION):
        return
    if schema_id.endswith(STAGING_SUFFIX) and user.has_perm(INGEST_PERMISSION):
        return
    needed = (f"'{VIEW_SCHEMA_PERMISSION}' or '{INGEST_PERMISSION}'" if schema_id.endswith(STAGING_SUFFIX)
              else f"'{VIEW_SCHEMA_PERMISSION}'")
    raise Forbidden(
        f"User '{user}' may not read the schema '{schema_id}'.",
        [Problem(f"grant the permission {needed} to this user or one of its groups (admin: Users)")],
    )


def _utc(value):
    # SQLite hands back naive datetimes; the staging tables store UTC there.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def staged_rows(schema: Schema, *, status: str | None = None, after: int | None = None, limit: int = 100,
                key: dict | None = None) -> list[dict]:
    """Staging rows of `schema` in ingestion order (by sequence), at most `limit`, starting after the
    sequence number `after`; optionally only those with `status` or with the attribute values `key`.

    Each row: {"seq", "id", "status", "operation", "columns" (supplied attribute names), "delete",
    "attempts", "error", "lastModified", "syncedAt", "version", "values": {attribute: value}}.
    Uses the (status, seq) index, never a COUNT.
    """
    description = schema.description
    connection = connections[ddl.LOCAL]
    vendor = connection.vendor
    q = lambda name: ddl.quote(name, vendor)  # noqa: E731
    attributes = description.attributes
    columns = [q(ddl.COL_SEQ)] + [q(a.sql_name) for a in attributes] + [q(c) for _, c in _TECHNICAL]
    where, params = [], []
    if status is not None:
        where.append(f"{q(ddl.COL_STATUS)} = %s")
        params.append(status)
    if after is not None:
        where.append(f"{q(ddl.COL_SEQ)} > %s")
        params.append(after)
    for name, value in (key or {}).items():
        where.append(f"{q(description.attribute(name).sql_name)} = %s")
        params.append(value)
    sql = f"SELECT {', '.join(columns)} FROM {q(description.staging_table)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {q(ddl.COL_SEQ)} LIMIT %s"
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    rows = []
    booleans = {a.name for a in attributes if a.type == "boolean"}
    for record in fetched:
        values = {}
        for attribute, value in zip(attributes, record[1:1 + len(attributes)]):
            if attribute.name in booleans and value is not None:
                value = bool(value)
            elif attribute.type != "datetimenotz":
                value = _utc(value)
            values[attribute.name] = value
        technical = dict(zip((n for n, _ in _TECHNICAL), record[1 + len(attributes):]))
        technical["delete"] = bool(technical["delete"])
        technical["columns"] = [c for c in (technical["columns"] or "").split(",") if c]
        technical["lastModified"] = _utc(technical["lastModified"])
        technical["syncedAt"] = _utc(technical["syncedAt"])
        rows.append({"seq": record[0], "id": values.get("id"), **technical, "values": values})
    return rows


# --- Backlog (dashboard, staging_status, REST) ----------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """Where one staged schema stands: what waits, what failed, the last run and the next one."""

    schema_id: str
    pending: int | None  # None while the staging table does not exist yet (structure never applied)
    failed: int | None
    oldest_pending: datetime | None  # lastModified of the longest-waiting pending row
    last_run: SyncRun | None
    next_run: datetime | None  # of the "staging sync" schedule; None when schedules are not set up


def next_sync_time() -> datetime | None:
    from django_q.models import Schedule

    from staging.schedules import SYNC_SCHEDULE

    return Schedule.objects.filter(name=SYNC_SCHEDULE).order_by("pk").values_list("next_run", flat=True).first()


def backlog_by_schema() -> list[Backlog]:
    """One Backlog per staged schema (autoStg on), by schema id.

    Counts walk the (status, seq) index of pending and failed rows only, never the synced millions;
    the last run comes from the (schema, started_at) index. Runs whose worker died are closed first
    (`sync_runs_close_lost`), so every view of the backlog shows them failed, not running for ever.
    """
    from staging.sync import sync_runs_close_lost

    sync_runs_close_lost()
    connection = connections[ddl.LOCAL]
    q = lambda name: ddl.quote(name, connection.vendor)  # noqa: E731
    next_run = next_sync_time()
    result = []
    for schema in Schema.objects.filter(auto_stg=True).order_by("namespace", "name"):
        pending = failed = oldest = None
        table = schema.applied_table("staging")
        if table is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT COUNT(*), MIN({q(ddl.COL_LAST_MODIFIED)}) FROM {q(table['name'])} "
                    f"WHERE {q(ddl.COL_STATUS)} = %s", [ddl.STATUS_PENDING])
                pending, oldest = cursor.fetchone()
                cursor.execute(f"SELECT COUNT(*) FROM {q(table['name'])} WHERE {q(ddl.COL_STATUS)} = %s",
                               [ddl.STATUS_FAILED])
                failed = cursor.fetchone()[0]
        if isinstance(oldest, str):  # SQLite: the text ingest wrote
            oldest = datetime.fromisoformat(oldest)
        last_run = SyncRun.objects.filter(schema=schema.schema_id).order_by("-started_at", "-pk").first()
        result.append(Backlog(schema.schema_id, pending, failed, _utc(oldest), last_run, next_run))
    return result


# --- Table browsers (admin): keyset pages over staging and cloud tables ---------------------------
#
# Staging and cloud tables are raw tables, not models, and can hold millions of rows. Every read here
# walks an index and stops at LIMIT: pages are keyset pages (no OFFSET), counts are capped, and a key
# search is one unique-index lookup per key.

COUNT_CAP = 10_000
_INTEGER_TYPES = ("byte", "short", "long", "int64")
_DECIMAL_TYPES = ("float", "double")
_TEXT_TYPES = ("string", "memo", "uuid")


@dataclass(frozen=True)
class BrowsedTable:
    """A table as the last structure update created it: where it lives and its columns, in order."""

    alias: str
    name: str
    columns: tuple[ddl.ColumnSpec, ...]
    order_by: tuple[str, ...]  # the keyset: iStgSeq for staging, the primary key for cloud tables; () when key-less

    @property
    def pageable(self) -> bool:
        """False for a key-less table: nothing orders its rows stably, so only a first page is read."""
        return bool(self.order_by)


@dataclass(frozen=True)
class TablePage:
    columns: tuple[ddl.ColumnSpec, ...]
    rows: list[tuple]  # values in column order
    keys: list[tuple]  # each row's keyset position (values of `order_by`)
    has_next: bool
    has_previous: bool

    @property
    def first_key(self) -> tuple | None:
        return self.keys[0] if self.keys else None

    @property
    def last_key(self) -> tuple | None:
        return self.keys[-1] if self.keys else None


def browsed_table(schema: Schema, role: str) -> BrowsedTable | None:
    """The applied `role` table ("staging" or "cloud") of `schema`, None when it was never created.

    Columns are those of the applied structure: after an unapplied source edit the table does not
    have the new columns yet, so they are left out instead of failing the SELECT.
    """
    description = schema.description
    if description.view:
        # A view maps a table nobody here creates: read it as the source describes it; it has no staging.
        if role != "cloud":
            return None
        return BrowsedTable(ddl.table_alias(description), description.sql_table, ddl.business_columns(description),
                            tuple(description.attribute(n).sql_name for n in description.primary_key))
    applied = schema.applied_table(role)
    if applied is None:
        return None
    spec = ddl.staging_table(description) if role == "staging" else ddl.desired_tables(description)[0]
    present = set(applied["types"])
    by_name = {c.name.lower(): c for c in spec.columns}
    # The spec's order (business columns first), then any applied column the source no longer has.
    columns = tuple(c for c in spec.columns if c.name.lower() in present) + tuple(
        ddl.ColumnSpec(name, "string") for name in applied["types"] if name not in by_name)
    order_by = (ddl.COL_SEQ,) if role == "staging" else spec.primary_key
    return BrowsedTable(applied["alias"], applied["name"], columns, order_by)


def _where(q, filters: dict, seqs=None) -> tuple[list[str], list]:
    clauses, params = [], []
    for column, value in filters.items():
        clauses.append(f"{q(column)} = %s")
        params.append(value)
    if seqs is not None:
        clauses.append(f"{q(ddl.COL_SEQ)} IN ({', '.join(['%s'] * len(seqs)) or 'NULL'})")
        params.extend(seqs)
    return clauses, params


def _keyset(q, columns: tuple[str, ...], op: str, key: tuple) -> tuple[str, list]:
    # A row-value comparison walks a composite primary key's index in both PostgreSQL and SQLite.
    if len(columns) == 1:
        return f"{q(columns[0])} {op} %s", [key[0]]
    return f"({', '.join(q(c) for c in columns)}) {op} ({', '.join(['%s'] * len(key))})", list(key)


def table_page(table: BrowsedTable, *, filters: dict | None = None, descending: bool = False,
               after: tuple | None = None, before: tuple | None = None, limit: int = 100) -> TablePage:
    """One keyset page of `table` in `order_by` order (`descending` for newest first): the rows
    after the position `after` or before `before` in that display order, `filters` (column → value,
    meant for indexed columns) applied. Reads at most `limit` + 1 rows, never counts.
    """
    connection = connections[table.alias]
    q = lambda name: ddl.quote(name, connection.vendor)  # noqa: E731
    clauses, params = _where(q, filters or {})
    # Going back means reading the other way from `before`, then turning the rows around.
    backwards = before is not None and after is None
    bound = before if backwards else after
    read_descending = descending != backwards
    if bound is not None:
        clause, values = _keyset(q, table.order_by, "<" if read_descending else ">", bound)
        clauses.append(clause)
        params.extend(values)
    direction = " DESC" if read_descending else ""
    sql = f"SELECT {', '.join(q(c.name) for c in table.columns)} FROM {q(table.name)}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    if table.order_by:
        sql += " ORDER BY " + ", ".join(q(c) + direction for c in table.order_by)
    sql += " LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit + 1])
        fetched = cursor.fetchall()
    more = len(fetched) > limit
    rows = fetched[:limit]
    if backwards:
        rows.reverse()
    positions = [table.columns.index(c) for c in _columns_named(table, table.order_by)]
    keys = [tuple(row[i] for i in positions) for row in rows]
    has_next, has_previous = (bound is not None, more) if backwards else (more, bound is not None)
    return TablePage(table.columns, rows, keys, has_next, has_previous)


def _columns_named(table: BrowsedTable, names: tuple[str, ...]) -> list[ddl.ColumnSpec]:
    by_name = {c.name.lower(): c for c in table.columns}
    return [by_name[n.lower()] for n in names]


def table_lookup(table: BrowsedTable, *, lookups: list[dict], filters: dict | None = None,
                 descending: bool = False, limit: int = 100) -> TablePage:
    """The rows matching any of `lookups` (each column → value on a unique index) and `filters`.

    One indexed query per lookup, merged here: an OR in one statement may make the planner walk
    the whole ordering index instead.
    """
    found = {}
    columns = None
    for lookup in lookups:
        page = table_page(table, filters={**(filters or {}), **lookup}, descending=descending, limit=limit)
        columns = page.columns
        found.update(zip(page.keys, page.rows))
    ordered = sorted(found.items(), key=lambda item: item[0], reverse=descending)[:limit]
    return TablePage(columns or table.columns, [r for _, r in ordered], [k for k, _ in ordered], False, False)


def table_row(table: BrowsedTable, *, key: tuple) -> dict | None:
    """One row of `table` by its keyset position (sequence or primary key): {column name: value}."""
    filters = dict(zip((c.name for c in _columns_named(table, table.order_by)), key))
    page = table_page(table, filters=filters, limit=1)
    return dict(zip((c.name for c in page.columns), page.rows[0])) if page.rows else None


def table_count_capped(table: BrowsedTable, *, filters: dict | None = None, seqs=None,
                       cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows match, counting at most `cap` + 1: (count, True when there are more than `cap`)."""
    connection = connections[table.alias]
    q = lambda name: ddl.quote(name, connection.vendor)  # noqa: E731
    clauses, params = _where(q, filters or {}, seqs)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {q(table.name)}{where} LIMIT %s) capped",
                       [*params, cap + 1])
        count = cursor.fetchone()[0]
    return min(count, cap), count > cap


def table_size_estimate(table: BrowsedTable) -> int | None:
    """PostgreSQL's planner estimate of the table's row count (free: no scan); None elsewhere or unknown."""
    connection = connections[table.alias]
    if connection.vendor != ddl.POSTGRESQL:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                       [ddl.quote(table.name, connection.vendor)])
        found = cursor.fetchone()
    return int(found[0]) if found and found[0] is not None and found[0] >= 0 else None


def _typed_key_value(attribute, text: str):
    """`text` as a value of `attribute`'s type, or None when it cannot be one (so that key is skipped)."""
    text = text.strip()
    if attribute.type in _INTEGER_TYPES:
        return int(text) if re.fullmatch(r"-?\d{1,18}", text) else None
    if attribute.type in _DECIMAL_TYPES:
        try:
            return float(text)
        except ValueError:
            return None
    if attribute.type == "boolean":
        return {"true": 1, "1": 1, "false": 0, "0": 0}.get(text.lower())
    if attribute.type in _TEXT_TYPES:
        return text
    return None


def key_help(description) -> str:
    """The keys a search may name, as XPaths: "@id; @email; location/@city, @name"."""
    keys = [tuple(description.primary_key), *(tuple(k.fields) for k in description.keys)]
    return "; ".join(", ".join(description.attribute(f).xpath for f in fields)
                     for fields in keys if fields)


def key_lookups(description, text: str) -> list[dict]:
    """What a key search means, as lookups on unique indexes (SQL column → value), any of which may match.

    "abc" is tried on the primary key and on every single-field key whose type fits; "email=a@b.c" or
    "@first=A, @last=B" names the fields of one key. Raises InvalidInput when the named fields are not a
    whole key (the search would have no index to use) or a value does not fit its field.
    """
    text = (text or "").strip()
    if not text:
        return []
    keys = [tuple(description.primary_key), *(tuple(k.fields) for k in description.keys)]
    accepted = key_help(description)
    if "=" not in text:
        lookups = []
        for fields in dict.fromkeys(k for k in keys if len(k) == 1):
            attribute = description.attribute(fields[0])
            value = _typed_key_value(attribute, text)
            if value is not None:
                lookups.append({attribute.sql_name: value})
        return lookups
    lookup, named = {}, set()
    for part in re.split(r"[,;&]", text):
        name, _, raw = part.partition("=")
        name = name.strip()
        name = xpath_to_name(name) or name.lstrip("@")  # "@email", "email" or "location/@city"
        attribute = description.attribute(name)
        if attribute is None:
            raise InvalidInput(f"Search by key: {description.id} has no attribute '{name}'.",
                               [Problem(f"name the fields of a key: {accepted}", attribute=name, value=raw.strip())])
        value = _typed_key_value(attribute, raw)
        if value is None:
            raise InvalidInput(f"Search by key: '{raw.strip()}' is not a value of @{name} ({attribute.type}).",
                               [Problem(f"give a {attribute.type} value", attribute=name, value=raw.strip())])
        lookup[attribute.sql_name] = value
        named.add(attribute.name)
    if not any(fields and set(fields) <= named for fields in keys):
        raise InvalidInput(f"Search by key: {', '.join(sorted(named))} is not a key of {description.id}.",
                           [Problem(f"name all the fields of one key: {accepted}", value=text)])
    return [lookup]


# --- Sync history (dashboard chart) ---------------------------------------------------------------


def sync_runs_since(*, since: datetime, with_rows_only: bool = False, limit: int = 1000) -> list[SyncRun]:
    """Finished runs started after `since`, oldest first, at most the latest `limit` (the started_at index);
    with `with_rows_only`, only those that sent rows (the scheduled runs that found nothing are left out).
    """
    runs = SyncRun.objects.filter(started_at__gte=since).exclude(status=SyncRun.Status.RUNNING)
    if with_rows_only:
        runs = runs.filter(sent__gt=0)
    return list(reversed(runs.order_by("-started_at", "-pk")[:limit]))


# --- Queries (xtk:queryDef#ExecuteQuery, POST /api/v1/query/) --------------------------------------

# What a staging schema's queries may read besides its business attributes: Campaign's own
# technical fields of a staging record.
QUERY_STAGING_ATTRIBUTES = {"delete": (ddl.COL_DELETE, "boolean"), "lastModified": (ddl.COL_LAST_MODIFIED, "datetime")}


@dataclass(frozen=True)
class QueryResult:
    compiled: "query.CompiledQuery"
    rows: list  # fetched tuples, in the order of compiled.outputs; for count, one tuple (count,)

    @property
    def count(self) -> int:
        return int(self.rows[0][0]) if self.rows else 0

    def records(self, formatter) -> list[dict]:
        return query.shape_rows(self.compiled, self.rows, formatter=formatter)


def _query_target(schema_id: str, user) -> tuple[query.Target, str]:
    """The table a query on `schema_id` reads, and its database; checks the caller may read it.

    A source schema (`dem:sampleTable`) reads its own table (the cloud one unless dataSource keeps
    it local); its staging schema (`dem:sampleTableStg`) reads the staging table. Reading rows needs
    `staging.view_schema`, as the admin's table browsers do; staged rows may also be read with
    `staging.ingest`, as the REST list of staged rows allows.
    """
    from staging import services

    if user is None or not getattr(user, "is_authenticated", False):
        raise Unauthenticated("Authentication is required to query schemas.")
    namespace, _, name = (schema_id or "").partition(":")
    schema = Schema.objects.filter(namespace=namespace, name=name).first()
    staging = False
    if schema is None and name.endswith(STAGING_SUFFIX):
        schema = Schema.objects.filter(namespace=namespace, name=name[: -len(STAGING_SUFFIX)]).first()
        staging = schema is not None
    if schema is None:
        raise NotFound(f"Unknown schema '{schema_id}'.",
                       [Problem("name a registered schema, or its staging schema (…Stg)", attribute="schema",
                                value=schema_id)])
    allowed = user.has_perm("staging.view_schema") or (staging and user.has_perm("staging.ingest"))
    if not allowed:
        needed = "'staging.view_schema' or 'staging.ingest'" if staging else "'staging.view_schema'"
        raise Forbidden(f"User '{user}' may not read the rows of {schema_id}.",
                        [Problem(f"grant {needed} to this user or one of its groups (admin: Users)")])
    if staging and not schema.auto_stg:
        raise Conflict(f"Staging is not enabled on {schema.schema_id}, so {schema_id} does not exist.",
                       [Problem(f"query {schema.schema_id} (its cloud table) instead", attribute="schema",
                                value=schema_id)])
    services._require_structure(schema)
    description = schema.description
    if staging:
        alias = ddl.LOCAL
        where = f"the staging table of {schema_id}"
    else:
        alias = ddl.table_alias(description)
        where = f"the table of {schema_id}"

    def link_target(link) -> query.Target:
        # A path through a link reads the target's table in the same statement (a LEFT JOIN), so
        # both tables must be in one database, and the caller must be allowed to read the target.
        namespace_, _, name_ = link.target.partition(":")
        linked = Schema.objects.filter(namespace=namespace_, name=name_).first()
        linked_alias = ddl.table_alias(linked.description) if linked is not None else alias
        if linked_alias != alias:
            raise query.ExpressionError(
                f"the link '{link.name}' leads to {link.target}, whose table is in the "
                f"{_DATABASE_NAMES[linked_alias]} database, while {where} is in the "
                f"{_DATABASE_NAMES[alias]} database; one query reads one database"
                + (f", so query {schema.schema_id} to read through links" if staging else ""))
        linked_target, _ = _query_target(link.target, user)
        return linked_target

    if staging:
        target = query.Target(description, description.staging_element, description.staging_table,
                              connections[alias].vendor, QUERY_STAGING_ATTRIBUTES, (ddl.COL_SEQ,), link_target)
    else:
        key = tuple(description.attribute(n).sql_name for n in description.primary_key)
        target = query.Target(description, description.name, description.sql_table, connections[alias].vendor,
                              {}, key, link_target)
    return target, alias


_DATABASE_NAMES = {ddl.LOCAL: "local", ddl.CLOUD: "cloud"}


def query_execute(*, query_def: "query.QueryDef", user) -> QueryResult:
    """Run a queryDef (select, get, getIfExists or count) on a schema's table, read-only.

    Raises NotFound for an unknown schema and for `get` when nothing matches, Forbidden without the
    read permission, InvalidInput for anything wrong in the queryDef (naming the node and column)
    or refused by the database (e.g. a value that cannot be converted).
    """
    target, alias = _query_target(query_def.schema, user)
    compiled = query.compile_query(
        query_def, target, default_line_count=settings.QUERY_DEFAULT_LINE_COUNT,
        max_line_count=settings.QUERY_MAX_LINE_COUNT, now=dj_timezone.now(),
    )
    try:
        # A savepoint, so a statement PostgreSQL refuses does not spoil an enclosing transaction.
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(compiled.sql, list(compiled.params))
            rows = cursor.fetchmany(compiled.limit)
    except DatabaseError as error:
        raise InvalidInput(f"The database refused the query on {query_def.schema}.",
                           [Problem(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
                                    attribute="queryDef")]) from None
    if compiled.operation == "get" and not rows:
        raise NotFound(f"The query on {query_def.schema} found no record (operation 'get').",
                       [Problem("use operation 'getIfExists' to get an empty answer instead", attribute="operation",
                                value="get")])
    return QueryResult(compiled, list(rows))
