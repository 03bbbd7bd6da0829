"""Bad then good, on ONE worker: every bad input of the corpus is sent to a gunicorn site with a single
single-threaded worker, then valid calls of every kind (seed form, SDK form, chunked, REST) go to that
very process. Each bad input must get a fault naming its problem, write nothing, leave the worker
alive, and change nothing for the calls after it (docs/testing.md)."""

from dataclasses import dataclass
from typing import Callable

import pytest

from tests.conftest import BOTH_DATABASES
from tests.site import start_one_worker_site, stop_one_worker_site
from tests.soap.conftest import doc_param, logon_envelope, sdk_envelope
from tests.soap.traffic import (
    LOGIN, PERSIST, SEED_INGEST, Credentials, Request, Traffic, fault_of, row_counts, site_setup,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

MAX_BYTES = 32_768  # INGEST_MAX_BYTES of the site, small so "too large" is cheap to send


def ingest(s: Credentials, record: str, *, method: str = "Ingest", urn: str = PERSIST, prolog: str = "") -> bytes:
    return (prolog + sdk_envelope(urn, method, doc_param(record), session_token=s.session_token,
                                  security_token=s.security_token)).encode("utf-8")


def record(value: str = "bad", **attributes) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attributes.items())
    return f'<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="{value}"{extra}/>'


def with_security(s: Credentials) -> dict:
    return {"X-Security-Token": s.security_token}


LAUGHS = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))


@dataclass
class Bad:
    name: str
    build: Callable[[Credentials], Request]
    status: int  # the HTTP status of the fault
    expect: str  # in faultstring or detail


CORPUS = [
    Bad("malformed XML", lambda s: Request(ingest(s, record()).replace(b"</m:Ingest>", b"</m:Ingset>"),
                                           headers=with_security(s)), 500, "CST-400001"),
    Bad("truncated envelope", lambda s: Request(ingest(s, record())[:300], headers=with_security(s)), 500,
        "CST-400001"),
    Bad("invalid UTF-8", lambda s: Request(ingest(s, record("\x00")).replace(b"\x00", b"\xff\xfe"),
                                           headers=with_security(s)), 500, "CST-400001"),
    Bad("DTD with XXE", lambda s: Request(ingest(s, record("&xxe;"), prolog='<?xml version="1.0"?><!DOCTYPE x '
                                                 '[<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'),
                                          headers=with_security(s)), 500, "DTDs are not accepted"),
    Bad("billion laughs", lambda s: Request(ingest(s, record("&lol9;"), prolog=f"<!DOCTYPE l [{LAUGHS}]>"),
                                            headers=with_security(s)), 500, "DTDs are not accepted"),
    Bad("undefined entity", lambda s: Request(ingest(s, record("&nope;")), headers=with_security(s)), 500,
        "CST-400001"),
    Bad("undeclared prefix", lambda s: Request(ingest(s, '<zz:sampleTableStg xtkschema="dem:sampleTableStg"/>'),
                                               headers=with_security(s)), 500, "CST-400001"),
    Bad("nesting deeper than 256", lambda s: Request(ingest(s, "<n>" * 300 + "</n>" * 300),
                                                     headers=with_security(s)), 500, "CST-400001"),
    Bad("huge attribute", lambda s: Request(ingest(s, record("x" * 20_000)), headers=with_security(s)), 500,
        "CST-400200"),
    Bad("duplicate attributes", lambda s: Request(ingest(s, record("a", testcol2="b").replace(
        'testcol2="b"', 'testcol2="b" testcol2="c"')), headers=with_security(s)), 500, "CST-400001"),
    Bad("not a SOAP envelope", lambda s: Request(b"<Envelope><Body/></Envelope>"), 500, "CST-400010"),
    Bad("SOAP envelope without a method", lambda s: Request(
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'),
        500, "CST-400010"),
    Bad("empty body", lambda s: Request(b""), 500, "CST-400001"),
    Bad("unknown method", lambda s: Request(ingest(s, record(), method="Ingestt"), headers=with_security(s)), 500,
        "SOP-330006"),
    Bad("wrong password", lambda s: Request(logon_envelope(LOGIN, "wrong").encode()), 500, "CST-401000"),
    Bad("missing session token", lambda s: Request(ingest(Credentials("", ""), record())), 500, "XSV-350008"),
    Bad("forged session token", lambda s: Request(ingest(Credentials("___FORGED", s.security_token), record()),
                                                  headers=with_security(s)), 500, "XSV-350008"),
    Bad("missing security token", lambda s: Request(
        ingest(s, record()).replace(f"<X-Security-Token>{s.security_token}</X-Security-Token>".encode(), b"")),
        500, "CST-401002"),
    Bad("forged security token", lambda s: Request(ingest(Credentials(s.session_token, "@forged"), record()),
                                                   headers={"X-Security-Token": "@forged"}), 500, "XSV-350008"),
    Bad("GET instead of POST", lambda s: Request(method="GET"), 405, "CST-405000"),
    Bad("PUT instead of POST", lambda s: Request(ingest(s, record()), method="PUT", headers=with_security(s)), 405,
        "CST-405000"),
    Bad("form content type and body", lambda s: Request(b"login=traffic&password=x",
                                                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
        500, "CST-400001"),
    Bad("Content-Length over INGEST_MAX_BYTES", lambda s: Request(ingest(s, record("y" * (MAX_BYTES + 100))),
                                                                  headers=with_security(s)), 413, "CST-413000"),
    Bad("chunked body over INGEST_MAX_BYTES", lambda s: Request(ingest(s, record("y" * (MAX_BYTES + 100))),
                                                                headers=with_security(s), chunked=True),
        413, "CST-413000"),
    Bad("chunked truncated envelope", lambda s: Request(ingest(s, record())[:-40], headers=with_security(s),
                                                        chunked=True), 500, "CST-400001"),
    Bad("Content-Length not a number", lambda s: Request(ingest(s, record()), headers={
        **with_security(s), "Content-Length": "abc"}), 400, ""),
    Bad("unknown attribute", lambda s: Request(ingest(s, record(nosuchattr="boom")), headers=with_security(s)),
        500, "CST-400200"),
    Bad("value too long", lambda s: Request(ingest(s, record("z" * 256)), headers=with_security(s)), 500,
        "CST-400200"),
    Bad("value of the wrong type", lambda s: Request(ingest(s, record(qty="twelve")), headers=with_security(s)),
        500, "CST-400200"),
    Bad("second record of a collection bad", lambda s: Request(ingest(s, (
        '<sampleTableStg-collection xtkschema="dem:sampleTableStg"><sampleTableStg testcol1="fine"/>'
        '<sampleTableStg testcol1="bad" qty="1.5"/></sampleTableStg-collection>')), headers=with_security(s)),
        500, "CST-400200"),
    Bad("Ingest naming the source schema", lambda s: Request(ingest(s, '<sampleTable xtkschema="dem:sampleTable" '
                                                                       'testcol1="x"/>'), headers=with_security(s)),
        500, "CST-400200"),
    Bad("unknown schema", lambda s: Request(ingest(s, '<nopeStg xtkschema="dem:nopeStg"/>'),
                                            headers=with_security(s)), 500, "CST-404000"),
    Bad("Write with a bad record", lambda s: Request(ingest(s, '<sampleTable xtkschema="dem:sampleTable" qty="x"/>',
                                                            method="Write"), headers=with_security(s)),
        500, "CST-400200"),
    Bad("seed form with a placeholder token", lambda s: Request(
        SEED_INGEST.format(token="___xxxxxxx-xxxx-xxx-xxx-xxxxxxxxxxx", value="v").encode()), 500, "XSV-350008"),
    Bad("no document parameter", lambda s: Request(sdk_envelope(
        PERSIST, "Ingest", session_token=s.session_token, security_token=s.security_token).encode(),
        headers=with_security(s)), 500, "CST-400200"),
]


@pytest.fixture
def site(tmp_path):
    server = start_one_worker_site(tmp_path, INGEST_MAX_BYTES=str(MAX_BYTES))
    yield server
    stop_one_worker_site(server)


def test_every_bad_input_is_refused_and_the_same_worker_then_serves_every_good_call(site, subtests):
    schema, api_token = site_setup()
    traffic = Traffic(site.url, schema, api_token)
    worker = site.worker_pid()
    assert worker is not None
    traffic.good_round()

    for bad in CORPUS:
        with subtests.test(msg=bad.name):
            answer = traffic.send(bad.build(traffic.session))

            assert "Traceback" not in answer.text and 'File "' not in answer.text
            assert answer.status == bad.status, answer.text
            if answer.status != 400:  # gunicorn itself refuses a non-numeric Content-Length
                fault = fault_of(answer)
                assert fault["faultcode"] == "SOAP-ENV:Client", fault
                assert bad.expect in fault["faultstring"] + " " + fault.get("detail", ""), fault
            assert row_counts(schema) == traffic.expected, "the bad input wrote rows"
            traffic.good_round()
            assert site.worker_pid() == worker, "the worker was replaced"


def test_a_fault_detail_carries_only_its_own_requests_error(site):
    schema, api_token = site_setup()
    traffic = Traffic(site.url, schema, api_token)
    traffic.send(Request(b"<secretElementOfAnotherCaller><x></secretElementOfAnotherCaller>"))

    # With the SDK's URN namespace, whose warning once made the parser name the log's first "real" error.
    answer = traffic.send(Request(b'<m:mine xmlns:m="urn:xtk:persist|xtk:session"><inner></m:mine>'))

    detail = fault_of(answer)["detail"]
    assert "Opening and ending tag mismatch: inner line 1 and m:mine" in detail
    assert "secretElementOfAnotherCaller" not in detail
