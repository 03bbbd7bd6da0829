"""Paths through links (`[company/@name]`) on real tables: one LEFT JOIN per link, the same rows on
SQLite and on PostgreSQL (run this file with DATABASE_URL/CLOUD_DATABASE_URL for the latter)."""

import json

import pytest
from rest_framework.test import APIClient

from campaignsite.errors import Forbidden, InvalidInput
from campaignsite.permissions import SYSTEM
from staging import services
from staging.query import json_value, query_def_from_json
from staging.records import records_from_json
from staging.selectors import query_execute
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, staged_schema

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

COMPANY = """<srcSchema name="company" namespace="cus" label="Companies">
  <element name="company">
    <key name="name" internal="true"><keyfield xpath="@name"/></key>
    <attribute name="name" type="string" length="60"/>
    <attribute name="city" type="string" length="40"/>
    <attribute name="size" type="long"/>
    <element name="parent" type="link" target="cus:company"/>
  </element>
</srcSchema>"""

CONTACT = """<srcSchema name="contact" namespace="cus" label="Contacts">
  <element name="contact" autopk="true" autouuid="true" autoStg="true">
    <attribute name="email" type="string" length="80"/>
    <attribute name="city" type="string" length="40"/>
    <element name="company" type="link" target="cus:company"/>
    <element name="offices" type="link" target="cus:company" unbound="true"/>
  </element>
</srcSchema>"""

COMPANIES = [
    {"name": "Acme", "city": "Paris", "size": "120"},
    {"name": "Globex", "city": "Lyon", "size": "40"},
    {"name": "Initech", "city": "Nantes", "size": "7", "parent-name": "Globex"},
]
CONTACTS = [
    {"id": "C1", "email": "ann@acme.com", "city": "Lyon", "company-name": "Acme"},
    {"id": "C2", "email": "bob@globex.com", "city": "Lyon", "company-name": "Globex"},
    {"id": "C3", "email": "carl@acme.com", "city": "Paris", "company-name": "Acme"},
    {"id": "C4", "email": "dora@home.net", "city": "Nice"},  # no company: the LEFT JOIN keeps it
]


@pytest.fixture
def contacts():
    company = services.schema_create(user=SYSTEM, source=COMPANY)
    services.structure_update(user=SYSTEM, schema=company)
    contact = staged_schema(CONTACT)
    loader = make_user("loader", "write_cloud")
    services.records_write(schema_id="cus:company", records=records_from_json(COMPANIES), user=loader)
    services.records_write(schema_id="cus:contact", records=records_from_json(CONTACTS), user=loader)
    return contact


@pytest.fixture
def reader():
    return make_user("reader", "view_schema")


def run(user, **query_def):
    query_def.setdefault("schema", "cus:contact")
    query_def.setdefault("operation", "select")
    result = query_execute(query_def=query_def_from_json(query_def), user=user)
    if result.compiled.operation == "count":
        return result.count
    return result.records(json_value)


def nodes(*exprs) -> dict:
    return {"node": [e if isinstance(e, dict) else {"expr": e} for e in exprs]}


def where(*exprs) -> dict:
    return {"condition": [{"expr": e} for e in exprs]}


def test_a_link_path_selects_the_target_attribute_nested_under_the_link(contacts, reader):
    records = run(reader, select=nodes("@id", "[company/@name]", "company/@city", "company/@size"))
    assert records == [
        {"id": "C1", "company": {"name": "Acme", "city": "Paris", "size": 120}},
        {"id": "C2", "company": {"name": "Globex", "city": "Lyon", "size": 40}},
        {"id": "C3", "company": {"name": "Acme", "city": "Paris", "size": 120}},
        {"id": "C4", "company": {"name": None, "city": None, "size": None}},
    ]


def test_an_alias_answers_a_link_path_as_a_plain_attribute(contacts, reader):
    records = run(reader, select=nodes("@id", {"expr": "[company/@city]", "alias": "@companyCity"}, "@city"),
                  lineCount=2)
    assert records == [{"id": "C1", "companyCity": "Paris", "city": "Lyon"},
                       {"id": "C2", "companyCity": "Lyon", "city": "Lyon"}]


def test_link_paths_filter_and_order_and_same_named_columns_stay_apart(contacts, reader):
    assert [r["id"] for r in run(reader, select=nodes("@id"), where=where("[company/@city] = 'Paris'"))] == \
        ["C1", "C3"]
    # Both tables have a column sCity: each side reads its own.
    assert [r["id"] for r in run(reader, select=nodes("@id"), where=where("company/@city = @city"))] == ["C2", "C3"]
    big_or_none = where("[company/@size] > 50 OR company/@name IS NULL")
    assert [r["id"] for r in run(reader, select=nodes("@id"), where=big_or_none)] == ["C1", "C3", "C4"]
    ordered = run(reader, select=nodes("@id"), orderBy=nodes({"expr": "[company/@size]", "sortDesc": True},
                                                             "@email"))
    assert [r["id"] for r in ordered] == ["C4", "C1", "C3", "C2"]  # NULL first when descending


def test_link_paths_group_count_and_get(contacts, reader):
    grouped = run(reader, select=nodes("[company/@name]", {"expr": "Count(@id)", "alias": "@contacts"}),
                  groupBy=nodes("[company/@name]"), having=where("Count(@id) > 1"))
    assert grouped == [{"company": {"name": "Acme"}, "contacts": 2}]
    assert run(reader, operation="count", where=where("[company/@city] = 'Paris'")) == 2
    assert run(reader, operation="get", select=nodes("@email", "[company/@size]"),
               where=where("[company/@name] = 'Globex'")) == [{"email": "bob@globex.com", "company": {"size": 40}}]


def test_a_self_link_joins_its_own_table_under_an_alias(contacts, reader):
    records = run(reader, schema="cus:company", select=nodes("@name", "[parent/@city]"),
                  where=where("parent/@name IS NOT NULL OR @name = 'Acme'"))
    assert records == [{"name": "Acme", "parent": {"city": None}}, {"name": "Initech", "parent": {"city": "Lyon"}}]


@pytest.mark.parametrize("expr, message", [
    ("[offices/@name] = 'Acme'", "'offices/@name' goes through 'offices', a collection link (unbound)"),
    ("[company/parent/@name] = 'Globex'", "goes through two links ('company', then 'parent')"),
    ("[company/@nosuch] = 1",
     "'company/@nosuch': '@nosuch' is not an attribute of cus:company, the target of the link 'company'"),
])
def test_collections_two_links_and_unknown_target_attributes_are_refused(contacts, reader, expr, message):
    with pytest.raises(InvalidInput) as refused:
        run(reader, select=nodes("@id"), where=where(expr))
    assert message in refused.value.problems[0].message
    assert refused.value.problems[0].attribute == "where/condition[1]/@expr"
    assert [r["id"] for r in run(reader, select=nodes("@id"), where=where("company/@name = 'Globex'"))] == ["C2"]


def test_the_staging_schema_refuses_link_paths_across_databases(contacts):
    ingester = make_user("ingester", "ingest", "view_schema")
    with pytest.raises(InvalidInput) as refused:
        run(ingester, schema="cus:contactStg", select=nodes("@id", "[company/@name]"))
    message = refused.value.problems[0].message
    assert "cus:company, whose table is in the cloud database" in message
    assert "the staging table of cus:contactStg is in the local database" in message
    assert "query cus:contact" in message
    assert run(ingester, schema="cus:contactStg", operation="count") == 0


def test_reading_through_a_link_needs_the_read_permission_on_the_target(contacts):
    # A staging table and a local-only target share the local database, so the join is possible;
    # a user who may read the staged rows (ingest) but not schemas' rows (view_schema) is refused.
    local = services.schema_create(user=SYSTEM, source=COMPANY.replace('name="company" namespace="cus"',
                                                                       'name="shop" namespace="cus"')
                                   .replace('<element name="company">', '<element name="shop" dataSource="x">')
                                   .replace('target="cus:company"', 'target="cus:shop"'))
    services.structure_update(user=SYSTEM, schema=local)
    visit = staged_schema(CONTACT.replace('"contact"', '"visit"').replace('target="cus:company"/>',
                                                                          'target="cus:shop"/>'))
    assert visit.description.link("company").target == "cus:shop"
    query = {"schema": "cus:visitStg", "select": nodes("@id", "[company/@name]")}
    with pytest.raises(Forbidden, match="may not read the rows of cus:shop"):
        run(make_user("ingester", "ingest"), **query)
    assert run(make_user("both", "ingest", "view_schema"), **query) == []


def test_rest_answers_link_paths_nested(contacts, reader):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(reader)}")
    response = client.post("/api/v1/query/", content_type="application/json", data=json.dumps({
        "schema": "cus:contact", "operation": "select",
        "select": {"node": [{"expr": "@email"}, {"expr": "company/@name"}]},
        "where": {"condition": [{"expr": "[company/@city] = 'Lyon'"}]},
    }))
    assert response.status_code == 200, response.content
    assert response.json() == {"contact": [{"email": "bob@globex.com", "company": {"name": "Globex"}}]}


def test_the_readme_query_answers_as_the_readme_shows(sample, reader):
    # The body of the README's "Read data back" step, on the tour's schema.
    services.records_write(schema_id="dem:sampleTable", user=make_user("loader", "write_cloud"),
                           records=records_from_json([{"id": "R1", "testcol1": "A", "testcol2": "B"},
                                                      {"id": "R2", "testcol1": "Z", "testcol2": "C"}]))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(reader)}")
    response = client.post("/api/v1/query/", content_type="application/json", data=json.dumps({
        "schema": "dem:sampleTable", "operation": "select", "lineCount": 10,
        "select": {"node": [{"expr": "@id"}, {"expr": "@testcol1"}]},
        "where": {"condition": [{"expr": "@testcol2 = 'B'"}]},
        "orderBy": {"node": [{"expr": "@testcol1"}]}}))
    assert response.status_code == 200, response.content
    assert response.json() == {"sampleTable": [{"id": "R1", "testcol1": "A"}]}
