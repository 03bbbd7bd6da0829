"""Ingest → cloud: N records ingested in one SOAP collection (the handler's work: hardened parse,
records_from_xml, records_ingest), then "sync now" (`staging.sync.staging_sync`, what the admin's
Sync now and StartReplicateStagingData run), until the rows are in the cloud table. Total seconds.

Baseline, same run: the same rows written twice with a raw `executemany`, once into the staging
table and once into the cloud table (the two writes the path cannot avoid, without any checks).
"""

import time
import uuid

from bench import ingest_bench


def _tables(schema):
    from django.db import connections

    from staging import ddl

    description = schema.description
    return ((connections[ddl.LOCAL], description.staging_table),
            (connections[ddl.table_alias(description)], description.sql_table))


def clear(schema) -> None:
    """Empty the staging and the cloud table of `schema` and its sync runs."""
    from django.db import transaction

    from staging import ddl
    from staging.models import SyncRun

    for connection, table in _tables(schema):
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {ddl.quote(table, connection.vendor)}")
    SyncRun.objects.filter(schema=schema.schema_id).delete()
    ingest_bench._clear(schema)


def ingest_then_sync(schema, user, n: int) -> tuple[float, float]:
    """(seconds to ingest n records, seconds for the sync that follows); the cloud table ends with n rows."""
    from campaignsite.permissions import SYSTEM
    from django.conf import settings

    from staging import services
    from staging.models import SyncRun
    from staging.records import records_from_xml
    from staging.sync import staging_sync
    from staging.xml import parse_xml

    clear(schema)
    document = ingest_bench.collection(n).encode()
    started = time.perf_counter()
    schema_id, records = records_from_xml(parse_xml(document, max_bytes=settings.INGEST_MAX_BYTES))
    services.records_ingest(schema_id=schema_id, records=records, user=user)
    ingested = time.perf_counter()
    run = staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)
    synced = time.perf_counter()
    assert run.status == SyncRun.Status.SUCCEEDED and run.inserted == n, (run.status, run.inserted, run.error)
    clear(schema)
    return ingested - started, synced - ingested


def raw_twice(schema, n: int) -> float:
    """Seconds to executemany n pre-built rows into the staging table, then into the cloud table."""
    from django.db import transaction
    from django.utils import timezone

    from staging import ddl

    clear(schema)
    (local, staging_table), (cloud, cloud_table) = _tables(schema)
    names = [a.sql_name for a in schema.description.attributes]
    ids = [str(uuid.uuid4()) for _ in range(n)]
    business = [(ids[i], *ingest_bench.values(i).values()) for i in range(n)]
    now = timezone.now()
    now = now.replace(tzinfo=None).isoformat(" ") if local.vendor == ddl.SQLITE else now
    staged = [(*row, now, "insert", "testcol1,testcol2") for row in business]

    def insert_sql(connection, table, columns):
        q = lambda name: ddl.quote(name, connection.vendor)  # noqa: E731
        return (f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})")

    staging_sql = insert_sql(local, staging_table,
                             names + [ddl.COL_LAST_MODIFIED, ddl.COL_OPERATION, ddl.COL_COLUMNS])
    cloud_sql = insert_sql(cloud, cloud_table, names)
    started = time.perf_counter()
    with transaction.atomic(using=local.alias), local.cursor() as cursor:
        cursor.executemany(staging_sql, staged)
    with transaction.atomic(using=cloud.alias), cloud.cursor() as cursor:
        cursor.executemany(cloud_sql, business)
    elapsed = time.perf_counter() - started
    clear(schema)
    return elapsed
