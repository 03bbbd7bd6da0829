"""The sync service against real databases: staged rows in, cloud rows out."""

import os
import socket

import pytest
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services, sync
from staging.models import SyncLedger, SyncRun
from tests.conftest import BOTH_DATABASES

from .test_srcschema import schema_xml, seed_schemas

# Committed transactions, as in production: on SQLite the sync then attaches the staging file (its
# fast route), which it cannot do inside a test transaction.
pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)


def execute(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def sample():
    schema = services.schema_create(user=SYSTEM, source=seed_schemas()[1])
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def stage(key, op="insertOrUpdate", columns="testcol1,testcol2", testcol1=None, testcol2=None, *, by="id",
          table="DemSampleTableStg", key_column="uSampleTableId"):
    execute(
        "default",
        f"INSERT INTO {table} ({key_column}, sTestcol1, sTestcol2, sStgOperation, mStgColumns, sStgKey) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (key, testcol1, testcol2, op, columns, by),
    )


def cloud_rows(table="DemSampleTable"):
    return execute("cloud", f"SELECT uSampleTableId, sTestcol1, sTestcol2 FROM {table} ORDER BY uSampleTableId")


def staged_status():
    return execute("default", "SELECT uSampleTableId, sStgStatus, mStgError FROM DemSampleTableStg ORDER BY iStgSeq")


def run(schema, **kwargs) -> SyncRun:
    return sync.staging_sync(schema=schema, trigger=SyncRun.Trigger.COMMAND, **{"user": SYSTEM, **kwargs})


def test_inserts_reach_the_cloud_and_rows_become_synced(sample):
    stage("a", "insert", testcol1="1", testcol2="2")
    stage("b", "insertOrUpdate", testcol1="3", testcol2="4")

    result = run(sample)

    assert cloud_rows() == [("a", "1", "2"), ("b", "3", "4")]
    assert [s for _, s, _ in staged_status()] == ["synced", "synced"]
    assert (result.status, result.sent, result.inserted, result.failed) == ("succeeded", 2, 2, 0)
    assert result.finished_at is not None


def test_ingest_insert_of_a_key_already_in_the_cloud_fails_that_row_only(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES ('a', 'cloud')")
    stage("a", "insert", testcol1="staged")
    stage("b", "insert", testcol1="new")

    result = run(sample)

    assert cloud_rows() == [("a", "cloud", None), ("b", "new", None)]
    (a, status_a, error_a), (b, status_b, _) = staged_status()
    assert status_a == "failed" and "duplicate key" in error_a
    assert status_b == "synced"
    assert (result.status, result.failed, result.inserted) == ("partial", 1, 1)


def test_partial_update_changes_only_supplied_columns(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1, sTestcol2) VALUES ('a', 'old1', 'old2')")
    stage("a", "insertOrUpdate", columns="testcol2", testcol2="new2")

    result = run(sample)

    assert cloud_rows() == [("a", "old1", "new2")]
    assert result.updated == 1


def test_partial_insert_uses_column_defaults_for_absent_attributes(sample):
    stage("a", "insertOrUpdate", columns="testcol1", testcol1="only")

    run(sample)

    assert cloud_rows() == [("a", "only", None)]


def test_update_of_a_missing_record_is_skipped_not_failed(sample):
    stage("ghost", "update", columns="testcol1", testcol1="x")

    result = run(sample)

    assert cloud_rows() == []
    assert staged_status()[0][1] == "skipped"
    assert (result.status, result.skipped) == ("succeeded", 1)


def test_delete_removes_the_record_and_deleting_a_missing_one_is_a_no_op(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES ('a', 'x')")
    stage("a", "delete", columns="")
    stage("missing", "delete", columns="")

    result = run(sample)

    assert cloud_rows() == []
    assert [s for _, s, _ in staged_status()] == ["synced", "synced"]
    assert result.deleted == 1


def test_small_batches_keep_ingestion_order_across_many_rows(sample):
    for number in range(25):
        stage(f"k{number:02d}", "insert", testcol1=str(number))

    result = run(sample, batch_size=4)

    assert len(cloud_rows()) == 25
    assert result.sent == 25 and result.inserted == 25


def test_operations_on_one_record_by_another_key_apply_in_order_last_wins(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1, sTestcol2) VALUES ('a', 'mail', 'v0')")
    # Reconciled on @testcol1: three staged rows (own ids) aimed at the same cloud record.
    stage("s1", "update", columns="testcol1,testcol2", testcol1="mail", testcol2="v1", by="testcol1")
    stage("s2", "update", columns="testcol1,testcol2", testcol1="mail", testcol2="v2", by="testcol1")
    stage("s3", "delete", columns="testcol1", testcol1="mail", by="testcol1")
    stage("s4", "insertOrUpdate", columns="testcol1,testcol2", testcol1="mail", testcol2="v4", by="testcol1")

    result = run(sample)

    assert cloud_rows() == [("s4", "mail", "v4")]
    assert (result.updated, result.deleted, result.inserted) == (2, 1, 1)


def test_a_row_updated_while_its_batch_is_applied_stays_pending_with_its_new_values(sample):
    stage("a", "insertOrUpdate", testcol1="first")
    tables = sync._tables_for(sample)
    step = sync.apply_next(tables, after=0, limit=10)
    # IngestExt changes the row in place between the cloud commit and the bookkeeping.
    execute("default", "UPDATE DemSampleTableStg SET sTestcol1 = 'second', iStgVersion = iStgVersion + 1")

    sync.record_step(tables, step)

    assert staged_status()[0][1] == "pending"
    assert not SyncLedger.objects.using("cloud").exists()
    run(sample)
    assert cloud_rows() == [("a", "second", None)]
    assert staged_status()[0][1] == "synced"


def test_a_crash_after_the_cloud_commit_is_recovered_without_applying_twice(sample):
    stage("a", "insert", testcol1="once")
    tables = sync._tables_for(sample)
    sync.apply_next(tables, after=0, limit=10)
    # The process dies here: cloud committed (with its ledger entry), staging still says pending.

    result = run(sample)

    assert cloud_rows() == [("a", "once", None)]
    assert staged_status() == [("a", "synced", None)]  # not "duplicate key"
    assert result.sent == 0
    assert not SyncLedger.objects.using("cloud").exists()


def test_rows_the_cloud_refuses_are_isolated_and_the_others_go_through():
    schema = services.schema_create(user=SYSTEM, source=schema_xml(
        '<attribute name="code" type="string"/><attribute name="due" type="date" notNull="true"/>',
        element_attrs='autopk="true" autouuid="true" autoStg="true"',
    ))
    services.structure_update(user=SYSTEM, schema=schema)
    for key, columns, due in (("ok1", "code,due", "2026-01-01"), ("bad", "code", None), ("ok2", "code,due", "2026-01-02")):
        execute("default", "INSERT INTO CusThingStg (uThingId, sCode, tsDue, mStgColumns) VALUES (%s, 'c', %s, %s)",
                (key, due, columns))

    result = run(schema)

    assert sorted(r[0] for r in execute("cloud", "SELECT uThingId FROM CusThing")) == ["ok1", "ok2"]
    statuses = dict(execute("default", "SELECT uThingId, sStgStatus FROM CusThingStg"))
    assert statuses == {"ok1": "synced", "bad": "failed", "ok2": "synced"}
    error = execute("default", "SELECT mStgError FROM CusThingStg WHERE uThingId = 'bad'")[0][0]
    assert "cloud database refused the row" in error
    assert result.failed == 1 and result.status == "partial"


def test_an_outdated_structure_stops_the_run_and_leaves_rows_pending(sample):
    stage("a", "insert", testcol1="x")
    source = sample.source.replace('<attribute label="Test Col 2"', '<attribute name="extra" type="string"/><attribute label="Test Col 2"')
    schema = services.schema_update(user=SYSTEM, schema=sample, source=source)

    result = run(schema)

    assert result.status == "failed"
    assert "not up to date" in result.error
    assert staged_status()[0][1] == "pending"
    assert cloud_rows() == []


def test_a_second_sync_of_the_same_schema_is_turned_away_while_one_runs(sample):
    stage("a", "insert", testcol1="x")
    assert sync.lease_acquire(name="sync:dem:sampleTable", holder="otherhost:1:1")

    result = run(sample)

    assert result.status == "busy"
    assert staged_status()[0][1] == "pending"


def test_a_lease_left_by_a_dead_process_on_this_host_is_taken_over(sample):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that certainly no longer runs
    assert sync.lease_acquire(name="sync:dem:sampleTable", holder=f"{socket.gethostname()}:{pid}:1")
    stage("a", "insert", testcol1="x")

    result = run(sample)

    assert result.status == "succeeded"


def test_sync_without_staging_is_refused_with_a_reason():
    schema = services.schema_create(user=SYSTEM, source=seed_schemas()[0])
    services.structure_update(user=SYSTEM, schema=schema)

    result = run(schema)

    assert result.status == "failed" and "autoStg is off" in result.error


def test_every_pending_row_is_counted_once_across_runs(sample):
    for number in range(10):
        stage(f"k{number}", "insert", testcol1=str(number))

    first = run(sample, batch_size=3)
    second = run(sample)

    assert first.sent == 10 and second.sent == 0
    assert execute("default", "SELECT COUNT(*) FROM DemSampleTableStg WHERE sStgStatus = 'pending'") == [(0,)]



def test_rows_travel_by_sql_between_two_sqlite_files_and_by_copy_between_two_postgresql_databases(sample):
    # The routes that keep rows out of Python; the tests above run through them (committed transactions).
    tables = sync._tables_for(sample)
    expected = {"sqlite": sync.ATTACHED, "postgresql": sync.COPY}[connections["default"].vendor]

    assert sync._route(tables) == expected


@pytest.mark.django_db(databases=BOTH_DATABASES, transaction=False)
def test_inside_a_callers_transaction_the_sync_moves_rows_through_python_and_still_applies_them(sample):
    stage("a", "insert", testcol1="1")
    stage("b", "insert", testcol1="2")
    tables = sync._tables_for(sample)
    assert sync._route(tables) == (sync.COPY if connections["default"].vendor == "postgresql" else sync.ROWS)

    result = run(sample, batch_size=1)

    assert cloud_rows() == [("a", "1", None), ("b", "2", None)]
    assert (result.sent, result.inserted) == (2, 2)
