"""Concurrency with real processes: two syncs of one schema at once, and IngestExt calls racing syncs.

- Two `manage.py sync_staging` processes started together on a big backlog (PostgreSQL, where two syncs
  could really run side by side): the lease lets one through, the other records `busy` (or they run one
  after the other); every row is applied exactly once and neither deadlocks.
- IngestExt updates of the same keys while sync processes run, over and over (SQLite and PostgreSQL): the
  version check keeps a row updated during its batch pending, so after the races and one last sync the
  cloud holds the LAST value of every key. Half the keys start as Ingest inserts, so an update merged
  into an insert that the racing sync already applied is covered too: it must not come back as a
  "duplicate key".
"""

import threading
import time

import pytest
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services, sync
from staging.sync import _tables_for, apply_next, record_step
from staging.models import SyncLedger, SyncRun
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, make_user, record, staged_schema
from tests.staging.test_sync_crash import (
    Backlog, assert_complete_and_exact, build_backlog, cloud_table, load_backlog, output_of, query, start_sync,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"


@pytest.mark.slow
def test_two_sync_processes_at_once_apply_every_row_exactly_once(tmp_path):
    if connections["cloud"].vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL leg")
    schema = staged_schema(SAMPLE_SOURCE)
    backlog = build_backlog(60_000)
    load_backlog(backlog)

    first, second = (start_sync(tmp_path, name, batch_size=500) for name in ("first", "second"))
    codes = [process.wait(timeout=300) for process in (first, second)]  # a deadlock would time out here

    assert_complete_and_exact(backlog)
    runs = list(SyncRun.objects.filter(schema=schema.schema_id))
    assert len(runs) == 2 and all(run.finished_at for run in runs)
    worked = [run for run in runs if run.status != SyncRun.Status.BUSY]
    assert {run.status for run in worked} <= {SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL}, \
        [output_of(first), output_of(second)]
    assert sum(run.sent for run in worked) == len(backlog.staged)
    assert sum(run.failed for run in worked) == list(backlog.expected_status.values()).count("failed")
    busy = len(runs) - len(worked)
    # A busy run makes its command exit non-zero; when they serialized, both exit 0.
    assert sorted(codes) == ([0, 1] if busy else [0, 0]), [output_of(first), output_of(second)]


def _sync_continuously(tmp_path, stop: threading.Event, outputs: list) -> None:
    """Start `sync_staging` processes one after the other (small batches) until `stop` is set."""
    number = 0
    while not stop.is_set():
        process = start_sync(tmp_path, f"racing-{number}", batch_size=200)
        process.wait(timeout=300)
        outputs.append(output_of(process))
        number += 1


@pytest.mark.slow
def test_ingestext_updates_racing_syncs_are_never_lost(tmp_path):
    schema = staged_schema(SAMPLE_SOURCE)
    user = make_user("racer", "ingest")
    # A filler backlog keeps the racing syncs busy over many batches.
    filler = Backlog(staged=[(f"f{i:06d}", f"filler {i}", None, 0, "insert", "testcol1", "id") for i in range(20_000)])
    load_backlog(filler)
    last: dict[str, tuple[str, str]] = {}
    stop, outputs = threading.Event(), []
    racer = threading.Thread(target=_sync_continuously, args=(tmp_path, stop, outputs))
    racer.start()
    try:
        while not query("default", "SELECT 1 FROM DemSampleTableStg WHERE sStgStatus = 'synced' LIMIT 1"):
            time.sleep(0.02)  # the first racing sync is applying batches
        keys: list[str] = []
        round_number = 0
        # At least 40 rounds, and until 3 racing runs have ended (each started during the updates).
        while round_number < 40 or (len(outputs) < 3 and round_number < 400):
            # Five new keys per round: Ingest (insert) for even rounds, IngestExt (insertOrUpdate) for odd ones.
            new = [f"h{round_number:02d}{i}" for i in range(5)]
            ingest = services.records_ingest if round_number % 2 == 0 else services.records_ingest_ext
            ingest(schema_id=STG, user=user, records=[
                record(key="@id", id=key, testcol1=f"{key} created", testcol2=f"{key} kept") for key in new])
            # Partial updates (testcol1 only) of every key so far: the last one must win, testcol2 must stay.
            if keys:
                services.records_ingest_ext(schema_id=STG, user=user, records=[
                    record(key="@id", id=key, testcol1=f"{key} round {round_number}") for key in keys])
            last.update({key: (f"{key} created", f"{key} kept") for key in new})
            last.update({key: (f"{key} round {round_number}", f"{key} kept") for key in keys})
            keys += new
            round_number += 1
            time.sleep(0.02)
        assert len(outputs) >= 3, "the racing syncs did not keep up"
    finally:
        stop.set()
        racer.join(timeout=300)

    final = sync.staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)

    assert final.status == SyncRun.Status.SUCCEEDED, final.error
    hot = {key: tuple(values) for key, *values in cloud_table() if key.startswith("h")}
    lost = {key: (hot.get(key), want) for key, want in last.items() if hot.get(key) != want}
    assert lost == {}, f"{len(lost)} keys do not hold their last value (found, expected)"
    statuses = dict(query("default", "SELECT sStgStatus, COUNT(*) FROM DemSampleTableStg GROUP BY sStgStatus"))
    assert statuses == {"synced": 20_000 + len(last)}, query(
        "default", "SELECT uSampleTableId, sStgOperation, sStgStatus, mStgError FROM DemSampleTableStg "
                   "WHERE sStgStatus <> 'synced' ORDER BY iStgSeq")[:5]
    assert len(cloud_table()) == 20_000 + len(last)
    assert SyncLedger.objects.using("cloud").count() == 0
    assert any("sent" in output for output in outputs)


# The same race, step by step in one process: the IngestExt call lands between a batch's cloud commit and
# its bookkeeping in staging, deterministically.

def _apply_first_batch(schema):
    tables = _tables_for(schema)
    return tables, apply_next(tables, after=0, limit=100)


@pytest.mark.parametrize("bookkeeping", ["same run", "recovered from the ledger"])
def test_an_update_merged_into_an_insert_being_applied_reaches_the_cloud(bookkeeping):
    schema = staged_schema(SAMPLE_SOURCE)
    user = make_user("racer", "ingest")
    services.records_ingest(schema_id=STG, user=user, records=[record(key="@id", id="K", testcol1="a", testcol2="b")])
    tables, step = _apply_first_batch(schema)  # the insert is in the cloud and in the ledger

    services.records_ingest_ext(schema_id=STG, user=user, records=[record(key="@id", id="K", testcol1="new")])
    if bookkeeping == "same run":
        record_step(tables, step)  # also drops the ledger entry
    run = sync.staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)  # recovers the ledger first

    assert cloud_table() == [("K", "new", "b")]
    assert query("default", "SELECT sStgOperation, sStgStatus FROM DemSampleTableStg") == [("insertOrUpdate", "synced")]
    assert (run.status, run.updated, run.failed) == (SyncRun.Status.SUCCEEDED, 1, 0)
