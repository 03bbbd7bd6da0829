"""Queries on real tables (selectors.query_execute and POST /api/v1/query/): the same queryDefs give the
same rows on SQLite and on PostgreSQL (run this file with DATABASE_URL/CLOUD_DATABASE_URL for the latter)."""

import json

import pytest
from django.db import connections
from tests.api_tokens import api_token
from rest_framework.test import APIClient

from campaignsite.errors import Conflict, Forbidden, InvalidInput, NotFound
from staging import ddl, services
from staging.query import json_value, query_def_from_json
from staging.records import records_from_json
from staging.selectors import query_execute
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, staged_schema
from campaignsite.permissions import SYSTEM

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

PERSON = """<srcSchema name="person" namespace="qry" label="People">
  <element name="person" autopk="true" autouuid="true" autoStg="true">
    <attribute name="email" type="string" length="80"/>
    <attribute name="city" type="string" length="40"/>
    <attribute name="age" type="long"/>
    <attribute name="score" type="double"/>
    <attribute name="vip" type="boolean"/>
    <attribute name="born" type="date"/>
    <attribute name="seen" type="datetime"/>
  </element>
</srcSchema>"""

PEOPLE = [
    {"id": "P1", "email": "ann@example.com", "city": "Paris", "age": "31", "score": "7.5", "vip": "true",
     "born": "1995-03-01", "seen": "2026-11-30 10:00:00Z"},
    {"id": "P2", "email": "bob@example.com", "city": "paris", "age": "45", "score": "3", "vip": "false",
     "born": "1981-12-24", "seen": "2026-11-29 23:30:00Z"},
    {"id": "P3", "email": "Carl@example.org", "city": "Lyon", "age": "27", "score": "9.25", "vip": "true",
     "born": "1999-07-14", "seen": "2026-12-01 08:15:30Z"},
    {"id": "P4", "email": "dora_o'neil@example.org", "city": "Lyon", "age": "60", "score": "1", "vip": "false",
     "born": "1966-01-01", "seen": "2025-01-01 00:00:00Z"},
    {"id": "P5", "email": "eve@example.net", "age": "19", "score": "5", "vip": "false"},
]


@pytest.fixture
def person():
    schema = staged_schema(PERSON)
    services.records_write(schema_id="qry:person", records=records_from_json(PEOPLE),
                           user=make_user("loader", "write_cloud"))
    return schema


@pytest.fixture
def reader():
    return make_user("reader", "view_schema")


def run(user, **query_def):
    result = query_execute(query_def=query_def_from_json(query_def), user=user)
    if result.compiled.operation == "count":
        return result.count
    return result.records(json_value)


def select(user, *exprs, **rest):
    return run(user, schema="qry:person", operation="select",
               select={"node": [{"expr": e} for e in exprs]}, **rest)


def ids(records) -> list[str]:
    return [r["id"] for r in records]


def where(*conditions) -> dict:
    return {"condition": [c if isinstance(c, dict) else {"expr": c} for c in conditions]}


def test_select_answers_typed_values_in_primary_key_order(person, reader):
    records = select(reader, "@id", "@email", "@age", "@score", "@vip", "@born", "@seen")
    assert ids(records) == ["P1", "P2", "P3", "P4", "P5"]
    assert records[0] == {"id": "P1", "email": "ann@example.com", "age": 31, "score": 7.5, "vip": True,
                          "born": "1995-03-01", "seen": "2026-11-30T10:00:00.000Z"}
    assert records[4]["born"] is None and records[4]["seen"] is None


@pytest.mark.parametrize("expr, expected", [
    ("@age = 31", ["P1"]),
    ("@age != 31", ["P2", "P3", "P4", "P5"]),
    ("@age <> 31", ["P2", "P3", "P4", "P5"]),
    ("@age < 27", ["P5"]),
    ("@age <= 27", ["P3", "P5"]),
    ("@age > 45", ["P4"]),
    ("@age >= 45", ["P2", "P4"]),
    ("@city LIKE 'P%'", ["P1"]),  # case-sensitive on both databases
    ("@city NOT LIKE 'P%'", ["P2", "P3", "P4"]),  # NULL city matches neither
    ("@email LIKE '%o\\_%'", []),  # no escape syntax: \\ is a plain character
    ("@email LIKE 'dora_o''neil%'", ["P4"]),
    ("@city IN ('Lyon', 'paris')", ["P2", "P3", "P4"]),
    ("@age NOT IN (31, 45)", ["P3", "P4", "P5"]),
    ("@city IS NULL", ["P5"]),
    ("@city IS NOT NULL", ["P1", "P2", "P3", "P4"]),
    ("@age > 30 AND @city = 'Lyon'", ["P4"]),
    ("@age < 20 OR @age > 50", ["P4", "P5"]),
    ("NOT @vip = 1", ["P2", "P4", "P5"]),
    ("@vip", ["P1", "P3"]),  # a number used as a condition: non-zero
    ("@age + 1 = 32", ["P1"]),
    ("@age - 1 = 30", ["P1"]),
    ("@age * 2 = 90", ["P2"]),
    ("@age / 2 = 13.5", ["P3"]),  # decimal division on both databases
    ("@age = 20 + 40 / 4 * 4", ["P4"]),  # * and / before +
    ("(@age = 31 OR @age = 45) AND @vip = 1", ["P1"]),
    ("@age = 31 OR @age = 45 AND @vip = 1", ["P1"]),  # AND before OR
    ("@born < #1990-01-01#", ["P2", "P4"]),
    ("@seen >= #2026-11-30#", ["P1", "P3"]),
    ("@seen > #2026-11-30 09:59:59Z#", ["P1", "P3"]),
    ("@seen < '2026-01-01'", ["P4"]),
    ("@age = '31'", ["P1"]),
    ("@email = \"ann@example.com\"", ["P1"]),
    ("Lower(@city) = 'paris'", ["P1", "P2"]),
    ("Upper(@city) = 'LYON'", ["P3", "P4"]),
    ("Trim(' ' + @city + ' ') = 'Lyon'", ["P3", "P4"]),
    ("Substring(@email, 1, 3) = 'bob'", ["P2"]),
    ("Length(@city) = 4", ["P3", "P4"]),
    ("Coalesce(@city, 'none') = 'none'", ["P5"]),
    ("NoNull(@city) = ''", ["P5"]),
    ("IsEmptyString(@city)", ["P5"]),
    ("IsEmptyString(@city) = 0 AND @age < 30", ["P3"]),
    ("Year(@born) = 1981", ["P2"]),
    ("Month(@seen) = 12", ["P3"]),
    ("Day(@born) = 14", ["P3"]),
    ("AddDays(@seen, 1) > #2026-12-01#", ["P1", "P3"]),
    ("DateOnly(@seen) = #2026-11-29#", ["P2"]),
    ("@seen < GetDate()", ["P4"]),
    ("ToString(@age) = '60'", ["P4"]),
    ("ToInteger('3' + '1') = @age", ["P1"]),
    ("iif(@vip = 1, 'y', 'n') = 'y'", ["P1", "P3"]),
    ("lower(@CITY) = 'lyon'", None),  # attribute names are case-sensitive
])
def test_every_operator_and_function_selects_the_same_rows_on_each_database(person, reader, expr, expected):
    if expected is None:
        with pytest.raises(InvalidInput, match="'@CITY' is not an attribute"):
            select(reader, "@id", where=where(expr))
        return
    if "GetDate" in expr:
        services.records_write(schema_id="qry:person", user=make_user("w2", "write_cloud"), records=records_from_json(
            [{"id": "P1", "seen": "2999-01-01 00:00:00Z"}, {"id": "P2", "seen": "2999-01-01 00:00:00Z"},
             {"id": "P3", "seen": "2999-01-01 00:00:00Z"}]))
        expected = ["P4"]
    assert ids(select(reader, "@id", where=where(expr))) == expected


def test_conditions_join_with_their_bool_operator_and_nest(person, reader):
    records = select(reader, "@id", where=where(
        {"expr": "@city = 'Lyon'", "boolOperator": "OR"},
        {"expr": "@age < 20"},  # (Lyon OR age<20) would be wrong: each condition joins the next, AND first
    ))
    assert ids(records) == ["P3", "P4", "P5"]
    nested = select(reader, "@id", where=where(
        {"expr": "@vip = 0"},
        {"bool-operator": "AND", "condition": [{"expr": "@city = 'Lyon'", "bool-operator": "OR"},
                                              {"expr": "@city IS NULL"}]},
    ))
    assert ids(nested) == ["P4", "P5"]


def test_order_by_line_count_and_start_line_page_the_same_way(person, reader):
    order = {"node": [{"expr": "@age", "sortDesc": True}]}
    assert ids(select(reader, "@id", orderBy=order)) == ["P4", "P2", "P1", "P3", "P5"]
    assert ids(select(reader, "@id", orderBy=order, lineCount=2)) == ["P4", "P2"]
    assert ids(select(reader, "@id", orderBy=order, lineCount=2, startLine=2)) == ["P1", "P3"]
    assert ids(select(reader, "@id", orderBy=order, lineCount=2, startLine=4)) == ["P5"]
    # NULLs sort last ascending, first descending, as PostgreSQL does, on both databases.
    assert ids(select(reader, "@id", orderBy={"node": [{"expr": "@city"}, {"expr": "@id", "sortDesc": "true"}]})) \
        == ["P4", "P3", "P1", "P2", "P5"]


def test_an_alias_renames_the_answered_attribute_and_computed_values_need_one(person, reader):
    records = run(reader, schema="qry:person", operation="select", lineCount=1,
                  select={"node": [{"expr": "@email", "alias": "@mail"}, {"expr": "Upper(@city)"}]})
    assert records == [{"mail": "ann@example.com", "expr1": "PARIS"}]


def test_group_by_having_and_aggregates(person, reader):
    records = run(reader, schema="qry:person", operation="select",
                  select={"node": [{"expr": "Lower(@city)", "alias": "@city"}, {"expr": "Count(@id)", "alias": "@n"},
                                   {"expr": "Sum(@age)", "alias": "@ages"}, {"expr": "Avg(@score)", "alias": "@avg"},
                                   {"expr": "Max(@born)", "alias": "@youngest"}]},
                  groupBy={"node": [{"expr": "Lower(@city)"}]},
                  having={"condition": [{"expr": "Count(*) > 1"}]},
                  orderBy={"node": [{"expr": "Lower(@city)"}]})
    assert records == [
        {"city": "lyon", "n": 2, "ages": 87, "avg": 5.125, "youngest": "1999-07-14"},
        {"city": "paris", "n": 2, "ages": 76, "avg": 5.25, "youngest": "1995-03-01"},
    ]
    total = run(reader, schema="qry:person", operation="select",
                select={"node": [{"expr": "Count(*)", "alias": "@n"}, {"expr": "Min(@age)", "alias": "@min"}]})
    assert total == [{"n": 5, "min": 19}]


def test_a_selected_column_neither_grouped_nor_aggregated_is_refused(person, reader):
    with pytest.raises(InvalidInput, match="neither an aggregate"):
        run(reader, schema="qry:person", operation="select",
            select={"node": [{"expr": "@email"}, {"expr": "Count(@id)", "alias": "@n"}]},
            groupBy={"node": [{"expr": "@city"}]})
    with pytest.raises(InvalidInput, match="aggregate.*not in <where>"):
        select(reader, "@id", where=where("Count(@id) > 1"))


def test_get_answers_one_record_and_a_miss_is_not_found(person, reader):
    record = run(reader, schema="qry:person", operation="get", select={"node": [{"expr": "@email"}]},
                 where=where("@id = 'P3'"))
    assert record == [{"email": "Carl@example.org"}]
    with pytest.raises(NotFound, match="found no record"):
        run(reader, schema="qry:person", operation="get", select={"node": [{"expr": "@email"}]},
            where=where("@id = 'nope'"))


def test_get_if_exists_answers_nothing_on_a_miss(person, reader):
    assert run(reader, schema="qry:person", operation="getIfExists", select={"node": [{"expr": "@email"}]},
               where=where("@id = 'nope'")) == []


def test_count_counts_rows_groups_and_distinct_values(person, reader):
    assert run(reader, schema="qry:person", operation="count") == 5
    assert run(reader, schema="qry:person", operation="count", where=where("@vip = 1")) == 2
    assert run(reader, schema="qry:person", operation="count", groupBy={"node": [{"expr": "@city"}]}) == 4
    assert run(reader, schema="qry:person", operation="count", distinct=True,
               select={"node": [{"expr": "@vip"}]}) == 2


def test_distinct_removes_duplicate_records(person, reader):
    records = select(reader, "@vip", distinct=True, orderBy={"node": [{"expr": "@vip"}]})
    assert records == [{"vip": False}, {"vip": True}]


def test_the_staging_schema_reads_staged_rows_with_their_technical_fields(person, reader):
    ingester = make_user("ingester", "ingest")
    services.records_ingest(schema_id="qry:personStg", user=ingester,
                            records=records_from_json([{"id": "S1", "email": "s1@x"}, {"id": "S2", "email": "s2@x"}]))
    records = run(ingester, schema="qry:personStg", operation="select",
                  select={"node": [{"expr": "@id"}, {"expr": "@email"}, {"expr": "@delete"}]},
                  where=where("@lastModified <= GetDate()"))
    assert records == [{"id": "S1", "email": "s1@x", "delete": False}, {"id": "S2", "email": "s2@x", "delete": False}]
    # The source schema reads the cloud table: the staged rows are not there yet.
    assert run(reader, schema="qry:person", operation="count", where=where("@id IN ('S1', 'S2')")) == 0
    with pytest.raises(InvalidInput, match="'@delete' is not an attribute of qry:person "):
        select(reader, "@delete")


def test_a_limit_over_the_maximum_is_refused_and_the_default_applies(person, reader, settings):
    settings.QUERY_MAX_LINE_COUNT = 3
    settings.QUERY_DEFAULT_LINE_COUNT = 2
    with pytest.raises(InvalidInput, match="lineCount is at most 3"):
        select(reader, "@id", lineCount=4)
    assert ids(select(reader, "@id")) == ["P1", "P2"]
    assert ids(select(reader, "@id", lineCount=3)) == ["P1", "P2", "P3"]


def test_reading_rows_needs_a_permission(person, reader):
    with pytest.raises(Forbidden) as refused:
        select(make_user("ingest-only", "ingest"), "@id")
    assert "'staging.view_schema'" in refused.value.detail
    with pytest.raises(Forbidden):
        run(make_user("nobody"), schema="qry:personStg", operation="count")


def test_unknown_schema_staging_off_and_outdated_structure_are_refused(person, reader):
    with pytest.raises(NotFound, match="qry:nobody"):
        run(reader, schema="qry:nobody", operation="count")
    services.schema_create(source=PERSON.replace('name="person"', 'name="flat"').replace(' autoStg="true"', ""), user=SYSTEM)
    with pytest.raises(Conflict):
        run(reader, schema="qry:flat", operation="count")  # structure never applied
    flat = services.structure_update(schema=services.schema_get(schema_id="qry:flat"), user=SYSTEM)
    assert flat is not None
    with pytest.raises(Conflict, match="Staging is not enabled"):
        run(reader, schema="qry:flatStg", operation="count")


def test_a_value_the_database_cannot_convert_is_a_clear_error_and_the_next_query_works(person, reader):
    if connections["cloud"].vendor != ddl.POSTGRESQL:
        pytest.skip("SQLite converts any text to a number")
    with pytest.raises(InvalidInput, match="database refused"):
        select(reader, "@id", where=where("ToInteger(@email) = 1"))
    assert ids(select(reader, "@id", where=where("@age = 31"))) == ["P1"]


# --- SQL injection: every place caller text reaches ----------------------------------------------

INJECTIONS = [
    "x'; DROP TABLE \"QryPerson\"; --",
    "' OR '1'='1",
    "1); DELETE FROM \"QryPerson\" WHERE (1=1",
    "\\'; DROP TABLE staging_schema; --",
]


def _tables_intact(schema):
    description = schema.description
    with connections[ddl.table_alias(description)].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {ddl.quote(description.sql_table, connections['cloud'].vendor)}")
        assert cursor.fetchone()[0] == len(PEOPLE)
    assert services.schema_get(schema_id="qry:person")


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injected_values_are_only_ever_parameters(person, reader, payload):
    quoted = "'" + payload.replace("'", "''") + "'"
    assert select(reader, "@id", where=where(f"@email = {quoted}")) == []
    assert select(reader, "@id", where=where(f"@email LIKE {quoted}")) == []
    assert select(reader, "@id", where=where(f"@email IN ({quoted}, 'x')")) == []
    records = run(reader, schema="qry:person", operation="select", lineCount=1,
                  select={"node": [{"expr": f"Lower({quoted})", "alias": "@v"}]})
    assert records == [{"v": payload.lower()}]
    _tables_intact(person)


@pytest.mark.parametrize("place", ["select", "where", "orderBy", "groupBy", "having", "alias", "schema",
                                   "lineCount", "startLine", "operation", "function"])
def test_injected_syntax_is_refused_wherever_it_goes(person, reader, place):
    for payload in INJECTIONS:
        _refused_and_harmless(person, reader, place, payload)


def _refused_and_harmless(person, reader, place, payload):
    query_def = {"schema": "qry:person", "operation": "select", "select": {"node": [{"expr": "@id"}]}}
    if place == "select":
        query_def["select"]["node"].append({"expr": f"@email{payload}"})
    elif place in ("where", "having"):
        query_def[place] = where(f"@email = 'a'{payload}")
    elif place in ("orderBy", "groupBy"):
        query_def[place] = {"node": [{"expr": f"@email {payload}"}]}
    elif place == "alias":
        query_def["select"]["node"][0]["alias"] = f"@x{payload}"
    elif place == "function":
        query_def["select"]["node"].append({"expr": f"Lower{payload}(@email)"})
    else:
        query_def[place] = payload
    with pytest.raises((InvalidInput, NotFound)):
        run(reader, **query_def)
    _tables_intact(person)
    assert ids(select(reader, "@id", where=where("@age = 31"))) == ["P1"]


# --- REST ----------------------------------------------------------------------------------------

QUERY = "/api/v1/query/"


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def post(client, body):
    return client.post(QUERY, data=json.dumps(body) if not isinstance(body, str) else body,
                       content_type="application/json")


def test_rest_select_answers_the_records_under_the_element_name(person, reader):
    response = post(api_for(reader), {
        "schema": "qry:person", "operation": "select", "lineCount": 2, "startLine": 1,
        "select": {"node": [{"expr": "@id"}, {"expr": "@age", "alias": "@years"}]},
        "where": {"condition": [{"expr": "@age > 20"}]}, "orderBy": {"node": {"expr": "@age"}},
    })
    assert response.status_code == 200, response.content
    assert response.json() == {"person": [{"id": "P1", "years": 31}, {"id": "P2", "years": 45}]}


def test_rest_get_get_if_exists_and_count(person, reader):
    client = api_for(reader)
    one = {"schema": "qry:person", "select": {"node": [{"expr": "@email"}]}}
    assert post(client, {**one, "operation": "get", "where": where("@id = 'P2'")}).json() == \
        {"person": {"email": "bob@example.com"}}
    assert post(client, {**one, "operation": "getIfExists", "where": where("@id = 'zz'")}).json() == {"person": None}
    missing = post(client, {**one, "operation": "get", "where": where("@id = 'zz'")})
    assert missing.status_code == 404 and missing.json()["code"] == NotFound.code
    assert post(client, {"queryDef": {"schema": "qry:person", "operation": "count"}}).json() == {"count": 5}


def test_rest_errors_name_the_node_and_column(person, reader):
    client = api_for(reader)
    response = post(client, {"schema": "qry:person", "operation": "select",
                                      "select": {"node": [{"expr": "@id"}, {"expr": "Lower(@nosuch)"}]}})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == InvalidInput.code
    problem = body["problems"][0]
    assert problem["attribute"] == "select/node[2]/@expr" and problem["value"] == "Lower(@nosuch)"
    assert "'@nosuch' is not an attribute of qry:person" in problem["message"] and "column 7" in problem["message"]
    syntax = post(client, {"schema": "qry:person", "select": {"node": [{"expr": "@id ="}]}})
    assert syntax.status_code == 400 and "ends too early" in syntax.json()["problems"][0]["message"]
    unknown = post(client, {"schema": "qry:person", "select": {"node": [{"expr": "Frobnicate(@id)"}]}})
    assert "unknown function 'Frobnicate' at column 1" in unknown.json()["problems"][0]["message"]


def test_rest_refuses_bodies_that_are_not_a_query_def(person, reader):
    client = api_for(reader)
    assert post(client, "[1, 2]").status_code == 400
    assert post(client, "{not json").status_code == 400
    assert post(client, {"operation": "select"}).json()["problems"][0]["attribute"] == "schema"
    assert client.post(QUERY).status_code in (400, 415)
    assert APIClient().post(QUERY, data="{}", content_type="application/json").status_code == 401
    assert post(api_for(make_user("nobody")), {"schema": "qry:person", "operation": "count"}).status_code == 403


def test_the_openapi_document_has_the_query_endpoint(reader):
    response = api_for(reader).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "post" in response.json()["paths"]["/api/v1/query/"]
