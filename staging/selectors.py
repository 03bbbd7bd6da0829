"""Reads shared by the REST API, the admin and commands."""

from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import connections

from staging import ddl
from staging.models import Schema, SyncRun

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
    the last run comes from the (schema, started_at) index.
    """
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
