"""Reads shared by the REST API, the admin and commands."""

from datetime import datetime, timezone

from django.db import connections

from staging import ddl
from staging.models import Schema

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
