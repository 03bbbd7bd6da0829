"""nms:subscription#Subscribe / Unsubscribe over real HTTP, as Campaign documents the request
(reference/campaign-v8-behaviour.md §6): an immediate empty answer, applied by the next processing."""

import pytest

from subscriptions.models import Service
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import SoapClient, logon, make_user, sdk_envelope

from .conftest import add_recipient, history, process, recipients, requests_state, subscriptions

pytestmark = [pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True), pytest.mark.usefixtures("builtins")]

# Campaign's documented Subscribe request, with its placeholders filled in.
DOCUMENTED_SUBSCRIBE = """\
<SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'
    xmlns:ns='http://xml.apache.org/xml-soap' xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'>
<SOAP-ENV:Body>
  <m:Subscribe xmlns:m='urn:nms:subscription' SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>
    <sessiontoken xsi:type='xsd:string'>{token}</sessiontoken>
    <service xsi:type='xsd:string'>{service}</service>
    <content xsi:type='ns:Element' SOAP-ENV:encodingStyle='http://xml.apache.org/xml-soap/literalxml'>
      <recipient _key="@email" email="{email}"/>
    </content>
    <create xsi:type='xsd:boolean'>true</create>
  </m:Subscribe>
</SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


@pytest.fixture
def soap(live_server) -> SoapClient:
    return SoapClient(live_server.url)


@pytest.fixture
def session(soap):
    make_user("webform", perms=("ingest",))
    return logon(soap, "webform")


def test_documented_subscribe_answers_at_once_and_processing_subscribes(soap, session):
    Service.objects.create(name="newsletter")

    answer = soap.post(DOCUMENTED_SUBSCRIBE.format(token=session.session_token, service="newsletter",
                                                   email="a@example.com"),
                       headers={"X-Security-Token": session.security_token, "SoapAction": "nms:subscription#Subscribe"})

    assert answer.status == 200, answer.text
    assert answer.result("Subscribe") == []  # an empty SubscribeResponse
    assert "<SubscribeResponse xmlns='urn:nms:subscription'" in answer.text
    assert subscriptions() == []
    process()
    assert subscriptions() == [("a@example.com", "newsletter", "active")]
    assert recipients()[0][1] == "a@example.com"
    assert history() == [("a@example.com", "newsletter", "subscribe", "soap")]


def test_comma_separated_service_names(soap, session):
    Service.objects.create(name="a")
    Service.objects.create(name="b")

    soap.post(DOCUMENTED_SUBSCRIBE.format(token=session.session_token, service="a,b", email="x@example.com"),
              headers={"X-Security-Token": session.security_token})
    process()

    assert [service for _, service, _ in subscriptions()] == ["a", "b"]


def unsubscribe_envelope(session, service: str, recipient: str) -> str:
    return sdk_envelope(
        "nms:subscription", "Unsubscribe",
        f'<serviceName xsi:type="xsd:string">{service}</serviceName>'
        f'<recipient xsi:type="ns:Element" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
        f"{recipient}</recipient>",
        session_token=session.session_token, security_token=session.security_token,
    )


def test_unsubscribe_removes_and_unsubscribe_without_service_denylists(soap, session):
    Service.objects.create(name="newsletter")
    add_recipient("r-1", "a@example.com")
    soap.post(DOCUMENTED_SUBSCRIBE.format(token=session.session_token, service="newsletter", email="a@example.com"),
              headers={"X-Security-Token": session.security_token})

    removed = soap.post(unsubscribe_envelope(session, "newsletter", '<recipient _key="@id" id="r-1"/>'))
    denylisted = soap.post(unsubscribe_envelope(session, "", '<recipient _key="@email" email="a@example.com"/>'))
    process()

    assert removed.status == 200 and denylisted.status == 200
    assert removed.result("Unsubscribe") == []
    assert subscriptions() == []
    assert recipients() == [("r-1", "a@example.com", 1)]
    assert [action for _, _, action, _ in history()] == ["subscribe", "unsubscribe", "denylist"]


def test_subscribe_without_a_recipient_is_a_fault_naming_it(soap, session):
    body = sdk_envelope("nms:subscription", "Subscribe", '<serviceName xsi:type="xsd:string">x</serviceName>',
                        session_token=session.session_token, security_token=session.security_token)

    answer = soap.post(body)

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultstring"].startswith("SOP-330011")
    assert "recipient" in fault["detail"]
    assert requests_state() == []


def test_subscribe_needs_the_ingest_permission(soap):
    make_user("reader", perms=())
    session = logon(soap, "reader")

    answer = soap.post(DOCUMENTED_SUBSCRIBE.format(token=session.session_token, service="x", email="a@example.com"),
                       headers={"X-Security-Token": session.security_token})

    assert answer.status == 500
    assert "staging.ingest" in answer.fault()["detail"]


def test_subscribe_without_a_session_is_refused(soap):
    answer = soap.post(DOCUMENTED_SUBSCRIBE.format(token="", service="x", email="a@example.com"))

    assert answer.fault()["faultstring"].startswith("XSV-350008")
