"""Crash safety with real processes: `manage.py sync_staging` SIGKILLed again and again in the middle of a
large backlog, then a final run; the cloud table must be exactly what one uninterrupted sync gives.

The backlog mixes every rule of the sync: inserts of new keys, inserts of keys already in the
cloud (duplicates: failed), partial updates of cloud keys, `update` of missing keys (skipped), deletes of
present and missing keys. The expected cloud table and the expected status of every staged row are
computed in Python from the initial state, so a crash that applied a batch twice, lost one, or turned a
successful insert into a "duplicate" on the re-run shows up as a difference.
"""

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connections, transaction

from campaignsite.db import database_url
from staging.models import SyncLedger, SyncRun
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, staged_schema

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)]

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "dem:sampleTable"
STAGED_COLUMNS = "uSampleTableId, sTestcol1, sTestcol2, iDelete, sStgOperation, mStgColumns, sStgKey"


@dataclass
class Backlog:
    """Initial cloud rows, the staged rows (ingestion order), and what a complete sync must leave."""

    cloud: dict[str, tuple] = field(default_factory=dict)  # id -> (testcol1, testcol2)
    staged: list[tuple] = field(default_factory=list)  # rows in STAGED_COLUMNS order
    expected_cloud: dict[str, tuple] = field(default_factory=dict)
    expected_status: dict[str, str] = field(default_factory=dict)  # staged id -> synced/skipped/failed


def build_backlog(rows: int, *, seed: int = 4) -> Backlog:
    """About `rows` staged rows (one per key, as IngestExt leaves them) over a cloud of rows // 3 records."""
    rng = random.Random(seed)
    backlog = Backlog()
    in_cloud = [f"c{i:07d}" for i in range(rows // 3)]
    backlog.cloud = {key: (f"cloud1 {key}", f"cloud2 {key}") for key in in_cloud}
    rng.shuffle(in_cloud)
    share = len(in_cloud) // 4
    # Cloud keys touched by the backlog, each once: partial updates (two shapes), deletes, duplicate inserts.
    upsert_col2, update_col1, deleted, duplicates = (in_cloud[i * share:(i + 1) * share] for i in range(4))
    duplicates = duplicates[: share // 5]
    new = rows - (len(upsert_col2) + len(update_col1) + len(deleted) + len(duplicates))
    fresh = [f"n{i:07d}" for i in range(new)]
    inserts, upserts, ghosts, ghost_deletes = fresh[: new // 2], fresh[new // 2: new * 3 // 4], \
        fresh[new * 3 // 4: new * 7 // 8], fresh[new * 7 // 8:]

    expected, status, staged = dict(backlog.cloud), {}, []
    for key in inserts + duplicates:
        staged.append((key, f"ins1 {key}", f"ins2 {key}", 0, "insert", "testcol1,testcol2", "id"))
        if key in backlog.cloud:
            status[key] = "failed"  # a real duplicate: the key was in the cloud before the sync started
        else:
            expected[key], status[key] = (f"ins1 {key}", f"ins2 {key}"), "synced"
    for key in upserts:  # insertOrUpdate of a new key with one column: the other takes its default (NULL)
        staged.append((key, f"up1 {key}", None, 0, "insertOrUpdate", "testcol1", "id"))
        expected[key], status[key] = (f"up1 {key}", None), "synced"
    for key in upsert_col2:  # partial update of a cloud record: testcol1 must keep its cloud value
        staged.append((key, None, f"new2 {key}", 0, "insertOrUpdate", "testcol2", "id"))
        expected[key], status[key] = (expected[key][0], f"new2 {key}"), "synced"
    for key in update_col1:
        staged.append((key, f"new1 {key}", None, 0, "update", "testcol1", "id"))
        expected[key], status[key] = (f"new1 {key}", expected[key][1]), "synced"
    for key in ghosts:  # update of a record the cloud does not have
        staged.append((key, f"ghost {key}", None, 0, "update", "testcol1", "id"))
        status[key] = "skipped"
    for key in deleted + ghost_deletes:  # delete of a present record, and of a missing one (a no-op)
        staged.append((key, None, None, 1, "delete", "", "id"))
        expected.pop(key, None)
        status[key] = "synced"
    rng.shuffle(staged)
    backlog.staged, backlog.expected_cloud, backlog.expected_status = staged, expected, status
    return backlog


def load_backlog(backlog: Backlog) -> None:
    """The initial cloud rows and the staged rows, each with one executemany (not through the services)."""
    with transaction.atomic(using="cloud"), connections["cloud"].cursor() as cursor:
        cursor.executemany("INSERT INTO DemSampleTable (uSampleTableId, sTestcol1, sTestcol2) VALUES (%s, %s, %s)",
                           [(key, *values) for key, values in backlog.cloud.items()])
    with transaction.atomic(using="default"), connections["default"].cursor() as cursor:
        cursor.executemany(f"INSERT INTO DemSampleTableStg ({STAGED_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                           backlog.staged)


def query(alias: str, sql: str, params=()) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def cloud_table() -> list[tuple]:
    return query("cloud", "SELECT uSampleTableId, sTestcol1, sTestcol2 FROM DemSampleTable ORDER BY uSampleTableId")


def staged_outcomes() -> dict[str, tuple[str, str | None]]:
    return {key: (status, error) for key, status, error in
            query("default", "SELECT uSampleTableId, sStgStatus, mStgError FROM DemSampleTableStg")}


def done_rows() -> int:
    return query("default", "SELECT COUNT(*) FROM DemSampleTableStg WHERE sStgStatus <> 'pending'")[0][0]


def subprocess_env() -> dict:
    return {**os.environ, "DATABASE_URL": database_url("default"), "CLOUD_DATABASE_URL": database_url("cloud"),
            "PYTHONUNBUFFERED": "1"}


def start_sync(tmp_path, name: str, *, batch_size: int, schema: str = SCHEMA) -> subprocess.Popen:
    """`manage.py sync_staging SCHEMA` on the test databases, output in tmp_path/name.log."""
    log = open(tmp_path / f"{name}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sync_staging", schema, "--batch-size", str(batch_size), "--no-progress"],
        cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()  # the child has its own descriptor
    process.log_path = tmp_path / f"{name}.log"
    return process


def output_of(process) -> str:
    return process.log_path.read_text(errors="replace")


def assert_complete_and_exact(backlog: Backlog) -> None:
    """The cloud table is exactly the expected one and every staged row has exactly its expected outcome."""
    rows = cloud_table()
    assert len(rows) == len({key for key, *_ in rows}), "duplicate keys in the cloud table"
    assert len(rows) == len(backlog.expected_cloud)
    differences = [(key, values, backlog.expected_cloud.get(key)) for key, *values in rows
                   if backlog.expected_cloud.get(key) != tuple(values)]
    assert differences[:5] == [], f"{len(differences)} cloud rows differ (key, found, expected)"
    outcomes = staged_outcomes()
    wrong = [(key, outcomes[key], want) for key, want in backlog.expected_status.items() if outcomes[key][0] != want]
    assert wrong[:5] == [], f"{len(wrong)} staged rows have an unexpected status (key, found, expected)"
    failed_errors = {outcomes[key][1].split(":")[0] for key, want in backlog.expected_status.items() if want == "failed"}
    assert failed_errors <= {"duplicate key"}
    assert SyncLedger.objects.using("cloud").count() == 0, "ledger entries remain"


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def wait_for_progress(process, rows: int, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while done_rows() < rows and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_for_ledger(process, schema_id: str, *, present: bool, timeout: float = 120) -> None:
    """Until the schema has a ledger entry (`present`: a batch's cloud commit is done, its bookkeeping in
    staging maybe not) or has none."""
    ledger = SyncLedger.objects.using("cloud").filter(schema=schema_id)
    deadline = time.monotonic() + timeout
    while ledger.exists() != present and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def test_sigkilled_sync_processes_then_a_final_run_leave_the_exact_cloud_table(tmp_path):
    """Kills at different moments: while the process starts, at random offsets after it made progress,
    and the moment a batch's ledger entry appears (cloud committed, staging not yet told: the case the
    ledger exists for). At least 5 kills, and at least one must have left a ledger entry behind."""
    schema = staged_schema(SAMPLE_SOURCE)
    backlog = build_backlog(60_000)
    load_backlog(backlog)
    total = len(backlog.staged)
    rng = random.Random(20)
    kills, kills_with_ledger, progress = 0, 0, []
    while kills < 5 or (kills_with_ledger == 0 and kills < 12):
        before = done_rows()
        process = start_sync(tmp_path, f"killed-{kills}", batch_size=rng.choice([250, 500, 1000]))
        if kills == 0:
            time.sleep(rng.uniform(0.05, 0.6))  # dies while starting or on its first batches
        elif kills % 2:
            wait_for_progress(process, before + rng.randint(200, 2000))
            time.sleep(rng.uniform(0, 0.1))  # a random point of the batch cycle
        else:
            wait_for_progress(process, before + 1)
            wait_for_ledger(process, schema.schema_id, present=False)  # a recovered entry must not count
            wait_for_ledger(process, schema.schema_id, present=True)
        if process.poll() is not None:
            pytest.fail(f"the sync ended before it could be killed (raise the backlog):\n{output_of(process)}")
        kill(process)
        kills += 1
        kills_with_ledger += SyncLedger.objects.using("cloud").filter(schema=schema.schema_id).exists()
        progress.append(done_rows())


    assert kills >= 5, f"the backlog was done after {kills} kills: {progress}"
    assert progress[-1] < total, f"nothing left for the final run: {progress}"
    assert kills_with_ledger >= 1, f"no kill fell between a cloud commit and its bookkeeping in {kills} kills"

    final = start_sync(tmp_path, "final", batch_size=1000)
    assert final.wait(timeout=300) == 0, output_of(final)

    assert_complete_and_exact(backlog)
    runs = list(SyncRun.objects.filter(schema=schema.schema_id).order_by("pk"))
    # Partial when duplicates were among the rows the final run sent; never busy (the dead holder's lease is taken).
    assert runs[-1].status in ("partial", "succeeded"), output_of(final)
    # Each run killed after it made progress held the lease; whoever took it over closed that run.
    lost = [run for run in runs[:-1] if run.status == "failed" and run.error.startswith("worker lost")]
    assert len(lost) >= kills - 1, [(run.status, run.error) for run in runs]
    assert all(run.finished_at is not None for run in lost)


# --- Runs whose worker died: failed ("worker lost"), not running for ever ---------------------------

def start_command(tmp_path, name: str, *args: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "wb")
    process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    process.log_path = tmp_path / f"{name}.log"
    return process


def run_command(tmp_path, name: str, *args: str) -> str:
    process = start_command(tmp_path, name, *args)
    assert process.wait(timeout=300) == 0, output_of(process)
    return output_of(process)


def killed_mid_sync(tmp_path, schema) -> SyncRun:
    """A real `sync_staging` process SIGKILLed after it applied some batches; returns its run."""
    backlog = build_backlog(20_000)
    load_backlog(backlog)
    process = start_sync(tmp_path, "killed", batch_size=100)
    wait_for_progress(process, 500)
    if process.poll() is not None:
        pytest.fail(f"the sync ended before it could be killed:\n{output_of(process)}")
    kill(process)
    return SyncRun.objects.get(schema=schema.schema_id)


def test_a_killed_sync_shows_failed_worker_lost_in_staging_status_and_the_dashboard(tmp_path, admin_client):
    schema = staged_schema(SAMPLE_SOURCE)
    run = killed_mid_sync(tmp_path, schema)
    assert run.status == "running"  # nobody has looked yet: the process could not record its end

    status = run_command(tmp_path, "status", "staging_status")
    dashboard = admin_client.get("/admin/staging/dashboard/").content.decode()

    line = next(line for line in status.splitlines() if line.startswith(SCHEMA))
    assert "failed (worker lost)" in line, status
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert "worker lost" in run.error and "stay pending" in run.error
    backlog_row = dashboard[dashboard.index('id="staging-backlog"'):]
    assert "staging-badge--failed" in backlog_row and "worker lost" in backlog_row


def test_the_next_sync_closes_a_killed_runs_record_and_completes_its_rows(tmp_path):
    schema = staged_schema(SAMPLE_SOURCE)
    killed = killed_mid_sync(tmp_path, schema)

    final = start_sync(tmp_path, "final", batch_size=1000)
    assert final.wait(timeout=300) == 0, output_of(final)

    killed.refresh_from_db()
    assert (killed.status, killed.error.split(":")[0]) == ("failed", "worker lost")
    assert done_rows() == len(staged_outcomes())  # nothing left pending
    assert not SyncRun.objects.filter(status="running").exists()
