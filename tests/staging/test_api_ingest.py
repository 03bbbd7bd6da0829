"""REST ingestion: the Django test client through DRF, real databases."""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from tests.api_tokens import api_token
from campaignsite.permissions import SYSTEM
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, rows_of
from staging import services

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

INGEST = "/api/v1/staging/dem:sampleTable/ingest/"
INGEST_EXT = "/api/v1/staging/dem:sampleTable/ingest-ext/"
ROWS = "/api/v1/staging/dem:sampleTable/rows/"


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def api(ingester) -> APIClient:
    return api_for(ingester)


def post_json(api, url, data, **headers):
    return api.post(url, data=json.dumps(data), content_type="application/json", headers=headers)


def test_json_array_is_ingested_with_one_result_per_record(sample, api):
    response = post_json(api, INGEST, [{"testcol1": "a"}, {"_key": "@id", "id": "ABC12345", "testcol1": "b"}])
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["schema"], body["count"]) == ("dem:sampleTableStg", 2)
    first, second = body["results"]
    assert first["index"] == 0 and first["generated"] is True and uuid.UUID(first["id"])
    assert second == {"index": 1, "id": "ABC12345", "generated": False}
    assert {r["id"] for r in rows_of(sample)} == {first["id"], "ABC12345"}


def test_the_answer_is_the_json_drf_writes_and_indented_on_request(sample, api):
    response = post_json(api, INGEST, [{"testcol1": "a"}, {"_key": "@id", "id": "K\u00e9"}])
    assert response.status_code == 201
    first = response.json()["results"][0]["id"]
    assert response.content == (
        '{"schema":"dem:sampleTableStg","count":2,"results":[{"index":0,"id":"%s","generated":true},'
        '{"index":1,"id":"K\u00e9","generated":false}]}' % first).encode()
    response = api.post(INGEST, data=json.dumps([{"testcol1": "b"}]), content_type="application/json",
                        HTTP_ACCEPT="application/json; indent=2")
    assert response.status_code == 201 and response.content.startswith(b'{\n  "schema"')
    response = post_json(api, INGEST, [{"colour": "red\u2028"}])  # a problem quotes the value
    assert response.status_code == 400 and b'"red\\u2028"' in response.content


def test_the_staging_id_is_accepted_in_the_url(sample, api):
    response = post_json(api, "/api/v1/staging/dem:sampleTableStg/ingest/", {"testcol1": "a"})
    assert response.status_code == 201


def test_an_xml_collection_is_ingested(sample, api):
    document = ('<sampleTableStg-collection xtkschema="dem:sampleTableStg">'
                '<sampleTableStg testcol1="a"/><sampleTableStg _key="@id" id="X1" testcol1="b"/>'
                '</sampleTableStg-collection>')
    response = api.post(INGEST, data=document, content_type="application/xml")
    assert response.status_code == 201, response.json()
    assert [r["generated"] for r in response.json()["results"]] == [True, False]
    response = api.post(INGEST_EXT, data='<sampleTableStg id="X1" testcol2="c"/>', content_type="text/xml")
    assert response.status_code == 201, response.json()
    assert {r["id"]: r["values"]["testcol2"] for r in rows_of(sample)}["X1"] == "c"


def test_invalid_records_are_400_naming_record_and_field_and_nothing_is_written(sample, api):
    response = post_json(api, INGEST, [{"testcol1": "ok"}, {"testcol1": "x" * 256}, {"colour": "red"}])
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert [(p["record"], p["attribute"]) for p in problems] == [(1, "testcol1"), (2, "colour")]
    assert rows_of(sample) == []


def test_malformed_json_is_400(sample, api):
    response = api.post(INGEST, data="[{", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_malformed_xml_is_400_with_the_line(sample, api):
    response = api.post(INGEST, data="<sampleTableStg\n testcol1='a'", content_type="application/xml")
    assert response.status_code == 400
    assert response.json()["problems"][0]["line"]


def test_a_document_naming_another_schema_is_400(sample, api):
    response = api.post(INGEST, data='<x xtkschema="dem:otherStg" testcol1="a"/>', content_type="application/xml")
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "xtkschema"


def test_an_empty_body_is_400(sample, api):
    response = api.post(INGEST, content_type="application/json")
    assert response.status_code == 400


def test_an_already_staged_key_is_409(sample, api):
    post_json(api, INGEST, {"_key": "@id", "id": "K"})
    response = post_json(api, INGEST, {"_key": "@id", "id": "K"})
    assert response.status_code == 409
    assert "use IngestExt" in response.json()["problems"][0]["message"]


def test_an_outdated_structure_is_409(sample, api):
    services.schema_update(user=SYSTEM, schema=sample, source=sample.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="extra"/><attribute label="Test Col 2"'))
    response = post_json(api, INGEST, {"testcol1": "a"})
    assert response.status_code == 409


def test_staging_off_is_409(api):
    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=SAMPLE_SOURCE))
    response = post_json(api, INGEST, {"testcol1": "a"})
    assert response.status_code == 409
    assert "autoStg" in json.dumps(response.json())


def test_an_unknown_schema_is_404(sample, api):
    assert post_json(api, "/api/v1/staging/dem:nothing/ingest/", {"a": "b"}).status_code == 404


def test_anonymous_calls_are_401(sample):
    assert APIClient().post(INGEST, data="{}", content_type="application/json").status_code == 401


def test_a_user_without_the_permission_gets_403(sample, nobody):
    response = post_json(api_for(nobody), INGEST, {"testcol1": "a"})
    assert response.status_code == 403
    assert "staging.ingest" in json.dumps(response.json())


def test_a_body_over_the_byte_limit_is_413(sample, api, settings):
    settings.INGEST_MAX_BYTES = 1024
    response = post_json(api, INGEST, [{"testcol1": "x" * 200} for _ in range(10)])
    assert response.status_code == 413
    response = api.post(INGEST, data="<a b='" + "x" * 2000 + "'/>", content_type="application/xml")
    assert response.status_code == 413


def test_more_records_than_the_limit_is_413(sample, api, settings):
    settings.INGEST_MAX_RECORDS = 2
    assert post_json(api, INGEST, [{"testcol1": "a"}] * 3).status_code == 413


def test_an_idempotency_key_replays_the_first_answer_without_writing_twice(sample, api):
    first = post_json(api, INGEST, [{"testcol1": "a"}], **{"Idempotency-Key": "k-1"})
    again = post_json(api, INGEST, [{"testcol1": "a"}], **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(rows_of(sample)) == 1


def test_an_idempotency_key_reused_with_another_body_is_409(sample, api):
    post_json(api, INGEST, [{"testcol1": "a"}], **{"Idempotency-Key": "k-2"})
    response = post_json(api, INGEST, [{"testcol1": "b"}], **{"Idempotency-Key": "k-2"})
    assert response.status_code == 409
    assert "different request" in response.json()["error"]
    assert len(rows_of(sample)) == 1


def test_a_failed_call_does_not_consume_its_idempotency_key(sample, api):
    assert post_json(api, INGEST, [{"bad": "a"}], **{"Idempotency-Key": "k-3"}).status_code == 400
    assert post_json(api, INGEST, [{"testcol1": "a"}], **{"Idempotency-Key": "k-3"}).status_code == 201


def test_staged_rows_are_listed_with_status_filter_and_cursor(sample, api):
    post_json(api, INGEST, [{"_key": "@id", "id": f"K{i}", "testcol1": str(i)} for i in range(5)])
    page = api.get(ROWS, {"limit": 2, "status": "pending"})
    assert page.status_code == 200
    body = page.json()
    assert [r["id"] for r in body["results"]] == ["K0", "K1"]
    row = body["results"][0]
    assert (row["status"], row["operation"], row["values"]["testcol1"]) == ("pending", "insert", "0")
    assert row["lastModified"]
    ids = [r["id"] for r in body["results"]]
    while body["next"]:
        body = api.get(body["next"]).json()
        ids += [r["id"] for r in body["results"]]
    assert ids == [f"K{i}" for i in range(5)]
    assert api.get(ROWS, {"status": "synced"}).json()["results"] == []


def test_staged_rows_with_an_unknown_status_are_400(sample, api):
    assert api.get(ROWS, {"status": "done"}).status_code == 400


def test_staged_rows_need_a_permission(sample, nobody):
    assert api_for(nobody).get(ROWS).status_code == 403


def test_the_openapi_document_still_builds_with_the_ingest_endpoints(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/staging/{schema_id}/ingest/" in paths
    assert "/api/v1/staging/{schema_id}/rows/" in paths
