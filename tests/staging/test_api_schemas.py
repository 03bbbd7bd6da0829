"""REST API for schemas: real HTTP handling through Django's test client, real databases."""

import io
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from rest_framework.test import APIClient

from apitokens.services import api_token_create
from campaignsite.errors import TooLarge
from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.api.parsers import read_bounded
from staging.models import Schema
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

# The seed's document (000_*.txt, step 1), verbatim.
SAMPLE = """<srcSchema _cs="Sample Table (dem)" created="YYYY-DD-MM"
        entitySchema="xtk:srcSchema" img="xtk:schema.png" label="Sample Table"
        lastModified="YYY-DD-MM HH:MM:SS.TZ" mappingType="sql" md5="XXX"
        modifiedBy-id="0" name="sampleTable" namespace="dem" xtkschema="xtk:srcSchema">
<element autopk="true" autouuid="true" dataSource="nms:extAccount:ffda" label="Sample Table"
        name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
</element>
</srcSchema>"""
WITH_TESTCOL3 = SAMPLE.replace(
    '<attribute label="Test Col 2" length="255" name="testcol2" type="string"/>',
    '<attribute label="Test Col 2" length="255" name="testcol2" type="string"/>\n'
    '    <attribute label="Test Col 3" name="testcol3" type="long"/>',
)
WITHOUT_TESTCOL2 = SAMPLE.replace('<attribute label="Test Col 2" length="255" name="testcol2" type="string"/>', "")

LIST = "/api/v1/schemas/"
DETAIL = "/api/v1/schemas/dem:sampleTable/"
UPDATE = "/api/v1/schemas/dem:sampleTable/update-structure/"


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def _user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="secret-enough-123")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="staging", codename__in=codenames))
    return user


@pytest.fixture
def admin_api() -> APIClient:
    return _client(User.objects.create_superuser("admin", password="secret-enough-123"))


@pytest.fixture
def reader_api() -> APIClient:
    return _client(_user("reader", "view_schema"))


@pytest.fixture
def editor_api() -> APIClient:
    return _client(_user("editor", "view_schema", "add_schema", "change_schema", "delete_schema"))


@pytest.fixture
def sample() -> Schema:
    return services.schema_create(user=SYSTEM, source=SAMPLE)


def _tables(alias: str) -> set[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return {name.lower() for name in connection.introspection.table_names(cursor)}


def _columns(alias: str, table: str) -> set[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return {c.name.lower() for c in connection.introspection.get_table_description(cursor, table.lower())}


# --- Create -----------------------------------------------------------------------------------


def test_create_from_an_xml_body_answers_201_with_the_parsed_schema(admin_api):
    response = admin_api.post(LIST, SAMPLE, content_type="application/xml")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == "dem:sampleTable"
    assert body["label"] == "Sample Table"
    assert body["structure_state"] == "never"
    assert body["source"] == SAMPLE
    assert [a["sql_name"] for a in body["description"]["attributes"]] == ["uSampleTableId", "sTestcol1", "sTestcol2"]
    assert "CREATE TABLE" in body["pending"]["ddl"]
    assert Schema.objects.get(namespace="dem", name="sampleTable").source == SAMPLE


def test_create_accepts_text_xml(admin_api):
    response = admin_api.post(LIST, SAMPLE, content_type="text/xml")

    assert response.status_code == 201, response.content


def test_create_accepts_json_with_the_source(admin_api):
    response = admin_api.post(LIST, {"source": SAMPLE}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["id"] == "dem:sampleTable"


def test_create_without_source_is_400_naming_the_field(admin_api):
    response = admin_api.post(LIST, {"xml": SAMPLE}, format="json")

    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "source"


def test_create_of_an_existing_schema_is_409(admin_api, sample):
    response = admin_api.post(LIST, SAMPLE, content_type="application/xml")

    assert response.status_code == 409
    assert "dem:sampleTable already exists" in response.json()["error"]


def test_create_with_malformed_xml_is_400_with_the_line(admin_api):
    broken = SAMPLE.replace('name="testcol2" type="string"/>', 'name="testcol2" type="string">')

    response = admin_api.post(LIST, broken, content_type="application/xml")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "CST-400001"
    assert body["problems"][0]["line"] >= 8
    assert not Schema.objects.exists()


def test_create_with_an_unknown_type_is_400_naming_the_attribute(admin_api):
    response = admin_api.post(LIST, SAMPLE.replace('name="testcol2" type="string"', 'name="testcol2" type="text"'),
                              content_type="application/xml")

    assert response.status_code == 400
    problem = response.json()["problems"][0]
    assert "testcol2" in problem["message"] and "'text'" in problem["message"]
    assert problem["line"] == 8
    assert not Schema.objects.exists()


def test_create_in_a_reserved_namespace_is_400(admin_api):
    response = admin_api.post(LIST, SAMPLE.replace('namespace="dem"', 'namespace="nms"'),
                              content_type="application/xml")

    assert response.status_code == 400
    assert any(p.get("attribute") == "namespace" for p in response.json()["problems"])
    assert not Schema.objects.exists()


def test_create_with_a_dtd_is_400(admin_api):
    response = admin_api.post(LIST, '<!DOCTYPE x [<!ENTITY e "boom">]>\n' + SAMPLE, content_type="application/xml")

    assert response.status_code == 400
    assert not Schema.objects.exists()


def test_a_50_mb_xml_body_is_413_and_saves_nothing(admin_api, settings):
    padding = "<!--" + "x" * (50 * 1024 * 1024) + "-->"
    response = admin_api.post(LIST, SAMPLE.replace("</element>", padding + "</element>"),
                              content_type="application/xml")

    assert response.status_code == 413
    assert response.json()["code"] == "CST-413000"
    assert str(settings.SCHEMA_MAX_BYTES) in response.json()["error"]
    assert not Schema.objects.exists()


def test_invalid_json_is_400(admin_api):
    response = admin_api.post(LIST, '{"source": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "CST-400200"


def test_the_body_reader_stops_one_byte_past_the_limit():
    # A client may send no Content-Length or a wrong one: the reader must still not swallow the body.
    stream = io.BytesIO(b"x" * 10_000)

    with pytest.raises(TooLarge):
        read_bounded(stream, limit=1000)
    assert stream.tell() == 1001


def test_a_source_above_the_limit_in_json_is_413_and_saves_nothing(admin_api, settings):
    settings.SCHEMA_MAX_BYTES = 4096
    response = admin_api.post(LIST, {"source": SAMPLE.replace("</element>", "<!--" + "x" * 5000 + "--></element>")},
                              format="json")

    assert response.status_code == 413
    assert not Schema.objects.exists()


# --- Read ---------------------------------------------------------------------------------


def test_list_shows_each_schema_with_its_state_and_url(admin_api, sample):
    response = admin_api.get(LIST)

    assert response.status_code == 200
    assert response.json() == [{
        "id": "dem:sampleTable", "label": "Sample Table", "auto_stg": False, "built_in": False,
        "structure_state": "never", "staging_id": None, "url": "http://testserver/api/v1/schemas/dem:sampleTable/",
    }]


def test_read_shows_source_state_and_pending_ddl(admin_api, sample):
    response = admin_api.get(DETAIL)

    assert response.status_code == 200
    body = response.json()
    assert body["source"] == SAMPLE
    assert body["structure_state"] == "never"
    assert body["pending"]["applied"] is False
    assert body["pending"]["ddl"] == services.structure_plan(schema=sample).as_text()
    assert {s["database"] for s in body["pending"]["statements"]} == {"cloud"}


def test_read_of_an_unknown_schema_is_404(admin_api):
    response = admin_api.get("/api/v1/schemas/dem:nothing/")

    assert response.status_code == 404
    assert response.json()["problems"] == [{"message": "no schema has this id", "value": "dem:nothing"}]


def test_read_by_staging_id_answers_the_source_schema(admin_api, sample):
    services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)

    response = admin_api.get("/api/v1/schemas/dem:sampleTableStg/")

    assert response.status_code == 200
    assert response.json()["id"] == "dem:sampleTable"
    assert response.json()["staging_id"] == "dem:sampleTableStg"


# --- Update -------------------------------------------------------------------------------


def test_put_replaces_the_source_and_the_pending_ddl_adds_the_column(admin_api, sample):
    admin_api.post(UPDATE)

    response = admin_api.put(DETAIL, WITH_TESTCOL3, content_type="application/xml")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["structure_state"] == "outdated"
    assert [s["kind"] for s in body["pending"]["statements"]] == ["add_column"]
    assert Schema.objects.get().source == WITH_TESTCOL3


def test_put_with_json_source(admin_api, sample):
    response = admin_api.put(DETAIL, {"source": WITH_TESTCOL3}, format="json")

    assert response.status_code == 200
    assert Schema.objects.get().source == WITH_TESTCOL3


def test_put_of_another_schema_id_is_400(admin_api, sample):
    response = admin_api.put(DETAIL, SAMPLE.replace('name="sampleTable"', 'name="other"'),
                             content_type="application/xml")

    assert response.status_code == 400
    assert Schema.objects.get().source == SAMPLE


def test_put_through_the_staging_id_is_404(admin_api, sample):
    services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)

    response = admin_api.put("/api/v1/schemas/dem:sampleTableStg/", SAMPLE, content_type="application/xml")

    assert response.status_code == 404
    assert "dem:sampleTable instead" in response.json()["error"]


def test_patch_without_fields_is_400(admin_api, sample):
    response = admin_api.patch(DETAIL, {}, format="json")

    assert response.status_code == 400


def test_patch_auto_stg_then_update_structure_creates_the_staging_table(admin_api, sample):
    patched = admin_api.patch(DETAIL, {"auto_stg": True}, format="json")
    applied = admin_api.post(UPDATE)

    assert patched.status_code == 200
    assert patched.json()["staging_id"] == "dem:sampleTableStg"
    assert 'autoStg="true"' in Schema.objects.get().source
    assert applied.status_code == 200, applied.content
    assert applied.json()["applied"] is True
    assert "demsampletable" in _tables("cloud")
    assert "demsampletablestg" in _tables("default")
    assert {"usampletableid", "stestcol1", "stestcol2", "idelete", "tslastmodified"} <= _columns(
        "default", "DemSampleTableStg"
    )
    assert admin_api.get(DETAIL).json()["structure_state"] == "current"


def test_patch_source_and_auto_stg_together(admin_api, sample):
    response = admin_api.patch(DETAIL, {"source": WITH_TESTCOL3, "auto_stg": True}, format="json")

    assert response.status_code == 200
    source = Schema.objects.get().source
    assert 'name="testcol3"' in source and 'autoStg="true"' in source


# --- Update structure ---------------------------------------------------------------------


def test_dry_run_returns_the_ddl_and_creates_nothing(admin_api, sample):
    response = admin_api.post(UPDATE + "?dry_run=1")

    assert response.status_code == 200
    body = response.json()
    assert body["applied"] is False
    assert body["statements"][0] == {
        "database": "cloud", "table": "DemSampleTable", "kind": "create_table",
        "sql": body["statements"][0]["sql"], "destructive": False,
    }
    assert body["ddl"].count("CREATE TABLE") == 1
    assert "demsampletable" not in _tables("cloud")
    assert Schema.objects.get().structure_state == "never"


def test_update_structure_twice_has_nothing_left_to_do(admin_api, sample):
    first = admin_api.post(UPDATE)
    second = admin_api.post(UPDATE)

    assert first.json()["statements"]
    assert second.status_code == 200
    assert second.json()["statements"] == []
    assert "up to date" in second.json()["ddl"]


def test_dropping_a_column_needs_confirm_destructive(admin_api, sample):
    admin_api.post(UPDATE)
    admin_api.put(DETAIL, WITHOUT_TESTCOL2, content_type="application/xml")

    refused = admin_api.post(UPDATE, {}, format="json")
    confirmed = admin_api.post(UPDATE, {"confirm_destructive": True}, format="json")

    assert refused.status_code == 409
    assert refused.json()["code"] == "CST-409100"
    assert confirmed.status_code == 200
    assert any(s["destructive"] for s in confirmed.json()["statements"])
    assert "stestcol2" not in _columns("cloud", "DemSampleTable")


def test_update_structure_of_an_unknown_schema_is_404(admin_api):
    assert admin_api.post("/api/v1/schemas/dem:nothing/update-structure/").status_code == 404


# --- Delete -------------------------------------------------------------------------------


def test_delete_forgets_the_schema(admin_api, sample):
    response = admin_api.delete(DETAIL)

    assert response.status_code == 204
    assert not Schema.objects.exists()


def test_delete_of_a_built_in_schema_is_409(admin_api):
    services.schema_create(user=SYSTEM, source=(services.BUILTIN_SCHEMA_DIR / "nms_recipient.xml").read_text(), built_in=True)

    response = admin_api.delete("/api/v1/schemas/nms:recipient/")

    assert response.status_code == 409
    assert "built-in" in response.json()["error"]
    assert Schema.objects.filter(name="recipient").exists()


def test_delete_while_staged_rows_wait_is_409(admin_api, sample):
    services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)
    admin_api.post(UPDATE)
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {ddl.quote('DemSampleTableStg', connection.vendor)} "
                       f"({ddl.quote('uSampleTableId', connection.vendor)}) VALUES ('ABC12345')")

    response = admin_api.delete(DETAIL)

    assert response.status_code == 409
    assert "1 staged row(s) are not synchronized" in response.json()["error"]
    assert Schema.objects.exists()


# --- Authentication and permissions -------------------------------------------------------


@pytest.mark.parametrize("method, url", [
    ("get", LIST), ("post", LIST), ("get", DETAIL), ("put", DETAIL), ("patch", DETAIL), ("delete", DETAIL),
    ("post", UPDATE),
])
def test_without_credentials_every_endpoint_is_401(method, url, sample):
    response = getattr(APIClient(), method)(url)

    assert response.status_code == 401


def test_a_wrong_token_is_401(sample):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")

    assert client.get(LIST).status_code == 401


def test_a_user_without_view_permission_is_403():
    client = _client(_user("nobody"))

    assert client.get(LIST).status_code == 403


def test_a_reader_can_read_but_not_write(reader_api, sample):
    assert reader_api.get(LIST).status_code == 200
    assert reader_api.get(DETAIL).status_code == 200
    assert reader_api.post(LIST, WITH_TESTCOL3, content_type="application/xml").status_code == 403
    assert reader_api.put(DETAIL, WITH_TESTCOL3, content_type="application/xml").status_code == 403
    assert reader_api.patch(DETAIL, {"auto_stg": True}, format="json").status_code == 403
    assert reader_api.delete(DETAIL).status_code == 403
    assert Schema.objects.get().source == SAMPLE


def test_a_reader_can_dry_run_but_not_apply(reader_api, sample):
    assert reader_api.post(UPDATE + "?dry_run=1").status_code == 200
    assert reader_api.post(UPDATE).status_code == 403
    assert "demsampletable" not in _tables("cloud")


def test_an_editor_without_update_structure_cannot_apply(editor_api, sample):
    assert editor_api.patch(DETAIL, {"auto_stg": True}, format="json").status_code == 200
    assert editor_api.post(UPDATE).status_code == 403


def test_update_structure_permission_is_enough_to_apply(sample):
    client = _client(_user("dba", "view_schema", "update_structure"))

    assert client.post(UPDATE).status_code == 200
    assert "demsampletable" in _tables("cloud")


# --- OpenAPI ------------------------------------------------------------------------------


def test_openapi_document_describes_the_schema_endpoints():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/schemas/", "/api/v1/schemas/{schema_id}/", "/api/v1/schemas/{schema_id}/update-structure/"} <= set(
        paths
    )
    assert "application/xml" in paths["/api/v1/schemas/"]["post"]["requestBody"]["content"]


def test_swagger_ui_loads_its_assets_locally():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert not re.search(r"""(src|href)=["']https?://""", html)
