"""The logon modes of Adobe's SDK besides Logon: BearerTokenLogon, an IMS-style bearer on every call,
"login/password" as the session token (SOAP_ALLOW_USER_PASSWORD), and GetUserInfo."""

import pytest
from lxml import etree
from tests.api_tokens import api_token

from staging.soap_sessions import SoapSession
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import PASSWORD, make_user, sdk_envelope

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def bearer_token_logon(soap, token: str):
    return soap.post(sdk_envelope("xtk:session", "BearerTokenLogon",
                                  f'<bearerToken xsi:type="xsd:string">{token}</bearerToken>'))


def user_info(soap, *, token: str = "", security: str = "", headers=None):
    return soap.post(sdk_envelope("xtk:session", "GetUserInfo", session_token=token, security_token=security),
                     headers=headers or {})


def test_bearer_token_logon_answers_like_logon_and_opens_a_session(soap, operator):
    key = api_token(operator)

    answer = bearer_token_logon(soap, key)

    assert answer.status == 200, answer.text
    assert "<BearerTokenLogonResponse xmlns='urn:xtk:session'" in answer.text
    session_token, info, security_token = answer.result("BearerTokenLogon")
    assert session_token.text.startswith("___") and security_token.text.startswith("@")
    (session_info,) = list(info)
    assert session_info.find("{*}userInfo").get("login") == operator.username
    assert session_info.find("{*}serverInfo") is not None
    assert SoapSession.objects.filter(user=operator).count() == 1
    # The pair works like Logon's.
    later = user_info(soap, token=session_token.text, security=security_token.text,
                      headers={"X-Security-Token": security_token.text})
    assert later.status == 200, later.text


@pytest.mark.parametrize("forged", ["0123456789abcdef", "", "' OR 1=1 --"])
def test_bearer_token_logon_with_a_forged_token_is_refused_and_opens_nothing(soap, operator, forged):
    api_token(operator)

    answer = bearer_token_logon(soap, forged)

    assert answer.status == 500
    assert "Invalid bearer token" in answer.fault()["detail"]
    assert not SoapSession.objects.exists()


def test_bearer_token_logon_of_an_inactive_user_is_refused(soap):
    user = make_user("gone", active=False)
    key = api_token(user)

    assert bearer_token_logon(soap, key).status == 500


def test_get_user_info_answers_the_user_info_of_logon(soap, session, operator):
    answer = user_info(soap, token=session.session_token, security=session.security_token, headers=session.headers)

    assert answer.status == 200, answer.text
    (element,) = answer.result("GetUserInfo")
    assert "<pUserInfo xsi:type='ns:Element'" in answer.text
    (info,) = list(element)
    assert (etree.QName(info).localname, info.get("login"), info.get("loginId")) == (
        "userInfo", operator.username, str(operator.pk))
    assert {r.get("right") for r in info.findall("{*}login-right")} == {"ingest", "write_cloud"}


def test_ims_style_bearer_with_an_empty_session_token_reaches_any_method(soap, operator):
    key = api_token(operator)

    answer = user_info(soap, headers={"Authorization": f"Bearer {key}"})

    assert answer.status == 200, answer.text
    assert list(answer.result("GetUserInfo")[0])[0].get("login") == operator.username


def test_user_password_session_token_is_refused_by_default_saying_how_to_enable_it(soap, operator):
    answer = user_info(soap, token=f"{operator.username}/{PASSWORD}")

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultstring"].startswith("CST-401003 ")
    assert "SOAP_ALLOW_USER_PASSWORD=1" in fault["detail"]


def test_user_password_session_token_is_accepted_when_allowed(soap, operator, settings):
    settings.SOAP_ALLOW_USER_PASSWORD = True

    answer = user_info(soap, token=f"{operator.username}/{PASSWORD}")

    assert answer.status == 200, answer.text
    assert list(answer.result("GetUserInfo")[0])[0].get("login") == operator.username
    assert not SoapSession.objects.exists()  # no session is opened: every call carries the password


@pytest.mark.parametrize("token", ["operator/wrong", "nobody/x", "/", "operator/"])
def test_user_password_session_token_with_wrong_credentials_is_an_invalid_session(soap, operator, settings, token):
    settings.SOAP_ALLOW_USER_PASSWORD = True

    answer = user_info(soap, token=token)

    assert answer.status == 500
    assert answer.fault()["faultstring"].startswith("XSV-350008 ")
    # The next good call on the same server still works.
    assert user_info(soap, token=f"{operator.username}/{PASSWORD}").status == 200


def test_user_password_session_token_of_an_inactive_user_is_refused(soap, settings):
    settings.SOAP_ALLOW_USER_PASSWORD = True
    make_user("asleep", active=False)

    assert user_info(soap, token=f"asleep/{PASSWORD}").fault()["faultstring"].startswith("XSV-350008 ")
