"""xtk:session#Logon, Logoff, GetServerTime and how later calls authenticate."""

import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.utils import timezone as dj_timezone

from apitokens.models import ApiToken
from apitokens.services import api_token_create, api_tokens_revoke
from staging.soap_sessions import SoapSession
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import PASSWORD, logon, logon_envelope, make_user, sdk_envelope

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

SESSION_TOKEN_RE = re.compile(r"^___[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def server_time(soap, session=None, *, headers=None, token=None):
    return soap.post(
        sdk_envelope("xtk:session", "GetServerTime", session_token=token if token is not None else
                     (session.session_token if session else ""),
                     security_token=session.security_token if session else ""),
        headers=headers if headers is not None else (session.headers if session else {}),
    )


def test_logon_answers_session_token_session_info_and_security_token_in_that_order(soap, operator):
    answer = soap.post(logon_envelope("operator", PASSWORD))

    assert answer.status == 200
    assert answer.body.startswith(b"<?xml version='1.0'?><SOAP-ENV:Envelope ")
    assert "<LogonResponse xmlns='urn:xtk:session' SOAP-ENV:encodingStyle=" in answer.text
    assert "xmlns:ns='urn:xtk:session'" in answer.text
    token, info, security = answer.result("Logon")
    assert [e.tag for e in (token, info, security)] == [
        "{urn:xtk:session}pstrSessionToken", "{urn:xtk:session}pSessionInfo", "{urn:xtk:session}pstrSecurityToken"]
    assert SESSION_TOKEN_RE.match(token.text)
    assert security.text.startswith("@") and len(security.text) > 20
    assert re.search(r"<pstrSessionToken xsi:type='xsd:string'>___", answer.text)
    assert "<pSessionInfo xsi:type='ns:Element' SOAP-ENV:encodingStyle='http://xml.apache.org/xml-soap/literalxml'>" \
        in answer.text
    assert answer.headers["content-type"] == "text/xml;charset=utf-8"


def test_logon_session_info_carries_server_info_and_user_info(soap, operator):
    session = logon(soap, "operator")

    (session_info,) = list(session.session_info)
    server_info = session_info.find("{*}serverInfo")
    user_info = session_info.find("{*}userInfo")
    assert server_info.get("majNumber") == "8" and server_info.get("buildNumber")
    assert server_info.get("sessionTimeOut") == "86400"
    assert user_info.get("login") == "operator"
    assert user_info.get("loginId") == str(operator.pk)
    assert user_info.get("timezone") and user_info.get("instanceLocale") == "en"
    assert {e.get("right") for e in user_info.findall("{*}login-right")} == {"ingest", "write_cloud"}
    assert user_info.find("{*}installed-package").get("namespace") == "nms"


def test_logon_stores_only_digests_of_the_tokens(soap, operator):
    session = logon(soap, "operator")

    stored = SoapSession.objects.get()
    assert stored.session_digest == hashlib.sha256(session.session_token.encode()).hexdigest()
    assert stored.security_digest == hashlib.sha256(session.security_token.encode()).hexdigest()
    assert session.session_token not in (stored.session_digest, stored.security_digest)
    assert timedelta(seconds=86390) < stored.expires_at - dj_timezone.now() <= timedelta(seconds=86400)


@pytest.mark.parametrize("login, password", [("operator", "wrong"), ("nobody", PASSWORD), ("", "")])
def test_logon_with_wrong_login_or_password_is_a_client_fault_that_does_not_say_which(soap, operator, login, password):
    answer = soap.post(logon_envelope(login, password))

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"] == "SOP-330011 Error while executing the method 'Logon' of service 'xtk:session'."
    assert fault["detail"] == "CST-401000 Invalid login or password."
    assert not SoapSession.objects.exists()


def test_logon_of_an_inactive_user_is_refused(soap):
    make_user("retired", active=False)

    answer = soap.post(logon_envelope("retired", PASSWORD))

    assert answer.status == 500
    assert answer.fault()["detail"] == "CST-401000 Invalid login or password."


def test_logon_accepts_the_parameter_names_of_adobes_soap_example(soap, operator):
    # reference §5.3: <urn:strLogin>, <urn:strPassword>, <urn:elemParameters>, prefixed like the seeds.
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">'
        "<soapenv:Header/><soapenv:Body><urn:Logon><urn:sessiontoken></urn:sessiontoken>"
        f"<urn:strLogin>operator</urn:strLogin><urn:strPassword>{PASSWORD}</urn:strPassword>"
        "<urn:elemParameters></urn:elemParameters></urn:Logon></soapenv:Body></soapenv:Envelope>"
    )

    answer = soap.post(body)

    assert answer.status == 200
    assert SESSION_TOKEN_RE.match(answer.result("Logon")[0].text)


def test_get_server_time_answers_a_datetime(soap, session):
    before = datetime.now(timezone.utc).replace(microsecond=0)

    answer = server_time(soap, session)

    assert answer.status == 200
    (value,) = answer.result("GetServerTime")
    assert "<pdtServerTime xsi:type='xsd:dateTime'>" in answer.text
    assert "<GetServerTimeResponse xmlns='urn:xtk:session'" in answer.text
    parsed = datetime.strptime(value.text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before - timedelta(seconds=1) <= parsed <= datetime.now(timezone.utc)


def test_session_token_is_accepted_from_the_cookie_or_the_x_session_token_header(soap, session):
    by_cookie = server_time(soap, token="", headers={"Cookie": f"__sessiontoken={session.session_token}",
                                                     "X-Security-Token": session.security_token})
    by_header = server_time(soap, token="", headers={"X-Session-Token": session.session_token,
                                                     "X-Security-Token": session.security_token})

    assert by_cookie.status == 200, by_cookie.text
    assert by_header.status == 200, by_header.text


def test_security_token_is_accepted_from_the_soap_header(soap, session):
    # sdk_envelope repeats the security token in <SOAP-ENV:Header><X-Security-Token>.
    answer = server_time(soap, session, headers={})

    assert answer.status == 200, answer.text


def test_a_call_without_security_token_is_told_to_send_x_security_token(soap, session):
    body = sdk_envelope("xtk:session", "GetServerTime", session_token=session.session_token)  # empty security token

    answer = soap.post(body, headers={"X-Session-Token": session.session_token})

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"].startswith("CST-401002 ")
    assert "X-Security-Token" in fault["faultstring"]


def test_session_token_only_setting_accepts_a_call_without_security_token(soap, session, settings):
    settings.SOAP_SESSION_TOKEN_ONLY = True
    body = sdk_envelope("xtk:session", "GetServerTime", session_token=session.session_token)

    answer = soap.post(body)

    assert answer.status == 200, answer.text


@pytest.mark.parametrize("forged", [
    "___00000000-0000-0000-0000-000000000000",
    "bogus",
])
def test_a_forged_session_token_is_refused_as_expired_or_invalid(soap, session, forged):
    answer = server_time(soap, token=forged, headers={"X-Security-Token": session.security_token})

    assert answer.status == 500
    assert answer.fault()["faultstring"] == "XSV-350008 Session has expired or is invalid. Please reconnect."


def test_a_security_token_of_another_session_is_refused(soap, session):
    other = logon(soap, make_user("second").username)

    answer = server_time(soap, token=session.session_token, headers={"X-Security-Token": other.security_token})

    assert answer.status == 500
    assert answer.fault()["faultstring"].startswith("XSV-350008 ")
    assert "security token" in answer.fault()["detail"]


def test_a_call_without_any_credentials_is_refused(soap, operator):
    answer = server_time(soap, headers={})

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultstring"].startswith("XSV-350008 ")
    assert "Logon" in fault["detail"]


def test_an_expired_session_is_refused(soap, session):
    SoapSession.objects.update(expires_at=dj_timezone.now() - timedelta(seconds=1))

    answer = server_time(soap, session)

    assert answer.status == 500
    assert "XSV-350008" in answer.text


def test_the_session_ttl_comes_from_settings(soap, operator, settings):
    settings.SOAP_SESSION_TTL_SECONDS = 60

    session = logon(soap, "operator")

    (session_info,) = list(session.session_info)
    assert session_info.find("{*}serverInfo").get("sessionTimeOut") == "60"
    assert SoapSession.objects.get().expires_at - dj_timezone.now() <= timedelta(seconds=60)


def test_a_session_of_a_user_made_inactive_stops_working(soap, session, operator):
    operator.is_active = False
    operator.save()

    answer = server_time(soap, session)

    assert "XSV-350008" in answer.text


def test_logoff_revokes_the_session(soap, session):
    answer = soap.post(sdk_envelope("xtk:session", "Logoff", session_token=session.session_token,
                                    security_token=session.security_token), headers=session.headers)

    assert answer.status == 200
    assert answer.body == (
        b"<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
        b"xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:xtk:session' "
        b"xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body>"
        b"<LogoffResponse xmlns='urn:xtk:session' SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>"
        b"</LogoffResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    assert SoapSession.objects.get().revoked_at is not None
    assert "XSV-350008" in server_time(soap, session).text


# A process reuses a session it has seen for a few seconds (staging.soap_sessions.CACHE_SECONDS), yet
# checks on every call that it is still live: another process's Logoff, an expiry or a deactivation
# must stop a session the server holds in its cache at the very next call.

def test_a_cached_session_revoked_elsewhere_is_refused_at_the_next_call(soap, session):
    assert server_time(soap, session).status == 200
    SoapSession.objects.update(revoked_at=dj_timezone.now())  # what Logoff in another server process writes

    assert "XSV-350008" in server_time(soap, session).text


def test_a_cached_session_that_expires_is_refused_at_the_next_call(soap, session):
    assert server_time(soap, session).status == 200
    SoapSession.objects.update(expires_at=dj_timezone.now() - timedelta(seconds=1))

    assert "XSV-350008" in server_time(soap, session).text


def test_a_cached_session_of_a_user_made_inactive_is_refused_at_the_next_call(soap, session, operator):
    assert server_time(soap, session).status == 200
    operator.is_active = False
    operator.save()

    assert "XSV-350008" in server_time(soap, session).text


def test_expired_sessions_are_purged_at_the_next_logon(soap, session, operator):
    SoapSession.objects.update(expires_at=dj_timezone.now() - timedelta(seconds=1))

    fresh = logon(soap, "operator")

    assert SoapSession.objects.count() == 1
    assert server_time(soap, fresh).status == 200


def test_bearer_api_token_with_an_empty_session_token_is_accepted(soap, operator):
    key = api_token_create(user=operator)[1]

    answer = server_time(soap, headers={"Authorization": f"Bearer {key}"})

    assert answer.status == 200, answer.text


def _refused_as_unknown_api_token(answer) -> bool:
    return (answer.status == 500 and answer.fault()["faultstring"].startswith("XSV-350008 ")
            and "API token" in answer.fault()["detail"])


def test_an_expired_bearer_token_is_refused(soap, operator):
    token, key = api_token_create(user=operator)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=dj_timezone.now() - timedelta(seconds=1))

    assert _refused_as_unknown_api_token(server_time(soap, headers={"Authorization": f"Bearer {key}"}))


def test_a_revoked_bearer_token_is_refused(soap, operator):
    token, key = api_token_create(user=operator)
    assert server_time(soap, headers={"Authorization": f"Bearer {key}"}).status == 200

    api_tokens_revoke(tokens=ApiToken.objects.filter(pk=token.pk))

    assert _refused_as_unknown_api_token(server_time(soap, headers={"Authorization": f"Bearer {key}"}))


def test_the_bearer_token_of_an_inactive_user_is_refused(soap, operator):
    key = api_token_create(user=operator)[1]
    operator.is_active = False
    operator.save()

    assert _refused_as_unknown_api_token(server_time(soap, headers={"Authorization": f"Bearer {key}"}))


def test_an_unknown_bearer_token_is_refused(soap, operator):
    answer = server_time(soap, headers={"Authorization": "Bearer 0123456789abcdef"})

    assert answer.status == 500
    assert answer.fault()["faultstring"].startswith("XSV-350008 ")
    assert "API token" in answer.fault()["detail"]
