"""REST refusals of hostile or malformed input: nesting depth, integer ranges, unknown URLs, one error
shape for every refusal, and an OpenAPI document that lists every status an endpoint answers."""

import base64
import json
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from staging.records import JSON_MAX_DEPTH
from subscriptions.models import Service
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

MAX_INT64 = 2**63 - 1


def token_client(user) -> APIClient:
    """An API client authenticated by a DRF token (the one place tokens are made here)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def admin_api() -> APIClient:
    user = User.objects.create_user("all-perms", password="pw-all")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["staging", "subscriptions"]))
    return token_client(User.objects.get(pk=user.pk))


def nested(depth: int) -> bytes:
    """`depth` levels of arrays around an object: about 2 bytes a level."""
    return b"[" * (depth - 1) + b"{}" + b"]" * (depth - 1)


# Every endpoint that reads a JSON body.
JSON_ENDPOINTS = [
    ("post", "/api/v1/staging/dem:sampleTable/ingest/"),
    ("post", "/api/v1/staging/dem:sampleTable/ingest-ext/"),
    ("post", "/api/v1/schemas/"),
    ("patch", "/api/v1/schemas/dem:sampleTable/"),
    ("put", "/api/v1/schemas/dem:sampleTable/"),
    ("post", "/api/v1/schemas/dem:sampleTable/update-structure/"),
    ("post", "/api/v1/sync/"),
    ("post", "/api/v1/staging/dem:sampleTable/rows/retry-failed/"),
    ("post", "/api/v1/staging/dem:sampleTable/rows/discard-failed/"),
    ("post", "/api/v1/services/"),
    ("patch", "/api/v1/services/newsletter/"),
    ("post", "/api/v1/subscriptions/subscribe/"),
    ("post", "/api/v1/subscriptions/unsubscribe/"),
]


@pytest.mark.parametrize("method,url", JSON_ENDPOINTS, ids=[f"{m} {u}" for m, u in JSON_ENDPOINTS])
def test_json_nested_deeper_than_the_limit_is_400_naming_the_limit(sample, admin_api, method, url):
    Service.objects.create(name="newsletter")
    body = nested(950)  # 1.9 kB: this overflowed Python's stack (500 RecursionError)

    response = getattr(admin_api, method)(url, data=body, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "CST-400200"
    assert response.json()["error"] == "The JSON body is nested too deeply."
    assert f"at most {JSON_MAX_DEPTH} levels" in response.json()["problems"][0]["message"]
    assert rows_of(sample) == []


def test_deep_json_is_400_for_a_user_without_permissions_too(sample, nobody):
    response = token_client(nobody).post("/api/v1/staging/dem:sampleTable/ingest/", data=nested(5000),
                                         content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


def test_json_at_the_depth_limit_is_read(sample, admin_api):
    # 64 levels parse; the record reader then refuses the nested value, naming it.
    record = {"testcol1": json.loads(nested(JSON_MAX_DEPTH - 2))}
    response = admin_api.post("/api/v1/staging/dem:sampleTable/ingest/", data=[record], format="json")
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "testcol1"
    assert "lists are not accepted" in response.json()["problems"][0]["message"]


def test_a_non_string_xtkschema_is_400_naming_the_record(sample, admin_api):
    response = admin_api.post("/api/v1/staging/dem:sampleTable/ingest/", data=[{"xtkschema": ["x"]}], format="json")
    assert response.status_code == 400
    assert response.json()["problems"][0] | {"value": None} == {
        "record": 0, "attribute": "xtkschema", "value": None,
        "message": "xtkschema is a schema id such as dem:sampleTableStg"}


def test_an_integer_too_big_for_64_bits_is_400_naming_the_field(sample, admin_api):
    for action in ("retry-failed", "discard-failed"):
        for seq in (MAX_INT64 + 1, 10**30):
            response = admin_api.post(f"/api/v1/staging/dem:sampleTable/rows/{action}/", data={"seqs": [seq]},
                                      format="json")
            assert response.status_code == 400, (action, seq, response.content[:300])
            assert response.json()["problems"][0]["attribute"] == "seqs"
    response = admin_api.post("/api/v1/staging/dem:sampleTable/rows/retry-failed/", data={"seqs": [MAX_INT64]},
                              format="json")
    assert response.status_code == 200 and response.json()["count"] == 0


@pytest.mark.parametrize("url", ["/api/v1/staging/dem:sampleTable/rows/", "/api/v1/sync/runs/"])
@pytest.mark.parametrize("value", ["99999999999999999999999", "1" * 5000, "\u00b2", "-1", "0", "1.5"])
def test_an_out_of_range_or_non_numeric_limit_is_400_naming_it(sample, admin_api, url, value):
    response = admin_api.get(url, {"limit": value})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["problems"][0]["attribute"] == "limit"


@pytest.mark.parametrize("url", ["/api/v1/staging/dem:sampleTable/rows/", "/api/v1/sync/runs/"])
@pytest.mark.parametrize("position", [str(MAX_INT64 + 1), "9" * 5000, "-5", "\u00e9"])
def test_a_cursor_out_of_range_is_400_naming_it(sample, admin_api, url, position):
    cursor = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")
    response = admin_api.get(url, {"cursor": cursor})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["problems"][0]["attribute"] == "cursor"


def test_a_run_id_beyond_64_bits_is_404(admin_api):
    response = admin_api.get(f"/api/v1/sync/runs/{MAX_INT64 + 1}/")
    assert response.status_code == 404 and response.json()["code"] == "CST-404000"


@pytest.mark.parametrize("path", [
    "/api/v1/schemas/sampleTable/",  # no namespace
    "/api/v1/schemas/dem:sample.Table/",
    "/api/v1/staging/dem/ingest/",
    "/api/v1/staging/dem:sampleTable/nothing/",
    "/api/v1/sync/runs/abc/",
    "/api/v1/nothing/",
    "/api/v2/",
])
def test_an_unknown_api_url_answers_the_json_error_body(admin_api, path):
    response = admin_api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "CST-404000" and body["problems"][0]["value"] == path
    assert "namespace:name" in body["problems"][0]["message"]


def test_an_unknown_url_outside_the_api_keeps_django_s_page(client):
    response = client.get("/nothing/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


def test_drf_refusals_have_the_error_shape(sample, admin_api):
    anonymous = APIClient().get("/api/v1/schemas/")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "CST-401000" and "Token" in anonymous.json()["problems"][0]["message"]

    wrong_type = admin_api.post("/api/v1/sync/", data="schema=x", content_type="text/plain")
    assert wrong_type.status_code == 415
    assert wrong_type.json()["code"] == "CST-415000"
    assert wrong_type.json()["problems"] == [{"attribute": "Content-Type", "value": "text/plain",
                                              "message": "send one of: application/json"}]

    invalid_cursor = admin_api.get("/api/v1/services/", {"cursor": "garbage"})
    assert invalid_cursor.status_code == 404 and invalid_cursor.json()["error"] == "Invalid cursor"


def test_json_endpoints_without_a_limit_of_their_own_take_at_most_a_mebibyte(admin_api):
    body = json.dumps({"name": "big", "label": "x" * 2_200_000}).encode()
    response = admin_api.post("/api/v1/services/", data=body, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "CST-413000"
    assert not Service.objects.exists()


def test_the_jsonl_reader_refuses_deep_json_naming_the_line(sample, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"testcol1": "a"}\n' + b'{"testcol1": ' + nested(5000) + b"}\n")
    with pytest.raises(CommandError, match="Line 2 is nested too deeply") as error:
        call_command("ingest", "dem:sampleTable", str(path), stdout=StringIO(), stderr=StringIO())
    assert f"line 2: arrays and objects may be nested at most {JSON_MAX_DEPTH} levels deep" in str(error.value)
    assert rows_of(sample) == []


def test_every_operation_documents_its_error_statuses_with_the_error_body(admin_api):
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    document = json.loads(out.getvalue())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert {"401", "403"} <= set(statuses), where
            if "requestBody" in operation and method != "delete":
                assert {"400", "413", "415"} <= set(statuses), where
            if "{" in path:
                assert "404" in statuses, where
            for status, answer in statuses.items():
                if status.startswith("4"):
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                        where, status)
    assert "404" in document["paths"]["/api/v1/services/"]["get"]["responses"]  # DRF's "Invalid cursor"


def test_listing_runs_of_an_unknown_schema_is_a_documented_404(admin_api):
    # Found by the schemathesis suite: the answer was right, the document did not list it.
    response = admin_api.get("/api/v1/sync/runs/", {"schema": "dem:nothing"})
    assert response.status_code == 404 and response.json()["code"] == "CST-404000"
    out = StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    assert "404" in json.loads(out.getvalue())["paths"]["/api/v1/sync/runs/"]["get"]["responses"]
