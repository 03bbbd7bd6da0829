"""The router's envelope handling: routes, dispatch by method element and URN, parameters, body reading."""

import io

import pytest
from django.test import RequestFactory

from campaignsite.errors import TooLarge
from campaignsite.soap import read_body, render_output, xml_attr, xml_element
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import sdk_envelope

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def get_server_time(session, urn="xtk:session"):
    return sdk_envelope(urn, "GetServerTime", session_token=session.session_token,
                        security_token=session.security_token)


def test_the_soap_action_query_of_the_sdk_is_ignored(soap, session):
    answer = soap.post(get_server_time(session), path="/nl/jsp/soaprouter.jsp?soapAction=xtk%3Asession%23Ingest")

    assert answer.status == 200
    assert answer.result("GetServerTime")


def test_an_endpoint_with_a_trailing_slash_is_tolerated(soap, session):
    answer = soap.post(get_server_time(session), path="//nl/jsp/soaprouter.jsp")

    assert answer.status == 200, answer.text


def test_no_csrf_token_is_needed_and_any_request_content_type_is_accepted(soap, session):
    answer = soap.post(get_server_time(session), headers={"Content-Type": "text/plain"})

    assert answer.status == 200


def test_the_method_element_decides_not_the_soapaction_header(soap, session):
    answer = soap.post(get_server_time(session), headers={"SOAPAction": '"xtk:session#Logoff"'})

    assert answer.result("GetServerTime")


def test_an_unqualified_method_element_takes_its_service_from_the_soapaction_header(soap, session):
    body = get_server_time(session).replace('<m:GetServerTime xmlns:m="urn:xtk:session"', "<GetServerTime") \
        .replace("</m:GetServerTime>", "</GetServerTime>")

    answer = soap.post(body, headers={"SOAPAction": '"xtk:session#GetServerTime"'})

    assert answer.status == 200, answer.text


def test_the_session_token_element_may_be_named___sessiontoken(soap, session):
    body = get_server_time(session).replace("<sessiontoken ", "<__sessiontoken ") \
        .replace("</sessiontoken>", "</__sessiontoken>")

    answer = soap.post(body, headers={"X-Security-Token": session.security_token})

    assert answer.status == 200, answer.text


def test_an_unknown_method_is_a_client_fault_naming_method_and_service(soap, session):
    answer = soap.post(sdk_envelope("xtk:session", "GetModifiedEntities", session_token=session.session_token))

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"] == "SOP-330006 The method 'GetModifiedEntities' is not defined in SOAP service " \
                                   "'xtk:session'."


def test_a_known_method_under_another_service_is_unknown(soap, session):
    answer = soap.post(sdk_envelope("nms:recipient", "Logon"))

    assert answer.fault()["faultstring"] == "SOP-330006 The method 'Logon' is not defined in SOAP service " \
                                            "'nms:recipient'."


def test_unknown_methods_are_refused_before_authentication(soap):
    answer = soap.post(sdk_envelope("xtk:session", "Nope"))

    assert answer.fault()["faultstring"].startswith("SOP-330006 ")


def test_fault_bytes_have_campaigns_shape(soap):
    answer = soap.post(sdk_envelope("xtk:session", "Nope"))

    assert answer.headers["content-type"] == "text/xml;charset=utf-8"
    assert answer.body.startswith(
        b"<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
        b"xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
        b"xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body><SOAP-ENV:Fault>"
        b"<faultcode>SOAP-ENV:Client</faultcode><faultstring xsi:type='xsd:string'>SOP-330006 "
    )


def test_get_on_the_router_is_refused_with_a_fault(soap):
    answer = soap.get("/nl/jsp/soaprouter.jsp")

    assert answer.status == 405
    assert answer.headers["allow"] == "POST"
    assert answer.fault()["faultstring"].startswith("CST-405000 ")


def test_read_body_stops_at_the_limit_without_content_length():
    # A chunked upload (gunicorn marks the stream terminated) has no Content-Length to check first.
    request = RequestFactory().generic("POST", "/nl/jsp/soaprouter.jsp", b"")
    stream = io.BytesIO(b"x" * 5000)
    request.META.pop("CONTENT_LENGTH", None)
    request.META.update({"wsgi.input": stream, "wsgi.input_terminated": True})

    with pytest.raises(TooLarge, match="more than 1024 bytes"):
        read_body(request, limit=1024)
    assert stream.tell() == 1025


def test_read_body_refuses_a_declared_length_above_the_limit_without_reading():
    request = RequestFactory().generic("POST", "/nl/jsp/soaprouter.jsp", b"x" * 2000)

    with pytest.raises(TooLarge, match="2000 bytes"):
        read_body(request, limit=1024)
    assert request.META["wsgi.input"].read() == b"x" * 2000


def test_values_are_escaped_in_results_and_attributes():
    assert render_output("pstrSUuids", "string", "a<b&'c'") == "<pstrSUuids xsi:type='xsd:string'>a&lt;b&amp;'c'</pstrSUuids>"
    assert xml_attr("it's \"<x>\"") == "'it&apos;s \"&lt;x&gt;\"'"
    assert xml_element("userInfo", {"login": "o'brien", "skip": None}) == "<userInfo login='o&apos;brien'/>"
    assert render_output("pstrSUuids", "string", "") == "<pstrSUuids xsi:type='xsd:string'/>"


def test_an_unexpected_error_is_a_generic_server_fault_and_is_logged(soap, session, sample_schema, caplog):
    from django.db import connections

    from staging import ddl
    from tests.soap.conftest import doc_param

    # The staging table vanishes behind the application's back: a failure that is nobody's input.
    connection = connections[ddl.LOCAL]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {ddl.quote(sample_schema.description.staging_table, connection.vendor)}")

    answer = soap.post(sdk_envelope("xtk:persist|xtk:session", "Ingest",
                                    doc_param('<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="x"/>'),
                                    session_token=session.session_token, security_token=session.security_token),
                       headers=session.headers)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Server"
    assert fault["faultstring"] == "CST-500000 Internal error while processing the SOAP call."
    assert "Traceback" not in answer.text and "sampletablestg" not in answer.text.lower()
    (logged,) = [r for r in caplog.records if "xtk:persist|xtk:session#Ingest server fault CST-500000" in r.getMessage()]
    assert logged.levelname == "ERROR" and logged.exc_info is not None  # with the trace, for the operator
