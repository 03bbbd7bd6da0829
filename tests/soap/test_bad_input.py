"""Hostile and broken requests: each gets a Client fault naming the problem, never a trace page;
nothing is written, and the server answers the next call normally."""

import http.server
import threading
import time

import pytest

from campaignsite.permissions import SYSTEM
from staging import services
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import doc_param, sdk_envelope, staged_count, staged_rows

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

RECORD = '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="{value}"/>'


def ingest_body(session, record: str = RECORD.format(value="ok"), *, prolog: str = "") -> bytes:
    return (prolog + sdk_envelope("xtk:persist|xtk:session", "Ingest", doc_param(record),
                                  session_token=session.session_token,
                                  security_token=session.security_token)).encode("utf-8")


def assert_refused_and_still_serving(soap, session, schema, answer, *, faultstring: str, detail: str = "",
                                     status: int = 500):
    assert answer.status == status, answer.text
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"].startswith(faultstring), fault
    assert detail in fault.get("detail", ""), fault
    assert "Traceback" not in answer.text
    assert staged_rows(schema) == []
    follow_up = soap.post(ingest_body(session), headers=session.headers)
    assert follow_up.status == 200, follow_up.text
    assert [r["testcol1"] for r in staged_rows(schema)] == ["ok"]


def test_malformed_xml(soap, session, sample_schema):
    body = ingest_body(session).replace(b"</m:Ingest>", b"</m:Ingset>")

    answer = soap.post(body, headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 The SOAP request is not well-formed XML.",
                                     detail="line 1")


def test_truncated_body(soap, session, sample_schema):
    body = ingest_body(session)

    answer = soap.post(body[: len(body) * 2 // 3], headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 The SOAP request is not well-formed XML.")


def test_xxe_reading_a_local_file(soap, session, sample_schema):
    body = ingest_body(session, RECORD.format(value="&xxe;"),
                       prolog='<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')

    answer = soap.post(body, headers=session.headers)

    assert "root:" not in answer.text
    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 DTDs are not accepted", detail="<!DOCTYPE")


@pytest.fixture
def listener():
    """An HTTP server on a free port that counts the requests it receives."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<!ENTITY inner 'fetched'>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_xxe_fetching_from_the_network(soap, session, sample_schema, listener):
    url, hits = listener
    body = ingest_body(session, RECORD.format(value="&remote;"),
                       prolog=f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % ext SYSTEM "{url}/dtd"> %ext;'
                              f'<!ENTITY remote SYSTEM "{url}/data">]>')

    answer = soap.post(body, headers=session.headers)

    assert hits == []
    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 DTDs are not accepted")


def test_billion_laughs(soap, session, sample_schema):
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    body = ingest_body(session, RECORD.format(value="&lol9;"),
                       prolog=f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]>')

    started = time.monotonic()
    answer = soap.post(body, headers=session.headers)

    assert time.monotonic() - started < 5
    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 DTDs are not accepted")


def test_body_above_ingest_max_bytes_is_refused_with_413_before_parsing(soap, session, sample_schema, settings):
    settings.INGEST_MAX_BYTES = 2048
    # Not even XML: the size is refused before the parser sees a byte.
    body = b"<" * 5000

    answer = soap.post(body, headers=session.headers)

    assert answer.status == 413
    assert answer.fault()["faultstring"] == \
        "CST-413000 The request body is 5000 bytes; the limit is 2048 bytes (INGEST_MAX_BYTES)."
    settings.INGEST_MAX_BYTES = 100_000
    assert_refused_and_still_serving(soap, session, sample_schema, answer, status=413,
                                     faultstring="CST-413000 ")


def test_a_million_levels_of_nesting_fail_fast(soap, session, sample_schema):
    depth = 10**6
    record = '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="deep">' + "<a>" * depth + "</a>" * depth \
        + "</sampleTableStg>"
    body = ingest_body(session, record)

    started = time.monotonic()
    answer = soap.post(body, headers=session.headers)

    assert time.monotonic() - started < 10
    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 The SOAP request is not well-formed XML.",
                                     detail="depth")


def test_bytes_that_are_not_utf8(soap, session, sample_schema):
    body = ingest_body(session, RECORD.format(value="caf\u00e9")).replace("café".encode(), b"caf\xe9")

    answer = soap.post(body, headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 The SOAP request is not well-formed XML.",
                                     detail="Invalid bytes in character encoding")


def test_an_empty_body(soap, session, sample_schema):
    answer = soap.post(b"", headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400001 The SOAP request is empty.")


def test_xml_that_is_not_a_soap_envelope(soap, session, sample_schema):
    answer = soap.post(RECORD.format(value="x"), headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400010 The request is not a SOAP envelope.",
                                     detail="<sampleTableStg>")


def test_an_envelope_without_body(soap, session, sample_schema):
    body = b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"/>'

    answer = soap.post(body, headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400010 The SOAP envelope has no Body.")


def test_a_body_without_method_element(soap, session, sample_schema):
    body = (b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<SOAP-ENV:Body>  </SOAP-ENV:Body></SOAP-ENV:Envelope>")

    answer = soap.post(body, headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer,
                                     faultstring="CST-400010 The SOAP body has no method element.")


def test_a_misspelt_method(soap, session, sample_schema):
    body = ingest_body(session).replace(b"m:Ingest", b"m:Ingset")

    answer = soap.post(body, headers=session.headers)

    assert_refused_and_still_serving(
        soap, session, sample_schema, answer,
        faultstring="SOP-330006 The method 'Ingset' is not defined in SOAP service 'xtk:persist|xtk:session'.")


def test_an_unknown_attribute(soap, session, sample_schema):
    answer = soap.post(ingest_body(session, '<sampleTableStg xtkschema="dem:sampleTableStg" colour="red"/>'),
                       headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer, faultstring="SOP-330011 ",
                                     detail="'colour'")


def test_a_string_longer_than_its_length(soap, session, sample_schema):
    answer = soap.post(ingest_body(session, RECORD.format(value="x" * 256)), headers=session.headers)

    assert_refused_and_still_serving(soap, session, sample_schema, answer, faultstring="SOP-330011 ",
                                     detail="'testcol1'")


def test_a_schema_whose_structure_is_out_of_date(soap, session, sample_schema):
    services.schema_update(user=SYSTEM, schema=sample_schema, source=sample_schema.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="testcol3" type="string"/><attribute label="Test Col 2"'))

    answer = soap.post(ingest_body(session), headers=session.headers)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultstring"].startswith("SOP-330011 ")
    assert "structure" in fault["detail"].lower()
    assert staged_count(sample_schema) == 0  # the table still has the old columns


def test_a_schema_without_staging(soap, session, sample_schema):
    services.schema_set_auto_stg(user=SYSTEM, schema=sample_schema, enabled=False)

    answer = soap.post(ingest_body(session), headers=session.headers)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultstring"].startswith("SOP-330011 ")
    assert "dem:sampleTable" in fault["detail"]
