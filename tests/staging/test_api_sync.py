"""REST synchronization: queue a sync, read runs, retry and discard failed rows."""

import json

import pytest
from django.db import connections
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from rest_framework.test import APIClient

from apitokens.services import api_token_create
from campaignsite.permissions import SYSTEM
from staging import ddl, sync
from staging.models import SyncRun
from staging.services import records_ingest, schema_get
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"
SYNC = "/api/v1/sync/"
RUNS = "/api/v1/sync/runs/"
RETRY = "/api/v1/staging/dem:sampleTable/rows/retry-failed/"
DISCARD = "/api/v1/staging/dem:sampleTable/rows/discard-failed/"


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def operator():
    return make_user("operator", "run_sync")


@pytest.fixture
def api(operator) -> APIClient:
    return api_for(operator)


def post(api, url, data=None):
    if data is None:
        return api.post(url)
    return api.post(url, data=json.dumps(data), content_type="application/json")


def queued() -> list[dict]:
    return [SignedPackage.loads(item.payload) for item in OrmQ.objects.using("default").order_by("pk")]


@pytest.fixture
def orm_broker(settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("reads the ORM broker's queue; REDIS_URL is set for this run")


def failed_rows(ingester, *ids):
    """Stage Ingest rows whose key the cloud already holds, and sync: they fail with "duplicate key"."""
    records_ingest(schema_id=STG, records=[record({"id": i}, key="@id") for i in ids], user=ingester)
    with connections["cloud"].cursor() as cursor:
        table = ddl.quote("DemSampleTable", cursor.db.vendor)
        cursor.executemany(f"INSERT INTO {table} (uSampleTableId) VALUES (%s)", [[i] for i in ids])
    sync.staging_sync(user=SYSTEM, schema=schema_get(schema_id="dem:sampleTable"), trigger=SyncRun.Trigger.COMMAND)


# --- POST sync/ ------------------------------------------------------------------------------

def test_post_sync_of_a_schema_answers_202_with_the_queued_task(sample, api, orm_broker,
                                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(using="default", execute=True):
        response = post(api, SYNC, {"schema": "dem:sampleTable"})

    assert response.status_code == 202, response.json()
    (task,) = response.json()["tasks"]
    assert task["schema"] == "dem:sampleTable"
    assert response.json()["runs"].endswith("/api/v1/sync/runs/?schema=dem:sampleTable")
    (package,) = queued()
    assert package["name"] == task["task"]
    assert package["args"] == ("dem:sampleTable", "api")
    assert not SyncRun.objects.exists()  # nothing ran inside the request


def test_post_sync_without_a_schema_queues_every_staged_schema(sample, api, orm_broker,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(using="default", execute=True):
        response = post(api, SYNC)

    assert response.status_code == 202
    assert response.json()["tasks"][0]["schema"] is None
    assert queued()[0]["func"] == "staging.tasks.sync_all"


def test_post_sync_needs_the_run_sync_permission(sample, ingester):
    response = post(api_for(ingester), SYNC, {"schema": "dem:sampleTable"})

    assert response.status_code == 403
    assert response.json()["problems"][0]["message"].startswith("grant the permission 'staging.run_sync'")


def test_post_sync_without_credentials_is_refused(sample):
    assert APIClient().post(SYNC).status_code in (401, 403)


def test_post_sync_of_an_unknown_schema_is_404(db, api):
    response = post(api, SYNC, {"schema": "dem:nothing"})
    assert response.status_code == 404
    assert response.json()["problems"][0]["value"] == "dem:nothing"


def test_post_sync_of_a_schema_with_an_outdated_structure_is_409(sample, api):
    from staging import services

    services.schema_update(user=SYSTEM, schema=sample, source=sample.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="extra" type="string"/><attribute label="Test Col 2"'))

    response = post(api, SYNC, {"schema": "dem:sampleTable"})
    assert response.status_code == 409
    assert "not up to date" in response.json()["error"]


def test_post_sync_with_a_malformed_body_names_the_field(sample, api):
    response = post(api, SYNC, {"schema": ["dem:sampleTable"]})
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "schema"


# --- GET sync/runs/ --------------------------------------------------------------------------

def make_runs(sample, typed):
    for schema, status in ((sample, "succeeded"), (typed, "failed"), (sample, "partial"), (sample, "succeeded")):
        SyncRun.objects.create(schema=schema.schema_id, trigger="schedule", status=status)


def test_runs_are_listed_newest_first(sample, typed, api):
    make_runs(sample, typed)

    response = api.get(RUNS)

    assert response.status_code == 200
    ids = [r["id"] for r in response.json()["results"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    first = response.json()["results"][0]
    assert {"schema", "trigger", "status", "started_at", "finished_at", "sent", "inserted", "updated", "deleted",
            "skipped", "failed", "error", "duration_seconds"} <= set(first)


def test_runs_filter_by_schema_and_status(sample, typed, api):
    make_runs(sample, typed)

    by_schema = api.get(RUNS, {"schema": "dem:typed"}).json()["results"]
    by_status = api.get(RUNS, {"schema": "dem:sampleTable", "status": "succeeded"}).json()["results"]

    assert [(r["schema"], r["status"]) for r in by_schema] == [("dem:typed", "failed")]
    assert [(r["schema"], r["status"]) for r in by_status] == [("dem:sampleTable", "succeeded")] * 2


def test_runs_are_paged_by_cursor(sample, typed, api):
    make_runs(sample, typed)

    first = api.get(RUNS, {"limit": 3}).json()
    second = api.get(first["next"]).json()

    assert len(first["results"]) == 3 and len(second["results"]) == 1 and second["next"] is None
    assert first["results"][-1]["id"] > second["results"][0]["id"]


def test_runs_refuse_an_unknown_status_filter(sample, api):
    response = api.get(RUNS, {"status": "done"})
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "status"


def test_a_run_is_read_by_id(sample, ingester, api):
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    run = sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)

    body = api.get(f"{RUNS}{run.pk}/").json()

    assert (body["id"], body["status"], body["sent"], body["inserted"]) == (run.pk, "succeeded", 1, 1)
    assert body["duration_seconds"] >= 0
    assert api.get(f"{RUNS}999999/").status_code == 404


def test_runs_need_a_permission(sample, ingester):
    assert api_for(ingester).get(RUNS).status_code == 403
    assert api_for(make_user("viewer", "view_syncrun")).get(RUNS).status_code == 200


# --- Failed rows -----------------------------------------------------------------------------

def test_retry_failed_makes_every_failed_row_pending_again(sample, ingester, api):
    failed_rows(ingester, "a", "b")
    records_ingest(schema_id=STG, records=[record(testcol1="fine")], user=ingester)

    response = post(api, RETRY)

    assert response.json() == {"schema": "dem:sampleTable", "count": 2}
    rows = {r["id"]: r for r in rows_of(sample)}
    assert (rows["a"]["status"], rows["a"]["error"], rows["a"]["attempts"]) == ("pending", None, 1)
    assert sorted(r["status"] for r in rows.values()) == ["pending", "pending", "pending"]


def test_retried_rows_go_through_once_the_cause_is_fixed(sample, ingester, api):
    failed_rows(ingester, "a")
    with connections["cloud"].cursor() as cursor:  # the operator removes the conflicting record
        cursor.execute(f"DELETE FROM {ddl.quote('DemSampleTable', cursor.db.vendor)}")
    post(api, RETRY)

    run = sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)

    assert (run.sent, run.inserted) == (1, 1)
    assert rows_of(sample)[0]["status"] == "synced"


def test_retry_failed_of_chosen_rows_only(sample, ingester, api):
    failed_rows(ingester, "a", "b")
    seq_of_b = next(r["seq"] for r in rows_of(sample) if r["id"] == "b")

    response = post(api, RETRY, {"seqs": [seq_of_b]})

    assert response.json()["count"] == 1
    assert {r["id"]: r["status"] for r in rows_of(sample)} == {"a": "failed", "b": "pending"}


def test_discard_failed_deletes_failed_rows_only(sample, ingester, api):
    failed_rows(ingester, "a", "b")
    records_ingest(schema_id=STG, records=[record({"id": "waiting"}, key="@id")], user=ingester)

    response = post(api, DISCARD)

    assert response.json() == {"schema": "dem:sampleTable", "count": 2}
    assert [(r["id"], r["status"]) for r in rows_of(sample)] == [("waiting", "pending")]


def test_failed_row_actions_need_the_run_sync_permission(sample, ingester):
    failed_rows(ingester, "a")
    client = api_for(ingester)

    assert post(client, RETRY).status_code == 403
    assert post(client, DISCARD).status_code == 403
    assert rows_of(sample)[0]["status"] == "failed"


def test_failed_row_actions_on_a_schema_without_staging_are_409(api):
    from staging import services
    from tests.staging.test_srcschema import seed_schemas

    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=seed_schemas()[0]))

    response = post(api, "/api/v1/staging/dem:sampleTable/rows/retry-failed/")
    assert response.status_code == 409
    assert "no staging table" in response.json()["error"]


def test_failed_row_actions_refuse_bad_sequence_numbers(sample, api):
    response = post(api, RETRY, {"seqs": ["x"]})
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "seqs"


def test_openapi_document_describes_the_sync_endpoints(db, api):
    from django.core.management import call_command
    from io import StringIO

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    document = out.getvalue()
    for path in ("/api/v1/sync/:", "/api/v1/sync/runs/:", "/api/v1/sync/runs/{run_id}/:",
                 "/api/v1/staging/{schema_id}/rows/retry-failed/:", "/api/v1/staging/{schema_id}/rows/discard-failed/:"):
        assert path in document
