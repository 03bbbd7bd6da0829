"""The sync issue's operator flow in a real browser, with a real django-q2 cluster doing the work: ingest
rows, see them pending in the staged-data browser, click "Sync now", then find the run, the rows
synced, the records in the cloud browser, and the dashboard's chart.

"Sync now" only queues; `manage.py qcluster` runs as a subprocess against the live server's test
databases (same broker as the server: the ORM queue, or Redis when REDIS_URL is set) and takes the task.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from campaignsite.db import database_url
from staging import services
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, record, staged_schema

pytestmark = [pytest.mark.browser, pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")  # set it to keep pictures of the pages


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


@pytest.fixture
def qcluster():
    """A django-q2 cluster on the test databases, stopped (its whole process group) after the test."""
    env = {**os.environ, "DATABASE_URL": database_url("default"), "CLOUD_DATABASE_URL": database_url("cloud"),
           "Q_WORKERS": "1"}
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        if os.environ.get("QCLUSTER_LOG"):
            print(output.decode(errors="replace"))


def login(page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")


def wait_for_text(page, url: str, selector: str, text: str, *, seconds: float = 45) -> str:
    """Reload `url` until `selector` shows `text` (the worker runs on its own clock)."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto(url)
        content = page.locator(selector).inner_text()
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.5)


def test_ingested_rows_are_synced_by_sync_now_and_shown_everywhere(live_server, browser_page, django_user_model,
                                                                    qcluster):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    schema = staged_schema(SAMPLE_SOURCE)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    services.records_ingest(schema_id="dem:sampleTableStg",
                            records=[record(id=k, testcol1=f"value {i}") for i, k in enumerate(keys)], user=admin)
    page, base = browser_page, live_server.url
    staged_url = f"{base}/admin/staging/schema/{schema.pk}/staged/"
    login(page, base)

    page.goto(f"{base}/admin/staging/schema/")
    page.get_by_role("link", name="staged").click()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    assert page.locator("#result_list .staging-badge--pending").count() == 3
    assert all(key in page.locator("#result_list").inner_text() for key in keys)
    screenshot(page, "staged_pending")

    page.click("#staging-sync-now")
    assert "Synchronization of dem:sampleTable queued" in page.locator("ul.messagelist").inner_text()

    runs = wait_for_text(page, f"{base}/admin/staging/syncrun/", "#content-main", "succeeded")
    assert "succeeded" in runs and "dem:sampleTable" in runs and "Admin" in runs, runs
    screenshot(page, "sync_runs")
    page.locator("#result_list tbody tr th a").first.click()
    detail = page.locator("#content-main").inner_text()
    assert "3" in detail and "succeeded" in detail

    page.goto(staged_url)
    assert page.locator("#result_list .staging-badge--synced").count() == 3
    page.get_by_role("link", name="Cloud data").click()
    cloud = page.locator("#result_list").inner_text()
    assert all(key in cloud for key in keys) and "value 2" in cloud
    screenshot(page, "cloud_browser")

    page.goto(f"{base}/admin/")
    page.click("#staging-dashboard-link")
    page.wait_for_url("**/admin/staging/dashboard/")  # count() does not wait for the navigation
    assert page.locator("svg.staging-chart").count() == 1
    assert page.locator("svg.staging-chart g.bar").count() == 1
    backlog = page.locator("#staging-backlog").inner_text()
    assert "dem:sampleTable" in backlog and "succeeded" in backlog
    screenshot(page, "dashboard")
