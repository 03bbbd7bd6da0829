"""xtk:persist#GetEntityIfMoreRecent: how the SDK learns method signatures, and schema documents."""

import re

import pytest
from lxml import etree

from campaignsite.soap import service_methods
from staging.soap import SESSION_SCHEMA
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import logon, make_user, sdk_envelope
from campaignsite.permissions import SYSTEM

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

RESPONSE_START = (
    "<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
    "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:wpp:default' "
    "xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body>"
    "<GetEntityIfMoreRecentResponse xmlns='urn:wpp:default' "
    "SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>"
    "<pdomDoc xsi:type='ns:Element' SOAP-ENV:encodingStyle='http://xml.apache.org/xml-soap/literalxml'"
)


def get_entity(soap, session, pk: str, *, md5: str = "", must_exist: str = "false", urn: str = "xtk:persist"):
    # Exactly the SDK's request (as Adobe's acc-js-sdk sends and parses them, src/soap.js).
    params = (f'<pk xsi:type="xsd:string">{pk}</pk>'
              + (f'<md5 xsi:type="xsd:string">{md5}</md5>' if md5 else '<md5 xsi:type="xsd:string"/>')
              + f'<mustExist xsi:type="xsd:boolean">{must_exist}</mustExist>')
    return soap.post(sdk_envelope(urn, "GetEntityIfMoreRecent", params, session_token=session.session_token,
                                  security_token=session.security_token), headers=session.headers)


def test_xtk_session_schema_declares_the_persist_methods_static_in_an_interface(soap, session):
    answer = get_entity(soap, session, "xtk:schema|xtk:session")

    assert answer.status == 200
    assert answer.text.startswith(RESPONSE_START + f">{SESSION_SCHEMA}</pdomDoc>")
    (doc,) = answer.result("GetEntityIfMoreRecent")
    (schema,) = list(doc)
    assert (schema.get("namespace"), schema.get("name"), schema.get("implements")) == ("xtk", "session",
                                                                                     "xtk:persist")
    interface = schema.find("{*}interface")
    assert interface.get("name") == "persist"
    methods = {m.get("name"): m for m in interface.findall("{*}method")}
    assert set(methods) == {"Write", "WriteCollection", "Ingest", "IngestExt", "GetEntityIfMoreRecent"}
    assert {m.get("static") for m in methods.values()} == {"true"}
    ingest_params = [(p.get("name"), p.get("type"), p.get("inout")) for p in methods["Ingest"].iter("{*}param")]
    assert ingest_params == [("doc", "DOMDocument", None), ("sUuids", "string", "out")]
    assert [p.get("inout") for p in methods["IngestExt"].iter("{*}param")] == [None]
    session_methods = {m.get("name") for m in schema.find("{*}methods").findall("{*}method")}
    assert session_methods == {"Logon", "BearerTokenLogon", "Logoff", "GetServerTime", "GetOption", "GetUserInfo"}
    # The schema declares exactly what the server answers: a method the SDK learns here is never unknown.
    assert set(methods) | session_methods == {m.name for m in service_methods("xtk:session")}


def test_the_sdk_urn_forms_answer_too(soap, session):
    for urn in ("xtk:persist|xtk:session", "xtk:session"):
        assert get_entity(soap, session, "xtk:schema|xtk:session", urn=urn).status == 200


def test_a_staging_schema_document_is_generated_from_the_source_schema(soap, session, sample_schema):
    answer = get_entity(soap, session, "xtk:schema|dem:sampleTableStg")

    (doc,) = answer.result("GetEntityIfMoreRecent")
    (schema,) = list(doc)
    assert (schema.get("namespace"), schema.get("name"), schema.get("stgSrcSchema")) == (
        "dem", "sampleTableStg", "dem:sampleTable")
    element = schema.find("{*}element")
    assert element.get("name") == "sampleTableStg" and element.get("sqltable") == "DemSampleTableStg"
    attributes = {a.get("name"): a for a in element.findall("{*}attribute")}
    assert set(attributes) == {"id", "testcol1", "testcol2"}
    assert (attributes["testcol1"].get("type"), attributes["testcol1"].get("length")) == ("string", "255")


@pytest.fixture
def viewer_session(soap):
    make_user("viewer", perms=("view_schema",))
    return logon(soap, "viewer")


@pytest.fixture
def bare_session(soap):
    make_user("bare", perms=())
    return logon(soap, "bare")


def test_a_source_schema_document(soap, viewer_session, sample_schema):
    answer = get_entity(soap, viewer_session, "xtk:schema|dem:sampleTable")

    (schema,) = list(answer.result("GetEntityIfMoreRecent")[0])
    assert schema.get("name") == "sampleTable" and schema.get("stgSrcSchema") is None
    assert schema.find("{*}element").get("autoStg") == "true"


def test_an_unknown_schema_answers_an_empty_document(soap, viewer_session):
    answer = get_entity(soap, viewer_session, "xtk:schema|dem:nothing")

    assert answer.status == 200
    assert answer.text == RESPONSE_START + "/></GetEntityIfMoreRecentResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"


def test_an_unknown_schema_that_must_exist_is_a_fault(soap, viewer_session):
    answer = get_entity(soap, viewer_session, "xtk:schema|dem:nothing", must_exist="true")

    assert answer.status == 500
    assert answer.fault()["detail"].startswith("CST-404000 ")


def test_a_current_md5_answers_an_empty_document(soap, session, sample_schema):
    (schema,) = list(get_entity(soap, session, "xtk:schema|dem:sampleTableStg").result("GetEntityIfMoreRecent")[0])

    answer = get_entity(soap, session, "xtk:schema|dem:sampleTableStg", md5=schema.get("md5"))

    assert list(answer.result("GetEntityIfMoreRecent")[0]) == []


def test_get_entity_needs_a_session(soap):
    answer = soap.post(sdk_envelope("xtk:persist", "GetEntityIfMoreRecent",
                                    '<pk xsi:type="xsd:string">xtk:schema|xtk:session</pk>'))

    assert answer.fault()["faultstring"].startswith("XSV-350008 ")


def assert_forbidden(answer, schema_id: str, needed: str):
    assert answer.status == 500, answer.text
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["detail"].startswith(f"CST-403000 User 'bare' may not read the schema '{schema_id}'.")
    assert needed in fault["detail"]
    assert "<attribute" not in answer.text


def test_a_user_without_permissions_reads_the_session_schema_but_no_other(soap, bare_session, sample_schema):
    assert get_entity(soap, bare_session, "xtk:schema|xtk:session").status == 200

    assert_forbidden(get_entity(soap, bare_session, "xtk:schema|dem:sampleTable"), "dem:sampleTable",
                     "'staging.view_schema'")
    assert_forbidden(get_entity(soap, bare_session, "xtk:schema|dem:sampleTableStg"), "dem:sampleTableStg",
                     "'staging.view_schema' or 'staging.ingest'")


def test_a_refusal_does_not_tell_whether_the_schema_exists(soap, bare_session, sample_schema):
    assert_forbidden(get_entity(soap, bare_session, "xtk:schema|dem:nothing"), "dem:nothing",
                     "'staging.view_schema'")


def test_an_ingesting_user_reads_staging_schemas_but_not_source_schemas(soap, session, sample_schema):
    staging = get_entity(soap, session, "xtk:schema|dem:sampleTableStg")
    source = get_entity(soap, session, "xtk:schema|dem:sampleTable")

    assert list(staging.result("GetEntityIfMoreRecent")[0])[0].get("name") == "sampleTableStg"
    assert source.status == 500
    assert source.fault()["detail"].startswith("CST-403000 User 'operator' may not read the schema 'dem:sampleTable'.")


def test_view_schema_reads_source_and_staging_schemas(soap, viewer_session, sample_schema):
    for schema_id in ("dem:sampleTable", "dem:sampleTableStg"):
        answer = get_entity(soap, viewer_session, f"xtk:schema|{schema_id}")
        assert answer.status == 200, answer.text
        assert list(answer.result("GetEntityIfMoreRecent")[0])[0].get("name") == schema_id.partition(":")[2]


def test_a_schema_document_carries_labels_enumerations_and_keys_for_the_sdk(soap, viewer_session):
    from staging import services

    services.builtin_schemas_load(user=SYSTEM)
    answer = get_entity(soap, viewer_session, "xtk:schema|nms:recipient")

    (schema,) = list(answer.result("GetEntityIfMoreRecent")[0])
    assert (schema.get("label"), schema.get("labelSingular"), schema.get("mappingType")) == (
        "Recipients", "Recipient", "sql")
    assert re.fullmatch(r"[0-9a-f]{32}", schema.get("md5"))
    enumerations = {e.get("name"): e for e in schema.findall("{*}enumeration")}
    gender = enumerations["gender"]
    assert (gender.get("name"), gender.get("basetype"), gender.get("default")) == ("gender", "byte", "unknown")
    assert [(v.get("name"), v.get("value"), v.get("label")) for v in gender.findall("{*}value")][:2] == [
        ("unknown", "0", "Not specified"), ("male", "1", "Male")]
    element = schema.find("{*}element")
    attributes = {a.get("name"): a for a in element.findall("{*}attribute")}
    assert (attributes["gender"].get("type"), attributes["gender"].get("enum")) == ("byte", "gender")
    assert attributes["email"].get("label") == "Email"
    assert attributes["created"].get("default") == "GetDate()"
    assert [k.get("xpath") for k in element.find("{*}key").findall("{*}keyfield")] == ["@id"]
    # Sub-elements nest as Campaign's compiled schemas do: <element name="location"><attribute name="city"/>.
    location = element.find("{*}element[@name='location']")
    assert "city" in [a.get("name") for a in location.findall("{*}attribute")]
    assert not any("/" in name for name in attributes)


def test_the_option_schema_is_served(soap, session):
    (schema,) = list(get_entity(soap, session, "xtk:schema|xtk:option").result("GetEntityIfMoreRecent")[0])

    assert (schema.get("namespace"), schema.get("name")) == ("xtk", "option")
    names = [a.get("name") for a in schema.find("{*}element").findall("{*}attribute")]
    assert names[:3] == ["name", "dataType", "stringValue"]
    assert schema.find("{*}enumeration").get("name") == "dataType"


def test_a_source_schema_is_served_as_stored(soap, viewer_session, sample_schema):
    answer = get_entity(soap, viewer_session, "xtk:srcSchema|dem:sampleTable")

    (source,) = list(answer.result("GetEntityIfMoreRecent")[0])
    assert (etree.QName(source).localname, source.get("namespace"), source.get("name")) == (
        "srcSchema", "dem", "sampleTable")
    assert [a.get("name") for a in source.find("{*}element").findall("{*}attribute")] == ["testcol1", "testcol2"]
    assert "<?xml" not in answer.text.partition("?>")[2]  # no second XML declaration inside the answer


def test_an_unknown_source_schema_answers_an_empty_document(soap, viewer_session):
    answer = get_entity(soap, viewer_session, "xtk:srcSchema|dem:nothing")

    assert answer.text == RESPONSE_START + "/></GetEntityIfMoreRecentResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
