"""Failed logons are limited per login and per client address; a throttled attempt is refused at once,
before any password is hashed, and nobody else is affected (staging/logons.py)."""

import pytest
from django.contrib.auth.signals import user_login_failed
from django.test import RequestFactory

from campaignsite.errors import Throttled, Unauthenticated
from staging.logons import logon_authenticate
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import PASSWORD, logon_envelope, make_user

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)


def post_logon(client, login: str, password: str, *, address: str = "192.0.2.1"):
    return client.post("/nl/jsp/soaprouter.jsp", data=logon_envelope(login, password),
                       content_type="text/xml;charset=utf-8", REMOTE_ADDR=address)


def detail(answer) -> str:
    text = answer.content.decode()
    return text.partition("<detail xsi:type='xsd:string'>")[2].partition("</detail>")[0]


@pytest.fixture
def password_checks():
    """How many logons reached Django's authenticate() and failed there (each one hashed a password)."""
    failures = []

    def count(sender, credentials, **kwargs):
        failures.append(credentials.get("username"))

    user_login_failed.connect(count)
    yield failures
    user_login_failed.disconnect(count)


@pytest.fixture
def users(settings):
    # A fast hasher: these tests count password checks, they do not need each one to cost 0.5 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return make_user("operator"), make_user("other")


def test_after_five_wrong_passwords_the_login_is_refused_without_checking_the_password(client, users,
                                                                                       password_checks):
    for _ in range(5):
        assert "CST-401000 Invalid login or password." in detail(post_logon(client, "operator", "wrong"))
    assert len(password_checks) == 5

    wrong = post_logon(client, "operator", "wrong")
    right = post_logon(client, "operator", PASSWORD)

    assert len(password_checks) == 5  # neither attempt reached the password hasher
    for answer in (wrong, right):
        assert answer.status_code == 500
        assert "<faultcode>SOAP-ENV:Client</faultcode>" in answer.content.decode()
        assert detail(answer).startswith("CST-429000 Too many failed logons for the login 'operator'; "
                                         "try again in ")
        assert "Retry-After: " in detail(answer)
        assert 1 <= int(answer["Retry-After"]) <= 900


def test_another_login_from_another_address_is_unaffected(client, users):
    for _ in range(6):
        post_logon(client, "operator", "wrong")

    answer = post_logon(client, "other", PASSWORD, address="198.51.100.7")

    assert answer.status_code == 200, answer.content
    assert b"pstrSessionToken" in answer.content


def test_the_login_is_throttled_from_every_address(client, users):
    for _ in range(5):
        post_logon(client, "operator", "wrong", address="192.0.2.1")

    answer = post_logon(client, "Operator", PASSWORD, address="198.51.100.7")

    assert detail(answer).startswith("CST-429000 Too many failed logons for the login 'Operator'")


def test_an_address_guessing_many_logins_is_throttled(client, users, settings, password_checks):
    settings.LOGON_THROTTLE_PER_ADDRESS = 3
    for login in ("a", "b", "c"):
        post_logon(client, login, "guess")

    answer = post_logon(client, "operator", PASSWORD)

    assert detail(answer).startswith("CST-429000 Too many failed logons from the address 192.0.2.1")
    assert len(password_checks) == 3
    assert post_logon(client, "operator", PASSWORD, address="198.51.100.7").status_code == 200


def test_a_successful_logon_clears_its_logins_count(client, users):
    for _ in range(4):
        post_logon(client, "operator", "wrong")
    assert post_logon(client, "operator", PASSWORD).status_code == 200

    for _ in range(4):
        post_logon(client, "operator", "wrong")

    assert post_logon(client, "operator", PASSWORD).status_code == 200


def test_a_limit_of_zero_turns_the_login_counter_off(client, users, settings):
    settings.LOGON_THROTTLE_PER_LOGIN = 0
    for _ in range(8):
        post_logon(client, "operator", "wrong")

    assert post_logon(client, "operator", PASSWORD).status_code == 200


def test_the_refusal_ends_with_the_window(users, settings):
    settings.LOGON_THROTTLE_WINDOW_SECONDS = 60
    request = RequestFactory().post("/nl/jsp/soaprouter.jsp", REMOTE_ADDR="192.0.2.1")
    start = 60 * 1_000_000 + 15.0  # 15 s into a window
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            logon_authenticate(request=request, login="operator", password="wrong", now=start)

    with pytest.raises(Throttled) as caught:
        logon_authenticate(request=request, login="operator", password=PASSWORD, now=start + 44)
    assert caught.value.retry_after == 1

    user = logon_authenticate(request=request, login="operator", password=PASSWORD, now=start + 45)
    assert user.username == "operator"
