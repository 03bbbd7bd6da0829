"""REST API for schemas with real data models: extensions, sub-elements, links, XML fields, warnings,
key-less tables and views (real HTTP handling through Django's test client, real databases)."""

import pytest
from django.contrib.auth.models import User

from campaignsite.permissions import SYSTEM
from staging import services
from tests.conftest import BOTH_DATABASES

from .test_admin_models import EXTENSION
from .test_api_schemas import LIST, _client
from .test_extensions import COMPANY, CONTACT, LOG, VIEW

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)


@pytest.fixture
def admin_api():
    return _client(User.objects.create_superuser("admin", password="secret-enough-123"))


def test_creating_an_extension_with_ignored_constructs_answers_201_with_the_warnings(admin_api):
    services.builtin_schemas_load(user=SYSTEM)

    response = admin_api.post(LIST, EXTENSION, content_type="application/xml")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == "cus:recipient" and body["extends"] == "nms:recipient"
    assert body["extensions"] == []
    warnings = body["warnings"]
    assert {"message": "<sysFilter> is kept in the source and ignored: it does not change storage",
            "attribute": "sysFilter", "line": 6} in warnings
    assert any(w["attribute"] == "length" and w["value"] == "3" and w["line"] == 7 for w in warnings)
    # Its pending DDL is that of the schema it extends.
    assert 'ALTER TABLE "NmsRecipient"'.lower() in body["pending"]["ddl"].lower()


def test_the_base_detail_shows_its_extensions_and_the_merged_description(admin_api):
    services.builtin_schemas_load(user=SYSTEM)
    services.schema_create(source=EXTENSION, user=SYSTEM)

    body = admin_api.get("/api/v1/schemas/nms:recipient/").json()

    assert body["extends"] is None and body["extensions"] == ["cus:recipient"]
    assert any(w["message"].startswith("extension cus:recipient: ") for w in body["warnings"])
    attributes = {a["name"]: a for a in body["description"]["attributes"]}
    assert attributes["location/district"] == {
        **attributes["location/district"], "xpath": "location/@district", "sql_name": "sDistrict",
        "belongs_to": "cus:recipient", "link": None}
    assert attributes["email"]["xpath"] == "@email" and attributes["email"]["belongs_to"] is None
    assert attributes["_data"]["sql_name"] == "mData"
    assert [f["xpath"] for f in body["description"]["xml_fields"]] == ["@notes"]
    assert body["description"]["view"] is False


def test_links_keyless_tables_and_views_are_described(admin_api):
    services.structure_update(schema=services.schema_create(source=COMPANY, user=SYSTEM), user=SYSTEM)
    for source in (CONTACT, LOG, VIEW):
        services.schema_create(source=source, user=SYSTEM)

    contact = admin_api.get("/api/v1/schemas/cus:contact/").json()["description"]
    assert contact["links"] == [{
        "name": "company", "target": "cus:company", "unbound": False,
        "joins": [{"source": "company-id", "target": "id"}], "integrity": contact["links"][0]["integrity"],
        "rev_link": contact["links"][0]["rev_link"], "rev_integrity": contact["links"][0]["rev_integrity"],
        "external_join": False, "belongs_to": None,
    }]
    company_id = next(a for a in contact["attributes"] if a["name"] == "company-id")
    assert company_id["link"] == "company" and company_id["xpath"] == "@company-id"
    assert admin_api.get("/api/v1/schemas/cus:visitLog/").json()["description"]["primary_key"] == []
    report = admin_api.get("/api/v1/schemas/cus:report/").json()
    assert report["description"]["view"] is True and report["pending"]["statements"] == []
