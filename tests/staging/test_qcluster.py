"""A real django-q2 cluster (`manage.py qcluster` in a subprocess) runs the sync against the test databases.

Scheduled sync end to end with the ORM broker and with the Redis broker, and a manually queued sync.
The cluster's scheduler wakes about every 30 s (django_q/cluster.py: `counter >= 30`), so these take
that long; they are marked slow.
"""

import os
import signal
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from django_q.models import Schedule

from campaignsite.db import database_url
from campaignsite.permissions import SYSTEM
from staging import sync
from staging.models import SyncRun
from staging.schedules import SYNC_SCHEDULE, schedules_setup
from staging.services import records_ingest, records_ingest_ext
from tests.conftest import BOTH_DATABASES, skip_or_fail
from tests.staging.conftest import SAMPLE_SOURCE, make_user, record, rows_of, staged_schema

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)]

ROOT = Path(__file__).resolve().parents[2]
STG = "dem:sampleTableStg"
# Scheduler wake-up (~30 s) + worker start + the sync itself, with room for a slow CI machine.
SCHEDULED_WAIT = 120
QUEUED_WAIT = 60


@contextmanager
def qcluster(tmp_path, *, redis_url: str = ""):
    """`manage.py qcluster` on the test databases until the block ends; then SIGTERM and wait."""
    env = {**os.environ, "DATABASE_URL": database_url("default"), "CLOUD_DATABASE_URL": database_url("cloud"),
           "Q_WORKERS": "1", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    log_path = tmp_path / "qcluster.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group we started: cluster, workers, monitor
                process.wait(timeout=10)
            else:
                try:  # workers left behind by a cluster that died badly
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def wait_for(condition, *, timeout: float, process, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"qcluster exited ({process.returncode}) before {what}:\n{process.log_path.read_text()}")
        time.sleep(0.5)
    pytest.fail(f"Timed out after {timeout} s waiting for {what}. qcluster log:\n{process.log_path.read_text()}")


@pytest.fixture
def ingested():
    """dem:sampleTable staged, with an insert, and an update of a record already synced once."""
    schema = staged_schema(SAMPLE_SOURCE)
    ingester = make_user("ingester", "ingest")
    records_ingest_ext(schema_id=STG, records=[record({"id": "k1", "testcol1": "first"}, key="@id")], user=ingester)
    sync.staging_sync(user=SYSTEM, schema=schema, trigger=SyncRun.Trigger.COMMAND)
    records_ingest(schema_id=STG, records=[record(testcol1="new one")], user=ingester)
    records_ingest_ext(schema_id=STG, records=[record({"id": "k1", "testcol2": "second"}, key="@id")], user=ingester)
    assert sorted(r["status"] for r in rows_of(schema)) == ["pending", "pending"]
    return schema


def cloud_values() -> list[tuple]:
    with connections["cloud"].cursor() as cursor:
        vendor = cursor.db.vendor
        cursor.execute(f"SELECT {', '.join(q(c, vendor) for c in ('sTestcol1', 'sTestcol2'))} "
                       f"FROM {q('DemSampleTable', vendor)} ORDER BY 1")
        return cursor.fetchall()


def q(name: str, vendor: str) -> str:
    from staging.ddl import quote as ddl_quote

    return ddl_quote(name, vendor)


def due_sync_schedule(*, missed_slots: int) -> Schedule:
    """The schedules as setup_schedules leaves them, with the sync `missed_slots` intervals overdue."""
    schedules_setup()
    schedule = Schedule.objects.get(name=SYNC_SCHEDULE)
    schedule.next_run = timezone.now() - missed_slots * timedelta(minutes=schedule.minutes) + timedelta(seconds=5)
    schedule.save()
    return schedule


def assert_scheduled_sync_ran(schema, tmp_path, *, redis_url: str = ""):
    due_sync_schedule(missed_slots=3)
    with qcluster(tmp_path, redis_url=redis_url) as process:
        wait_for(lambda: SyncRun.objects.filter(schema="dem:sampleTable", trigger="schedule",
                                                finished_at__isnull=False).exists(),
                 timeout=SCHEDULED_WAIT, process=process, what="a scheduled SyncRun")
        time.sleep(2)  # room for a second run, which must not come
    # catch_up=False: three missed slots, one run. (The subscription processing that follows records
    # its own runs, under nms:subscriptionRcp.)
    run = SyncRun.objects.get(trigger="schedule", schema="dem:sampleTable")
    assert (run.schema, run.status, run.sent, run.inserted, run.updated) == ("dem:sampleTable", "succeeded", 2, 1, 1)
    assert {r["status"] for r in rows_of(schema)} == {"synced"}
    assert cloud_values() == [("first", "second"), ("new one", None)]
    assert Schedule.objects.get(name=SYNC_SCHEDULE).next_run > timezone.now()  # moved on, not replaying


def test_the_cluster_runs_the_scheduled_sync_with_the_orm_broker(ingested, tmp_path):
    assert_scheduled_sync_ran(ingested, tmp_path)


def free_redis_db(base_url: str) -> str:
    try:
        import redis

        client = redis.Redis.from_url(f"{base_url}/0", socket_connect_timeout=2)
        client.ping()
        databases = int(client.config_get("databases").get("databases", 16))
    except Exception as exc:  # any failure to reach it means the same: no Redis here
        skip_or_fail(f"Redis is not reachable at {base_url} ({exc})")
    # Start at a place derived from TEST_DB_TAG so parallel runs tend to pick different databases.
    start = zlib.crc32(os.environ.get("TEST_DB_TAG", "").encode()) % (databases - 1) + 1
    for offset in range(databases - 1):
        number = (start + offset - 1) % (databases - 1) + 1
        if redis.Redis.from_url(f"{base_url}/{number}").dbsize() == 0:
            return f"{base_url}/{number}"
    skip_or_fail(f"Every Redis database at {base_url} holds keys; none is free for the test")


@pytest.mark.redis
def test_the_cluster_runs_the_scheduled_sync_with_the_redis_broker(ingested, tmp_path):
    import redis

    url = free_redis_db("redis://127.0.0.1:6379")
    try:
        assert_scheduled_sync_ran(ingested, tmp_path, redis_url=url)
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter("django_q:*"):  # only what the cluster left in the database we chose
            client.delete(key)


def test_the_cluster_runs_a_manually_queued_sync(ingested, tmp_path, settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("queues through this process's broker; run with the ORM broker (REDIS_URL unset)")
    operator = make_user("operator", "run_sync")
    with qcluster(tmp_path) as process:
        name = sync.sync_enqueue(schema="dem:sampleTable", trigger=SyncRun.Trigger.API, user=operator)
        wait_for(lambda: SyncRun.objects.filter(schema="dem:sampleTable", trigger="api",
                                                finished_at__isnull=False).exists(),
                 timeout=QUEUED_WAIT, process=process, what="the queued SyncRun")
        from django_q.tasks import fetch

        wait_for(lambda: fetch(name) is not None, timeout=QUEUED_WAIT, process=process, what="the task result")
    run = SyncRun.objects.get(trigger="api", schema="dem:sampleTable")
    assert (run.status, run.sent) == ("succeeded", 2)
    task = fetch(name)
    assert task.success and task.result["run"] == run.pk
    assert cloud_values() == [("first", "second"), ("new one", None)]
