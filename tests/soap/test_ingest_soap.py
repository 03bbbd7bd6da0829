"""Ingest, IngestExt, Write and WriteCollection over real HTTP, starting with the seeds' raw payloads.

The three seed payloads (shared/seeds/001_*.txt, 002_*.txt: Adobe's "New Campaign v8 APIs" page) are
sent byte for byte; only the placeholder session token is replaced by a real one, and the security
token goes in the X-Security-Token header as Campaign requires.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import Permission
from django.db import connections

from staging import ddl, soap_sessions
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import doc_param, make_user, logon, sdk_envelope, staged_rows

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

SEED_INGEST = """\
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">
<soapenv:Header/>
<soapenv:Body>
    <urn:Ingest>
        <urn:sessiontoken>___xxxxxxx-xxxx-xxx-xxx-xxxxxxxxxxx</urn:sessiontoken>
        <urn:domDoc>
            <sampleTableStg
                testcol1="Test Value 1 (from SOAP)"
                testcol2="Test Value 2 (from SOAP)"
                xtkschema="dem:sampleTableStg">
            </sampleTableStg>
        </urn:domDoc>
    </urn:Ingest>
</soapenv:Body>
</soapenv:Envelope>"""

SEED_INGEST_WITH_KEY = """\
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">
<soapenv:Header/>
<soapenv:Body>
  <urn:Ingest>
     <urn:sessiontoken>___5e71f4bf-d38a-4ba8-ac15-35a958f7f138</urn:sessiontoken>
     <urn:domDoc>
        <sampleTableStg  _key="@id" id="ABDCD321"
             testcol1="Test Value 1 (from SOAP)"
             testcol2="Test Value 2 (from SOAP)"
             xtkschema="dem:sampleTableStg">
         </sampleTableStg>
     </urn:domDoc>
  </urn:Ingest>
 </soapenv:Body>
</soapenv:Envelope>"""

SEED_INGEST_EXT = """\
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">
<soapenv:Header/>
<soapenv:Body>
    <urn:IngestExt>
        <urn:sessiontoken>___444cd168-a1e2-4fb6-a2a8-73be9f133489</urn:sessiontoken>
        <urn:domDoc>
        <sampleTableStg  _key="@id" id="ABDCD321"
                testcol1="Test Value E (from SOAP)"
                testcol2="Test Value F (from SOAP)"
                xtkschema="dem:sampleTableStg">
            </sampleTableStg>
        </urn:domDoc>
    </urn:IngestExt>
</soapenv:Body>
</soapenv:Envelope>"""

PLACEHOLDER_TOKEN = re.compile(r"(<urn:sessiontoken>)[^<]*(</urn:sessiontoken>)")
ENVELOPE_START = (
    "<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
    "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:wpp:default' "
    "xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body>"
)
ENVELOPE_END = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
ENCODING = "SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'"


def seed(soap, session, payload: str):
    body = PLACEHOLDER_TOKEN.sub(lambda m: m.group(1) + session.session_token + m.group(2), payload)
    return soap.post(body, headers={"X-Security-Token": session.security_token, "SOAPAction": "xtk:session#Ingest"})


def sdk_call(soap, session, method: str, record_xml: str, *, urn="xtk:persist|xtk:session"):
    return soap.post(
        sdk_envelope(urn, method, doc_param(record_xml), session_token=session.session_token,
                     security_token=session.security_token),
        headers=session.headers,
    )


def cloud_rows(schema) -> list[dict]:
    description = schema.description
    connection = connections[ddl.CLOUD]
    vendor = connection.vendor
    columns = ", ".join(ddl.quote(a.sql_name, vendor) for a in description.attributes)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {ddl.quote(description.sql_table, vendor)}")
        return [{a.name: value for a, value in zip(description.attributes, row)} for row in cursor.fetchall()]


# --- the seeds, byte for byte ----------------------------------------------------------------

def test_seed_ingest_without_reconciliation_answers_the_generated_uuid(soap, session, sample_schema):
    answer = seed(soap, session, SEED_INGEST)

    assert answer.status == 200, answer.text
    match = re.fullmatch(
        re.escape(f"{ENVELOPE_START}<IngestResponse xmlns='urn:wpp:default' {ENCODING}>"
                  "<pstrSUuids xsi:type='xsd:string'>") + f"({UUID})" + re.escape(
            f"</pstrSUuids></IngestResponse>{ENVELOPE_END}"),
        answer.text,
    )
    assert match, answer.text
    assert staged_rows(sample_schema) == [
        {"id": match.group(1), "testcol1": "Test Value 1 (from SOAP)", "testcol2": "Test Value 2 (from SOAP)"}]


def test_seed_ingest_with_reconciliation_answers_an_empty_pstrsuuids(soap, session, sample_schema):
    answer = seed(soap, session, SEED_INGEST_WITH_KEY)

    assert answer.status == 200, answer.text
    assert answer.text == (f"{ENVELOPE_START}<IngestResponse xmlns='urn:wpp:default' {ENCODING}>"
                           f"<pstrSUuids xsi:type='xsd:string'/></IngestResponse>{ENVELOPE_END}")
    assert staged_rows(sample_schema) == [
        {"id": "ABDCD321", "testcol1": "Test Value 1 (from SOAP)", "testcol2": "Test Value 2 (from SOAP)"}]


def test_seed_ingest_ext_updates_the_staged_record_in_place(soap, session, sample_schema):
    assert seed(soap, session, SEED_INGEST_WITH_KEY).status == 200

    answer = seed(soap, session, SEED_INGEST_EXT)

    assert answer.status == 200, answer.text
    assert answer.text == (f"{ENVELOPE_START}<IngestExtResponse xmlns='urn:wpp:default' {ENCODING}>"
                           f"</IngestExtResponse>{ENVELOPE_END}")
    assert staged_rows(sample_schema) == [
        {"id": "ABDCD321", "testcol1": "Test Value E (from SOAP)", "testcol2": "Test Value F (from SOAP)"}]


# --- as the SDK sends them -------------------------------------------------------------------

def test_sdk_ingest_with_the_persist_urn_and_a_doc_parameter(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest",
                      '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="v1" testcol2="v2"/>')

    assert answer.status == 200, answer.text
    (uuids,) = answer.result("Ingest")
    assert re.fullmatch(UUID, uuids.text)
    assert staged_rows(sample_schema)[0]["testcol1"] == "v1"


@pytest.mark.parametrize("urn", ["xtk:session", "xtk:persist"])
def test_ingest_answers_on_the_session_and_persist_urns_too(soap, session, sample_schema, urn):
    answer = sdk_call(soap, session, "Ingest", '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="v"/>',
                      urn=urn)

    assert answer.status == 200, answer.text


def test_ingest_of_a_collection_answers_uuids_in_document_order_with_empty_entries_for_supplied_ids(
        soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest", (
        '<sampleTableStg-collection xtkschema="dem:sampleTableStg">'
        '<sampleTableStg testcol1="a"/><sampleTableStg _key="@id" id="K2" testcol1="b"/>'
        '<sampleTableStg testcol1="c"/></sampleTableStg-collection>'))

    assert answer.status == 200, answer.text
    first, second, third = answer.result("Ingest")[0].text.split(",")
    assert re.fullmatch(UUID, first) and second == "" and re.fullmatch(UUID, third)
    assert sorted(r["testcol1"] for r in staged_rows(sample_schema)) == ["a", "b", "c"]


def test_ingest_ext_with_the_sdk_urn_answers_an_empty_response(soap, session, sample_schema):
    answer = sdk_call(soap, session, "IngestExt",
                      '<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="X1" testcol1="new"/>')

    assert answer.status == 200, answer.text
    assert answer.result("IngestExt") == []
    assert staged_rows(sample_schema) == [{"id": "X1", "testcol1": "new", "testcol2": None}]


def test_write_applies_the_record_to_the_cloud_table_and_not_to_staging(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Write",
                      '<sampleTable xtkschema="dem:sampleTable" _key="@id" id="W1" testcol1="cloud"/>')

    assert answer.status == 200, answer.text
    assert f"<WriteResponse xmlns='urn:wpp:default' {ENCODING}></WriteResponse>" in answer.text
    assert cloud_rows(sample_schema) == [{"id": "W1", "testcol1": "cloud", "testcol2": None}]
    assert staged_rows(sample_schema) == []


def test_write_collection_applies_every_record(soap, session, sample_schema):
    answer = sdk_call(soap, session, "WriteCollection", (
        '<sampleTable-collection xtkschema="dem:sampleTable">'
        '<sampleTable _key="@id" id="W1" testcol1="a"/><sampleTable _key="@id" id="W2" testcol1="b"/>'
        "</sampleTable-collection>"))

    assert answer.status == 200, answer.text
    assert sorted(r["id"] for r in cloud_rows(sample_schema)) == ["W1", "W2"]


# --- errors of the services, as faults -------------------------------------------------------

def test_ingest_of_an_already_staged_key_is_a_client_fault_naming_the_record(soap, session, sample_schema):
    assert seed(soap, session, SEED_INGEST_WITH_KEY).status == 200

    answer = seed(soap, session, SEED_INGEST_WITH_KEY)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"] == "SOP-330011 Error while executing the method 'Ingest' of service 'xtk:session'."
    assert fault["detail"].startswith("CST-409000 ")
    assert "ABDCD321" in fault["detail"] and "IngestExt" in fault["detail"]


def test_invalid_records_are_listed_in_the_detail_and_nothing_is_written(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest", (
        '<sampleTableStg-collection xtkschema="dem:sampleTableStg">'
        '<sampleTableStg testcol1="fine"/><sampleTableStg colour="red"/>'
        f'<sampleTableStg testcol2="{"x" * 300}"/></sampleTableStg-collection>'))

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"] == "SOP-330011 Error while executing the method 'Ingest' of service 'xtk:session'."
    detail = fault["detail"]
    assert detail.startswith("CST-400200 ")
    assert "record 1" in detail and "'colour'" in detail and "'red'" in detail
    assert "record 2" in detail and "'testcol2'" in detail
    assert staged_rows(sample_schema) == []


def test_a_document_without_xtkschema_is_refused_naming_xtkschema(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest", '<sampleTableStg testcol1="v"/>')

    assert answer.status == 500
    detail = answer.fault()["detail"]
    assert detail.startswith("CST-400200 ") and "xtkschema" in detail
    assert staged_rows(sample_schema) == []


def test_a_call_without_a_document_is_refused(soap, session, sample_schema):
    answer = soap.post(sdk_envelope("xtk:persist|xtk:session", "Ingest", session_token=session.session_token,
                                    security_token=session.security_token), headers=session.headers)

    assert answer.status == 500
    detail = answer.fault()["detail"]
    assert detail.startswith("CST-400200 ") and "XML document" in detail


def test_ingest_naming_the_source_schema_is_refused(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest", '<sampleTable xtkschema="dem:sampleTable" testcol1="v"/>')

    assert answer.status == 500
    assert "xtkschema" in answer.fault()["detail"]
    assert staged_rows(sample_schema) == []


def test_ingest_into_an_unknown_schema_is_refused(soap, session, sample_schema):
    answer = sdk_call(soap, session, "Ingest", '<nopeStg xtkschema="dem:nopeStg" testcol1="v"/>')

    assert answer.status == 500
    assert answer.fault()["detail"].startswith("CST-404000 ")


def test_a_user_without_the_ingest_permission_is_refused(soap, sample_schema):
    make_user("reader", perms=())
    reader = logon(soap, "reader")

    answer = seed(soap, reader, SEED_INGEST)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["detail"].startswith("CST-403000 ") and "staging.ingest" in fault["detail"]
    assert staged_rows(sample_schema) == []


def test_write_needs_its_own_permission(soap, sample_schema):
    make_user("ingester", perms=("ingest",))
    ingester = logon(soap, "ingester")

    answer = sdk_call(soap, ingester, "Write", '<sampleTable xtkschema="dem:sampleTable" testcol1="v"/>')

    assert answer.status == 500
    assert "staging.write_cloud" in answer.fault()["detail"]
    assert cloud_rows(sample_schema) == []


def test_a_record_count_above_the_limit_is_refused(soap, session, sample_schema, settings):
    settings.INGEST_MAX_RECORDS = 2
    records = "".join(f'<sampleTableStg testcol1="{i}"/>' for i in range(3))

    answer = sdk_call(soap, session, "Ingest",
                      f'<sampleTableStg-collection xtkschema="dem:sampleTableStg">{records}</sampleTableStg-collection>')

    assert answer.status == 413
    fault = answer.fault()
    assert fault["detail"].startswith("CST-413000 ") and "INGEST_MAX_RECORDS" in fault["detail"]
    assert staged_rows(sample_schema) == []


def test_concurrent_one_record_calls_all_land(soap, session, sample_schema):
    # The live server answers each call in its own thread and database connection, so the ingest
    # transactions contend for the database's write lock as a server's workers do.
    def ingest(i: int):
        return sdk_call(soap, session, "Ingest", f'<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="{i}"/>')

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ingest, range(80)))

    assert [a.status for a in answers] == [200] * 80, next(a.text for a in answers if a.status != 200)
    rows = staged_rows(sample_schema)
    assert sorted(int(r["testcol1"]) for r in rows) == list(range(80))
    assert len({r["id"] for r in rows}) == 80


def test_a_permission_withdrawn_reaches_a_session_once_its_cache_delay_is_over(
        soap, session, operator, sample_schema, monkeypatch):
    monkeypatch.setattr(soap_sessions, "CACHE_SECONDS", 0)  # the delay is over at every call
    assert seed(soap, session, SEED_INGEST).status == 200
    operator.user_permissions.remove(Permission.objects.get(content_type__app_label="staging", codename="ingest"))

    answer = seed(soap, session, SEED_INGEST)

    assert answer.status == 500
    assert answer.fault()["detail"].startswith("CST-403000 ")
    assert len(staged_rows(sample_schema)) == 1
