"""Retention: synced rows past STAGING_RETENTION_DAYS go; pending and failed rows never do."""

from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from campaignsite.errors import InvalidInput
from campaignsite.permissions import SYSTEM
from staging import ddl, sync
from staging.models import SyncRun
from staging.services import records_ingest, records_ingest_ext
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"


def execute(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def stage(user, *ids, op=None):
    records = [record({"id": i, "testcol1": f"value of {i}"}, key="@id", op=op) for i in ids]
    return records_ingest_ext(schema_id=STG, records=records, user=user)


def run_sync(schema) -> SyncRun:
    return sync.staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)


def age(*ids, days: float, synced_days: float | None = None):
    """Pretend the rows `ids` were staged `days` ago and synced `synced_days` ago (when synced at all)."""
    vendor = connections[ddl.LOCAL].vendor
    q = lambda name: ddl.quote(name, vendor)  # noqa: E731
    staged = sync._db_time(timezone.now() - timedelta(days=days), vendor)
    synced = sync._db_time(timezone.now() - timedelta(days=days if synced_days is None else synced_days), vendor)
    placeholders = ", ".join(["%s"] * len(ids))
    execute(ddl.LOCAL, f"UPDATE {q('DemSampleTableStg')} SET {q(ddl.COL_LAST_MODIFIED)} = %s, "
                       f"{q(ddl.COL_SYNCED_AT)} = CASE WHEN {q(ddl.COL_SYNCED_AT)} IS NULL THEN NULL ELSE %s END "
                       f"WHERE {q('uSampleTableId')} IN ({placeholders})", [staged, synced, *ids])


def statuses(schema) -> dict[str, str]:
    return {row["id"]: row["status"] for row in rows_of(schema)}


def fail(*ids):
    """Give the rows `ids` a cloud record already there, so their Ingest insert fails at sync time."""
    table = ddl.quote("DemSampleTable", connections["cloud"].vendor)
    column = ddl.quote("uSampleTableId", connections["cloud"].vendor)
    for row_id in ids:
        execute("cloud", f"INSERT INTO {table} ({column}) VALUES (%s)", [row_id])


def test_synced_rows_older_than_the_retention_are_deleted_and_recent_ones_kept(sample, ingester, settings):
    settings.STAGING_RETENTION_DAYS = 7
    stage(ingester, "old1", "old2", "new")
    run_sync(sample)
    age("old1", "old2", days=8)
    age("new", days=6)

    deleted = sync.staging_purge(user=SYSTEM)

    assert deleted == {"dem:sampleTable": 2}
    assert statuses(sample) == {"new": "synced"}


def test_old_pending_and_failed_rows_survive_whatever_their_age(sample, ingester):
    records_ingest(schema_id=STG, records=[record({"id": "dup"}, key="@id")], user=ingester)
    fail("dup")
    stage(ingester, "done")
    run_sync(sample)
    stage(ingester, "waiting")  # pending: never synchronized
    age("dup", "done", "waiting", days=3650)
    assert statuses(sample) == {"dup": "failed", "done": "synced", "waiting": "pending"}

    deleted = sync.staging_purge(user=SYSTEM, older_than_days=0)

    assert deleted == {"dem:sampleTable": 1}
    assert statuses(sample) == {"dup": "failed", "waiting": "pending"}


def test_skipped_rows_are_purged_like_synced_rows(sample, ingester):
    stage(ingester, "ghost", op="update")  # update of a record the cloud does not have: skipped
    run_sync(sample)
    assert statuses(sample) == {"ghost": "skipped"}
    age("ghost", days=30)

    assert sync.staging_purge(user=SYSTEM, older_than_days=7) == {"dem:sampleTable": 1}
    assert rows_of(sample) == []


def test_the_sync_time_decides_not_the_staging_time(sample, ingester):
    stage(ingester, "late")
    run_sync(sample)
    age("late", days=30, synced_days=1)  # staged long ago, reached the cloud yesterday

    assert sync.staging_purge(user=SYSTEM, older_than_days=7) == {"dem:sampleTable": 0}
    assert statuses(sample) == {"late": "synced"}


def test_a_synced_row_ingested_again_is_pending_and_survives(sample, ingester):
    stage(ingester, "again")
    run_sync(sample)
    age("again", days=30)
    stage(ingester, "again")  # IngestExt on a synced key: the same staging row, pending again
    age("again", days=30)  # even if its clock says old

    assert sync.staging_purge(user=SYSTEM, older_than_days=7) == {"dem:sampleTable": 0}
    assert statuses(sample) == {"again": "pending"}


def test_purge_deletes_in_bounded_batches_and_keeps_everything_else(sample, ingester):
    ids = [f"k{n:02d}" for n in range(20)]
    stage(ingester, *ids)
    run_sync(sample)
    old = ids[::2]  # every other row, so batches interleave kept rows
    age(*old, days=30)
    stage(ingester, "pending-new")

    deleted = sync.staging_purge(user=SYSTEM, older_than_days=7, batch_size=3)

    assert deleted == {"dem:sampleTable": 10}
    assert sorted(statuses(sample)) == sorted(set(ids) - set(old) | {"pending-new"})


def test_schemas_without_a_staging_table_are_left_out(sample, ingester):
    from staging import services
    from tests.staging.conftest import TYPED_SOURCE

    services.schema_create(user=SYSTEM, source=TYPED_SOURCE)  # staged in its source, structure never applied

    assert sync.staging_purge(user=SYSTEM) == {"dem:sampleTable": 0}


def test_a_negative_retention_is_refused(sample):
    with pytest.raises(InvalidInput) as caught:
        sync.staging_purge(user=SYSTEM, older_than_days=-1)
    assert caught.value.problems[0].value == "-1"
