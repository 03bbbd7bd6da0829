"""xtk:queryDef#ExecuteQuery over real HTTP, byte for byte as Adobe's SDK sends it and reads the answer."""

import pytest
from django.db import connections

from staging import ddl, services
from staging.records import records_from_json
from staging.soap import QUERY_DEF_SCHEMA
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import doc_param, logon, make_user, sdk_envelope
from tests.soap.test_get_entity import get_entity

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

ANSWER_START = (
    "<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
    "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:xtk:queryDef' "
    "xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body>"
    "<ExecuteQueryResponse xmlns='urn:xtk:queryDef' SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>"
    "<pdomOutput xsi:type='ns:Element' SOAP-ENV:encodingStyle='http://xml.apache.org/xml-soap/literalxml'>"
)
ANSWER_END = "</pdomOutput></ExecuteQueryResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"


@pytest.fixture
def reader_session(soap, sample_schema):
    user = make_user("reader", perms=("view_schema", "ingest", "write_cloud"))
    services.records_write(schema_id="dem:sampleTable", user=user, records=records_from_json([
        {"id": "A1", "testcol1": "alpha", "testcol2": "x"},
        {"id": "B2", "testcol1": "beta", "testcol2": "it's"},
        {"id": "C3", "testcol1": "gamma"},
    ]))
    services.records_ingest(schema_id="dem:sampleTableStg", user=user,
                            records=records_from_json([{"id": "S1", "testcol1": "staged"}]))
    return logon(soap, "reader")


def execute(soap, session, query_def_xml: str):
    # The SDK adds xtkschema="xtk:queryDef" and sends the queryDef as <document>.
    return soap.post(sdk_envelope("xtk:queryDef", "ExecuteQuery", doc_param(query_def_xml, "document"),
                                  session_token=session.session_token, security_token=session.security_token),
                     headers={**session.headers, "SoapAction": "xtk:queryDef#ExecuteQuery"})


def output(answer) -> str:
    assert answer.status == 200, answer.text
    assert answer.text.startswith(ANSWER_START) and answer.text.endswith(ANSWER_END), answer.text
    return answer.text[len(ANSWER_START):-len(ANSWER_END)]


def test_the_query_def_schema_is_served_so_the_sdk_can_call_execute_query(soap, reader_session):
    answer = get_entity(soap, reader_session, "xtk:schema|xtk:queryDef")
    assert answer.status == 200 and QUERY_DEF_SCHEMA in answer.text
    assert 'name="ExecuteQuery"' in QUERY_DEF_SCHEMA and "static" not in QUERY_DEF_SCHEMA


def test_select_answers_a_collection(soap, reader_session):
    answer = execute(soap, reader_session,
                     '<queryDef schema="dem:sampleTable" operation="select" xtkschema="xtk:queryDef">'
                     '<select><node expr="@id"/><node expr="@testcol2" alias="@second"/></select>'
                     "<orderBy><node expr=\"@testcol1\" sortDesc=\"true\"/></orderBy></queryDef>")
    assert output(answer) == (
        "<sampleTable-collection><sampleTable id='C3' second=''/><sampleTable id='B2' second='it&apos;s'/>"
        "<sampleTable id='A1' second='x'/></sampleTable-collection>"
    )


def test_select_with_where_and_paging(soap, reader_session):
    answer = execute(soap, reader_session,
                     '<queryDef schema="dem:sampleTable" operation="select" lineCount="1" startLine="1">'
                     '<select><node expr="@id"/></select><where>'
                     "<condition expr=\"@testcol1 = 'alpha'\" boolOperator=\"OR\"/>"
                     "<condition expr=\"@testcol2 IS NULL\"/></where></queryDef>")
    assert output(answer) == "<sampleTable-collection><sampleTable id='C3'/></sampleTable-collection>"


def test_an_empty_select_answers_an_empty_collection_never_an_empty_output(soap, reader_session):
    answer = execute(soap, reader_session, '<queryDef schema="dem:sampleTable" operation="select">'
                     "<select><node expr=\"@id\"/></select><where><condition expr=\"@id = 'none'\"/></where>"
                     "</queryDef>")
    assert output(answer) == "<sampleTable-collection/>"


def test_get_get_if_exists_and_count(soap, reader_session):
    get = ('<queryDef schema="dem:sampleTable" operation="{op}"><select><node expr="@testcol1"/></select>'
           "<where><condition expr=\"@id = '{id}'\"/></where></queryDef>")
    assert output(execute(soap, reader_session, get.format(op="get", id="B2"))) == "<sampleTable testcol1='beta'/>"
    assert output(execute(soap, reader_session, get.format(op="getIfExists", id="no"))) == "<sampleTable/>"
    miss = execute(soap, reader_session, get.format(op="get", id="no"))
    assert miss.status == 500
    fault = miss.fault()
    assert fault["faultstring"].startswith("SOP-330011") and "CST-404000" in fault["detail"]
    count = execute(soap, reader_session, '<queryDef schema="dem:sampleTable" operation="count"/>')
    assert output(count) == "<sampleTable count='3'/>"


def test_the_staging_schema_answers_staged_rows(soap, reader_session):
    answer = execute(soap, reader_session, '<queryDef schema="dem:sampleTableStg" operation="select">'
                     '<select><node expr="@id"/><node expr="@testcol1"/><node expr="@delete"/></select></queryDef>')
    assert output(answer) == ("<sampleTableStg-collection><sampleTableStg id='S1' testcol1='staged' delete='false'/>"
                              "</sampleTableStg-collection>")


def _cloud_ids(schema) -> list:
    description = schema.description
    vendor = connections["cloud"].vendor
    with connections[ddl.table_alias(description)].cursor() as cursor:
        cursor.execute(f"SELECT {ddl.quote('uSampleTableId', vendor)} FROM {ddl.quote(description.sql_table, vendor)}")
        return sorted(r[0] for r in cursor.fetchall())


@pytest.mark.parametrize("bad, named", [
    ("<select><node expr=\"@nosuch\"/></select>", "'@nosuch' is not an attribute"),
    ("<select><node expr=\"@id\"/></select><where><condition expr=\"@id = 'x' OR 1=1; "
     "DROP TABLE DemSampleTable; --\"/></where>", "unexpected character ';' at column 17"),
    ("<select><node expr=\"@id); DELETE FROM DemSampleTable; --\"/></select>", "at column 4"),
    ("<select><node expr=\"@id\" alias=\"@x&quot; FROM DemSampleTable; --\"/></select>", "alias"),
    ("<select><node expr=\"Frob(@id)\"/></select>", "unknown function 'Frob' at column 1"),
])
def test_bad_or_hostile_queries_are_faults_naming_the_problem_and_change_nothing(soap, reader_session, sample_schema,
                                                                                 bad, named):
    before = _cloud_ids(sample_schema)
    answer = execute(soap, reader_session, f'<queryDef schema="dem:sampleTable" operation="select">{bad}</queryDef>')
    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client" and "CST-400200" in fault["detail"] and named in fault["detail"], \
        fault
    assert _cloud_ids(sample_schema) == before == ["A1", "B2", "C3"]
    # The next good query on the same server still works.
    good = execute(soap, reader_session, '<queryDef schema="dem:sampleTable" operation="count"/>')
    assert output(good) == "<sampleTable count='3'/>"


def test_execute_query_needs_a_session_and_the_read_permission(soap, reader_session):
    anonymous = soap.post(sdk_envelope("xtk:queryDef", "ExecuteQuery",
                                       doc_param('<queryDef schema="dem:sampleTable" operation="count"/>', "document")))
    assert anonymous.status == 500 and "XSV-350008" in anonymous.text
    make_user("writer-only", perms=("write_cloud",))
    answer = execute(soap, logon(soap, "writer-only"), '<queryDef schema="dem:sampleTable" operation="count"/>')
    assert answer.status == 500 and "CST-403000" in answer.fault()["detail"]


def test_a_link_path_answers_a_nested_element_of_the_link(soap, sample_schema):
    from campaignsite.permissions import SYSTEM
    from tests.staging.test_query_links import COMPANIES, COMPANY, CONTACT, CONTACTS

    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=COMPANY))
    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=CONTACT))
    user = make_user("linker", perms=("view_schema", "write_cloud"))
    services.records_write(schema_id="cus:company", user=user, records=records_from_json(COMPANIES))
    services.records_write(schema_id="cus:contact", user=user, records=records_from_json(CONTACTS))
    session = logon(soap, "linker")
    answer = execute(soap, session, '<queryDef schema="cus:contact" operation="select">'
                     '<select><node expr="@email"/><node expr="[company/@name]"/>'
                     '<node expr="company/@city" alias="@companyCity"/></select>'
                     "<where><condition expr=\"[company/@city] = 'Paris'\"/></where></queryDef>")
    assert output(answer) == (
        "<contact-collection><contact email='ann@acme.com' companyCity='Paris'><company name='Acme'/></contact>"
        "<contact email='carl@acme.com' companyCity='Paris'><company name='Acme'/></contact></contact-collection>"
    )
    refused = execute(soap, session, '<queryDef schema="cus:contact" operation="select">'
                      '<select><node expr="[offices/@name]"/></select></queryDef>')
    assert refused.status == 500 and "collection link (unbound)" in refused.text
