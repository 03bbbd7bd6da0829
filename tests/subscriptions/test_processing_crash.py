"""A real `manage.py process_subscriptions` SIGKILLed mid-run: its run is closed as failed (worker lost),
the admin dashboard and staging_status say so, and the next run completes the requests."""

import time
import uuid

import pytest
from django.db import connections, transaction

from staging.models import SyncRun
from subscriptions import services
from tests.conftest import BOTH_DATABASES
from tests.staging.test_sync_crash import kill, output_of, run_command, start_command

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES),
              pytest.mark.usefixtures("builtins")]

REQUESTS = 20_000


def stage_requests(count: int) -> None:
    """`count` opt-ins naming a service that does not exist (each fails at once), with one executemany."""
    rows = [(str(uuid.uuid4()), f"r{i}", "no-such-service", "crash test", 0, "insert", "recipient-id,service", "id")
            for i in range(count)]
    with transaction.atomic(using="default"), connections["default"].cursor() as cursor:
        cursor.executemany(
            "INSERT INTO NmsSubscriptionRcpStg (uSubscriptionRcpId, sRecipientId, sService, sOrigin, iDelete, "
            "sStgOperation, mStgColumns, sStgKey) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)


def handled() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM NmsSubscriptionRcpStg WHERE sStgStatus <> 'pending'")
        return cursor.fetchone()[0]


def test_a_killed_subscription_processor_leaves_a_failed_run_and_the_next_run_completes(tmp_path, admin_client):
    stage_requests(REQUESTS)
    process = start_command(tmp_path, "killed", "process_subscriptions", "--batch-size", "50")
    while handled() < 500 and process.poll() is None:
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.fail(f"the processor ended before it could be killed:\n{output_of(process)}")
    kill(process)
    run = SyncRun.objects.get(schema=services.REQUEST_SCHEMA)
    assert run.status == "running"

    status = run_command(tmp_path, "status", "staging_status")
    dashboard = admin_client.get("/admin/staging/dashboard/").content.decode()
    run.refresh_from_db()
    assert (run.status, run.error.split(":")[0]) == ("failed", "worker lost")
    line = next(line for line in status.splitlines() if line.startswith(services.REQUEST_SCHEMA))
    assert "failed (worker lost)" in line, status
    assert "worker lost" in dashboard[dashboard.index('id="staging-backlog"'):]

    run_command(tmp_path, "final", "process_subscriptions")
    assert handled() == REQUESTS
    assert list(SyncRun.objects.order_by("pk").values_list("status", flat=True)) == ["failed", "partial"]
