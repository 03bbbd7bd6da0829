"""API tokens over real HTTP on the REST API: both header forms, and every way a token stops working."""

from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from apitokens.models import ApiToken
from apitokens.services import api_token_create, api_tokens_revoke
from tests.apitokens.conftest import SCHEMAS, rest_get
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def test_the_database_holds_a_digest_not_the_key(reader):
    token, key = api_token_create(user=reader, name="crm export")

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT * FROM apitokens_apitoken")
        stored = cursor.fetchall()
    assert len(stored) == 1
    assert not any(key in str(value) for value in stored[0])
    assert len(token.digest) == 64 and token.digest != key


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer"])
def test_a_token_authenticates_in_either_header_form(live_server, reader, scheme):
    _, key = api_token_create(user=reader)

    status, body, _ = rest_get(live_server.url, f"{scheme} {key}")

    assert status == 200, body
    assert isinstance(body, list)  # the schema list, which only an authenticated reader gets


def test_a_new_token_expires_after_the_configured_days(reader, settings):
    settings.API_TOKEN_TTL_DAYS = 30

    token, _ = api_token_create(user=reader)
    forever, _ = api_token_create(user=reader, ttl_days=0)

    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert forever.expires_at is None


def test_use_is_recorded(live_server, reader):
    token, key = api_token_create(user=reader)

    assert rest_get(live_server.url, f"Token {key}")[0] == 200

    token.refresh_from_db()
    assert token.last_used_at is not None


def test_an_unknown_token_is_401_with_the_error_shape_and_the_next_good_call_succeeds(live_server, reader):
    _, key = api_token_create(user=reader)

    status, body, headers = rest_get(live_server.url, "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b")

    assert status == 401
    assert body["code"] == "CST-401000"
    assert "unknown, expired or revoked" in body["error"]
    assert body["problems"] == []
    assert headers["WWW-Authenticate"].startswith("Token")
    assert rest_get(live_server.url, f"Token {key}")[0] == 200


def test_an_expired_token_is_refused(live_server, reader):
    token, key = api_token_create(user=reader)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    status, body, _ = rest_get(live_server.url, f"Bearer {key}")

    assert status == 401
    assert body["code"] == "CST-401000"


def test_a_token_that_never_expires_keeps_working(live_server, reader):
    _, key = api_token_create(user=reader, ttl_days=0)

    assert rest_get(live_server.url, f"Token {key}")[0] == 200


def test_a_revoked_token_is_refused_and_the_users_other_tokens_still_work(live_server, reader):
    revoked, revoked_key = api_token_create(user=reader, name="old laptop")
    _, kept_key = api_token_create(user=reader, name="server")
    assert rest_get(live_server.url, f"Token {revoked_key}")[0] == 200

    assert api_tokens_revoke(tokens=ApiToken.objects.filter(pk=revoked.pk)) == 1

    assert rest_get(live_server.url, f"Token {revoked_key}")[0] == 401
    assert rest_get(live_server.url, f"Token {kept_key}")[0] == 200


def test_revoking_twice_keeps_the_first_revocation_time(reader):
    token, _ = api_token_create(user=reader)
    api_tokens_revoke(tokens=ApiToken.objects.filter(pk=token.pk))
    token.refresh_from_db()
    first = token.revoked_at

    assert api_tokens_revoke(tokens=ApiToken.objects.filter(pk=token.pk)) == 0
    token.refresh_from_db()
    assert token.revoked_at == first


def test_the_token_of_an_inactive_user_is_refused(live_server, reader):
    _, key = api_token_create(user=reader)
    reader.is_active = False
    reader.save()

    assert rest_get(live_server.url, f"Token {key}")[0] == 401


@pytest.mark.parametrize("header", ["Token", "Token a b", "Bearer  "])
def test_a_malformed_authorization_header_is_401_saying_what_is_expected(live_server, reader, header):
    status, body, _ = rest_get(live_server.url, header)

    assert status == 401
    assert body["code"] == "CST-401000"


def test_without_credentials_the_401_has_the_error_shape_too(live_server):
    status, body, _ = rest_get(live_server.url, "")

    assert status == 401
    assert body["code"] == "CST-401000"
    assert "credentials" in body["error"]


def test_the_openapi_document_describes_the_token_scheme(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    scheme = schema["components"]["securitySchemes"]["apiToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert {"apiToken": []} in schema["paths"][SCHEMAS]["get"]["security"]
