"""GET /r/test and GET /nl/jsp/ping.jsp: the anonymous probes the SDK's test() and ping() call."""

import re

import pytest
from lxml import etree

from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def test_redir_test_answers_status_ok_and_build_without_authentication(soap):
    answer = soap.get("/r/test")

    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text.startswith("<redir ")  # nothing before the element: the SDK parses the body as is
    redir = etree.fromstring(answer.body)
    assert redir.tag == "redir"
    assert (redir.get("status"), redir.get("build"), redir.get("instance")) == ("OK", "9999", "campaign-staging")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", redir.get("date"))
    assert redir.get("sourceIP") == "127.0.0.1"
    assert redir.get("host") == f"{soap.host}:{soap.port}"


def test_redir_test_reveals_no_machine_name_or_settings(soap, settings):
    import socket

    text = soap.get("/r/test").text

    assert socket.gethostname() not in text
    assert settings.SECRET_KEY not in text


def test_ping_answers_ok_and_a_timestamp_on_two_lines_without_authentication(soap):
    answer = soap.get("/nl/jsp/ping.jsp")

    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    status, timestamp, rest = answer.text.split("\n")
    assert (status, rest) == ("OK", "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", timestamp)


@pytest.mark.parametrize("path", ["/r/test", "/nl/jsp/ping.jsp"])
def test_the_probes_refuse_a_post(soap, path):
    assert soap.post(b"x", path=path).status == 405
