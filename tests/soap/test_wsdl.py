"""GET /nl/jsp/schemawsdl.jsp?schema=xtk:session: a WSDL generic SOAP tooling can call Ingest with."""

import pytest

from campaignsite.soap import service_methods
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import staged_rows

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"


def test_wsdl_of_xtk_session_declares_every_method_as_document_literal(soap):
    answer = soap.get("/nl/jsp/schemawsdl.jsp?schema=xtk:session")

    assert answer.status == 200
    assert answer.headers["content-type"] == "text/xml;charset=utf-8"
    wsdl = answer.xml()
    assert wsdl.get("targetNamespace") == "urn:xtk:session"
    actions = {op.get("soapAction") for op in wsdl.iter(f"{{{WSDL_SOAP}}}operation")}
    assert actions == {f"xtk:session#{m.name}" for m in service_methods("xtk:session")}
    assert {"Logon", "BearerTokenLogon", "Logoff", "GetServerTime", "GetOption", "GetUserInfo", "Ingest",
            "IngestExt", "Write", "WriteCollection", "GetEntityIfMoreRecent"} <= {a.partition("#")[2] for a in actions}
    assert {b.get("use") for b in wsdl.iter(f"{{{WSDL_SOAP}}}body")} == {"literal"}
    address = wsdl.find(f".//{{{WSDL_SOAP}}}address").get("location")
    assert address == f"http://{soap.host}:{soap.port}/nl/jsp/soaprouter.jsp"


def test_wsdl_declares_ingest_with_the_session_token_first_and_pstrsuuids_out(soap):
    wsdl = soap.get("/nl/jsp/schemawsdl.jsp?schema=xtk:session").xml()

    elements = {e.get("name"): e for e in wsdl.iter(f"{{{XSD}}}element") if e.getparent().tag == f"{{{XSD}}}schema"}
    assert [(e.get("name"), e.get("type")) for e in elements["Ingest"].iter(f"{{{XSD}}}element")][1:] == [
        ("sessiontoken", "s:string"), ("domDoc", "tns:Element")]
    assert [(e.get("name"), e.get("type")) for e in elements["IngestResponse"].iter(f"{{{XSD}}}element")][1:] == [
        ("pstrSUuids", "s:string")]


def test_a_call_built_from_the_wsdl_ingests(soap, session, sample_schema):
    wsdl = soap.get("/nl/jsp/schemawsdl.jsp?schema=xtk:session").xml()
    ingest = next(e for e in wsdl.iter(f"{{{XSD}}}element") if e.get("name") == "Ingest")
    token_name, doc_name = [e.get("name") for e in ingest.iter(f"{{{XSD}}}element")][1:]
    # elementFormDefault="qualified": every parameter is in the target namespace, as tools write them.
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">'
        f"<soapenv:Body><urn:Ingest><urn:{token_name}>{session.session_token}</urn:{token_name}>"
        f'<urn:{doc_name}><sampleTableStg xtkschema="dem:sampleTableStg" testcol1="from wsdl"/></urn:{doc_name}>'
        "</urn:Ingest></soapenv:Body></soapenv:Envelope>"
    )

    answer = soap.post(body, headers={"X-Security-Token": session.security_token, "SOAPAction": "xtk:session#Ingest"})

    assert answer.status == 200, answer.text
    assert [r["testcol1"] for r in staged_rows(sample_schema)] == ["from wsdl"]


def test_wsdl_of_an_unknown_schema_is_404_naming_the_known_ones(soap):
    answer = soap.get("/nl/jsp/schemawsdl.jsp?schema=nms:nothing")

    assert answer.status == 404
    assert "nms:nothing" in answer.text and "xtk:session" in answer.text
