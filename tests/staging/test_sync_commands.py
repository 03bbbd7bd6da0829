"""sync_staging, staging_status, purge_staging and setup_schedules, as an operator runs them."""

import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone
from django_q.models import Schedule

from campaignsite.permissions import SYSTEM
from staging import ddl, services, sync
from staging.models import SyncRun
from staging.schedules import PURGE_SCHEDULE, SYNC_SCHEDULE
from staging.selectors import backlog_by_schema
from staging.services import records_ingest
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"
ROOT = Path(__file__).resolve().parents[2]


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", ["sync_staging", "staging_status", "purge_staging", "setup_schedules"])
def test_every_command_explains_itself_with_help(command):
    result = subprocess.run([sys.executable, "manage.py", command, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"usage: manage.py {command}" in result.stdout


# --- sync_staging ----------------------------------------------------------------------------

def test_sync_staging_synchronizes_in_the_foreground_and_prints_the_counts(sample, ingester, capsys):
    records_ingest(schema_id=STG, records=[record(testcol1=str(n)) for n in range(7)], user=ingester)

    out, _ = run("sync_staging", "dem:sampleTable", "--batch-size", "3")

    assert "dem:sampleTable: succeeded - sent 7, inserted 7, updated 0, deleted 0, skipped 0, failed 0" in out
    assert {r["status"] for r in rows_of(sample)} == {"synced"}
    assert SyncRun.objects.get().trigger == "command"
    assert "7/7" in capsys.readouterr().err  # the progress bar reached the end


def test_sync_staging_without_schemas_synchronizes_every_staged_schema(sample, typed, ingester):
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)

    out, _ = run("sync_staging", "--no-progress")

    assert "dem:sampleTable: succeeded - sent 1" in out
    assert "dem:typed: succeeded - sent 0" in out


def test_sync_staging_fails_when_a_run_fails(sample, ingester):
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    services.schema_update(user=SYSTEM, schema=sample, source=sample.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="extra" type="string"/><attribute label="Test Col 2"'))

    with pytest.raises(CommandError) as caught:
        run("sync_staging", "dem:sampleTable", "--no-progress")

    assert "dem:sampleTable (failed)" in str(caught.value)
    assert backlog_by_schema()[0].pending == 1  # (the staging table lacks the new column: no rows_of here)


def test_sync_staging_fails_when_another_sync_holds_the_schema(sample):
    assert sync.lease_acquire(name="sync:dem:sampleTable", holder="elsewhere:1:1")

    with pytest.raises(CommandError) as caught:
        run("sync_staging", "dem:sampleTable", "--no-progress")
    assert "busy" in str(caught.value)


def test_sync_staging_of_an_unknown_schema_says_so(db):
    with pytest.raises(CommandError) as caught:
        run("sync_staging", "dem:nothing")
    assert "Unknown schema 'dem:nothing'" in str(caught.value)


def test_sync_staging_with_row_failures_reports_them_and_succeeds(sample, ingester):
    records_ingest(schema_id=STG, records=[record({"id": "dup"}, key="@id")], user=ingester)
    with connections["cloud"].cursor() as cursor:  # the record is already in the cloud: Ingest fails
        cursor.execute(f"INSERT INTO {ddl.quote('DemSampleTable', cursor.db.vendor)} (uSampleTableId) VALUES ('dup')")

    out, _ = run("sync_staging", "--no-progress")

    assert "dem:sampleTable: partial - sent 1, inserted 0, updated 0, deleted 0, skipped 0, failed 1" in out


# --- staging_status --------------------------------------------------------------------------

def test_staging_status_prints_the_backlog_per_schema(sample, ingester):
    call_command("setup_schedules", stdout=StringIO())
    records_ingest(schema_id=STG, records=[record(testcol1="a"), record(testcol1="b")], user=ingester)
    run("sync_staging", "--no-progress")
    records_ingest(schema_id=STG, records=[record(testcol1="c")], user=ingester)

    out, _ = run("staging_status")

    header, line = out.splitlines()[:2]
    assert header.split() == ["SCHEMA", "PENDING", "FAILED", "OLDEST", "PENDING", "LAST", "RUN", "NEXT", "RUN"]
    assert line.split()[:3] == ["dem:sampleTable", "1", "0"]
    assert "succeeded" in line and line.count("UTC") == 3


def test_staging_status_shows_a_schema_whose_table_is_not_there_yet(db):
    from tests.staging.conftest import SAMPLE_SOURCE

    services.schema_set_auto_stg(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=SAMPLE_SOURCE), enabled=True)

    out, _ = run("staging_status")

    assert out.splitlines()[1].split()[:4] == ["dem:sampleTable", "-", "-", "-"]
    assert "not scheduled (manage.py setup_schedules)" in out
    assert "update_structure" in out


def test_staging_status_with_nothing_staged(db):
    assert run("staging_status")[0] == "No staged schema (autoStg on).\n"


# --- purge_staging ---------------------------------------------------------------------------

def test_purge_staging_prints_what_it_deleted(sample, ingester):
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    run("sync_staging", "--no-progress")
    records_ingest(schema_id=STG, records=[record(testcol1="pending")], user=ingester)

    out, _ = run("purge_staging", "--days", "0")

    assert out.splitlines() == ["dem:sampleTable: 1 row(s) deleted", "Total: 1 row(s) deleted from 1 staging table(s)."]
    assert [r["status"] for r in rows_of(sample)] == ["pending"]


def test_purge_staging_refuses_a_negative_retention(db):
    with pytest.raises(CommandError, match="cannot be negative"):
        run("purge_staging", "--days", "-3")


# --- setup_schedules -------------------------------------------------------------------------

def test_setup_schedules_twice_leaves_each_schedule_once(settings):
    settings.SYNC_INTERVAL_MINUTES = 60
    first, _ = run("setup_schedules")
    second, _ = run("setup_schedules")

    for name in (SYNC_SCHEDULE, PURGE_SCHEDULE):
        assert Schedule.objects.filter(name=name).count() == 1
    assert first == second
    assert f"{SYNC_SCHEDULE}: staging.tasks.sync_all, every 60 min, next run" in first
    assert f"{PURGE_SCHEDULE}: staging.tasks.purge_staging, daily, next run" in first


def test_schedules_repeat_forever_on_the_configured_interval(settings):
    settings.SYNC_INTERVAL_MINUTES = 15
    run("setup_schedules")

    sync_schedule = Schedule.objects.get(name=SYNC_SCHEDULE)
    assert (sync_schedule.schedule_type, sync_schedule.minutes, sync_schedule.repeats) == (Schedule.MINUTES, 15, -1)
    assert sync_schedule.func == "staging.tasks.sync_all" and not sync_schedule.args
    now = timezone.now()
    assert now < sync_schedule.next_run <= now + timedelta(minutes=15)
    assert sync_schedule.next_run.minute % 15 == 0 and sync_schedule.next_run.second == 0
    purge = Schedule.objects.get(name=PURGE_SCHEDULE)
    assert (purge.schedule_type, purge.repeats) == (Schedule.DAILY, -1)
    assert now < purge.next_run <= now + timedelta(days=1) and (purge.next_run.hour, purge.next_run.minute) == (4, 0)


def test_setup_schedules_keeps_the_next_run_and_follows_a_shorter_interval(settings):
    settings.SYNC_INTERVAL_MINUTES = 60
    run("setup_schedules")
    soon = timezone.now() + timedelta(minutes=2)
    Schedule.objects.filter(name=SYNC_SCHEDULE).update(next_run=soon)

    run("setup_schedules")
    assert Schedule.objects.get(name=SYNC_SCHEDULE).next_run == soon  # a restart does not push it back

    Schedule.objects.filter(name=SYNC_SCHEDULE).update(next_run=timezone.now() + timedelta(minutes=55))
    settings.SYNC_INTERVAL_MINUTES = 5
    run("setup_schedules")
    schedule = Schedule.objects.get(name=SYNC_SCHEDULE)
    assert schedule.minutes == 5
    assert schedule.next_run <= timezone.now() + timedelta(minutes=5)


def test_setup_schedules_removes_copies_made_by_hand():
    for _ in range(3):
        Schedule.objects.create(name=SYNC_SCHEDULE, func="staging.tasks.sync_all", schedule_type=Schedule.HOURLY)

    run("setup_schedules")

    (schedule,) = Schedule.objects.filter(name=SYNC_SCHEDULE)
    assert schedule.schedule_type == Schedule.MINUTES


def test_the_cluster_never_catches_up_and_times_out_before_redelivering():
    """Per-schedule catch_up does not exist in django-q2 1.11: the cluster setting decides for all."""
    from django_q.conf import Conf

    conf = django_settings.Q_CLUSTER
    assert conf["catch_up"] is False and Conf.CATCH_UP is False
    assert conf["timeout"] < conf["retry"]
    assert 1 <= conf["max_attempts"] <= 3
