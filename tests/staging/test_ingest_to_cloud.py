"""End to end: Ingest/IngestExt calls through the services, a sync, then the cloud table."""

import pytest
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services, sync
from staging.models import SyncRun
from tests.conftest import BOTH_DATABASES

from .conftest import make_user, record

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"


@pytest.fixture
def user():
    return make_user("integrator", "ingest")


def cloud():
    with connections["cloud"].cursor() as cursor:
        cursor.execute("SELECT uSampleTableId, sTestcol1, sTestcol2 FROM DemSampleTable ORDER BY uSampleTableId")
        return cursor.fetchall()


def statuses():
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT uSampleTableId, sStgStatus FROM DemSampleTableStg ORDER BY iStgSeq")
        return dict(cursor.fetchall())


def sync_now(schema) -> SyncRun:
    return sync.staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)


def test_ingest_then_sync_inserts_with_generated_and_supplied_ids(sample, user):
    result = services.records_ingest(schema_id=STG, user=user, records=[
        record(testcol1="generated", testcol2="g2"),
        record(key="@id", id="ABC12345", testcol1="supplied"),
    ])
    generated = result.uuids[0]

    run = sync_now(sample)

    assert cloud() == sorted([(generated, "generated", "g2"), ("ABC12345", "supplied", None)])
    assert run.inserted == 2 and set(statuses().values()) == {"synced"}


def test_ingestext_partial_update_never_overwrites_absent_attributes_in_the_cloud(sample, user):
    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="K1", testcol1="a", testcol2="b")])
    sync_now(sample)

    services.records_ingest_ext(schema_id=STG, user=user, records=[record(key="@id", id="K1", testcol2="B")])
    run = sync_now(sample)

    assert cloud() == [("K1", "a", "B")]
    assert run.updated == 1


def test_ingestext_update_of_a_record_missing_in_the_cloud_is_skipped(sample, user):
    services.records_ingest_ext(schema_id=STG, user=user, records=[
        record(key="@id", id="NOPE", op="update", testcol1="x"),
    ])

    run = sync_now(sample)

    assert cloud() == [] and statuses() == {"NOPE": "skipped"} and run.skipped == 1


def test_insert_then_delete_before_the_sync_leaves_nothing_in_the_cloud(sample, user):
    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="T1", testcol1="x")])
    services.records_ingest_ext(schema_id=STG, user=user, records=[record(key="@id", id="T1", op="delete")])

    sync_now(sample)

    assert cloud() == []


def test_delete_after_a_sync_removes_the_cloud_record(sample, user):
    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="T1", testcol1="x")])
    sync_now(sample)
    services.records_ingest_ext(schema_id=STG, user=user, records=[record(key="@id", id="T1", op="delete")])

    run = sync_now(sample)

    assert cloud() == [] and run.deleted == 1


def test_ingest_of_a_key_already_in_the_cloud_fails_at_sync_as_a_duplicate(sample, user):
    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="D1", testcol1="first")])
    sync_now(sample)
    services.records_ingest_ext(schema_id=STG, user=user, records=[record(key="@id", id="D1", op="delete")])
    # Purge-like reset: the synced staging row is gone, the cloud row is re-created by Write.
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM DemSampleTableStg")
    writer = make_user("writer", "write_cloud")
    services.records_write(schema_id="dem:sampleTable", user=writer, records=[record(key="@id", id="D1", testcol1="w")])

    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="D1", testcol1="again")])
    run = sync_now(sample)

    assert cloud() == [("D1", "w", None)]
    assert statuses() == {"D1": "failed"} and run.failed == 1


def test_ingestext_reconciled_on_another_key_updates_the_cloud_record_with_that_key(sample, user):
    services.records_write(schema_id="dem:sampleTable", user=make_user("w", "write_cloud"),
                           records=[record(key="@id", id="C1", testcol1="mail@example.com", testcol2="old")])

    services.records_ingest_ext(schema_id=STG, user=user, records=[
        record(key="@testcol1", testcol1="mail@example.com", testcol2="new"),
    ])
    run = sync_now(sample)

    assert cloud() == [("C1", "mail@example.com", "new")]
    assert run.updated == 1 and run.inserted == 0


def test_a_collection_of_inserts_updates_and_deletes_lands_exactly(sample, user):
    services.records_ingest(schema_id=STG, user=user, records=[
        record(key="@id", id=f"R{n}", testcol1=str(n)) for n in range(5)
    ])
    sync_now(sample)
    services.records_ingest_ext(schema_id=STG, user=user, records=[
        record(key="@id", id="R0", testcol2="changed"),
        record(key="@id", id="R1", op="delete"),
        record(key="@id", id="R9", testcol1="new"),
        record(key="@id", id="R8", op="update", testcol1="skipped"),
    ])

    run = sync_now(sample)

    assert cloud() == [("R0", "0", "changed"), ("R2", "2", None), ("R3", "3", None), ("R4", "4", None),
                       ("R9", "new", None)]
    assert (run.inserted, run.updated, run.deleted, run.skipped, run.failed) == (1, 1, 1, 1, 0)
