"""How SOAP faults are logged: a client fault is one WARNING line naming its code, never Django's
"Internal Server Error"; a server fault is an ERROR carrying the trace."""

import logging

import pytest

from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import logon_envelope, make_user

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

ROUTER = "/nl/jsp/soaprouter.jsp"


def post(client, body: str | bytes):
    return client.post(ROUTER, data=body, content_type="text/xml;charset=utf-8")


def records_at_or_above(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= level]


def test_a_wrong_password_is_logged_once_as_a_warning_with_its_code_and_no_trace(client, caplog):
    make_user("operator")
    caplog.set_level(logging.INFO)

    answer = post(client, logon_envelope("operator", "wrong"))

    assert answer.status_code == 500
    (record,) = records_at_or_above(caplog, logging.WARNING)
    assert record.name == "campaignsite.soap" and record.levelno == logging.WARNING
    assert "xtk:session#Logon client fault SOP-330011" in record.getMessage()
    assert "CST-401000 Invalid login or password." in record.getMessage()
    assert record.exc_info is None
    assert "Internal Server Error" not in caplog.text


def test_malformed_xml_is_logged_as_a_warning_with_its_code(client, caplog):
    caplog.set_level(logging.INFO)

    answer = post(client, b"<SOAP-ENV:Envelope><oops></SOAP-ENV:Envelope>")

    assert answer.status_code == 500
    (record,) = records_at_or_above(caplog, logging.WARNING)
    assert record.levelno == logging.WARNING
    assert "CST-400001 The SOAP request is not well-formed XML." in record.getMessage()
    assert "\n" not in record.getMessage() and record.exc_info is None


def test_get_instead_of_post_is_a_warning_not_an_error(client, caplog):
    caplog.set_level(logging.INFO)

    answer = client.get(ROUTER)

    assert answer.status_code == 405
    assert [r.levelno for r in records_at_or_above(caplog, logging.WARNING)] == [logging.WARNING]
    assert "CST-405000" in caplog.text

# A server fault (ERROR with the trace) is tested against a live server in test_envelope.py.
