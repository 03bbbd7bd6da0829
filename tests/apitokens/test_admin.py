"""API tokens in the admin: the key is shown once at creation, never listed; revoking asks first."""

import re

import pytest
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from apitokens.services import api_token_create

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/apitokens/apitoken/"


def works(key: str) -> bool:
    return APIClient().get("/api/v1/schemas/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_adding_a_token_shows_its_key_once(admin_client, reader):
    answer = admin_client.post(f"{CHANGELIST}add/", {"user": reader.pk, "name": "crm", "ttl_days": 7}, follow=True)

    page = answer.content.decode()
    key = re.search(r"The key of crm of reader: (\S+) — copy it now, it cannot be shown again", page).group(1)
    assert works(key)
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (reader, "crm")
    assert key not in admin_client.get(answer.redirect_chain[-1][0]).content.decode()


def test_a_negative_lifetime_is_refused_by_the_form(admin_client, reader):
    answer = admin_client.post(f"{CHANGELIST}add/", {"user": reader.pk, "name": "crm", "ttl_days": -1})

    assert answer.status_code == 200
    assert "greater than or equal to 0" in answer.content.decode()
    assert not ApiToken.objects.exists()


def test_the_list_shows_the_tokens_without_their_secret(admin_client, reader):
    token, key = api_token_create(user=reader, name="nightly export")

    page = admin_client.get(CHANGELIST).content.decode()

    assert "nightly export" in page and "reader" in page
    assert key not in page and token.digest not in page


def test_revoking_asks_for_confirmation_then_the_key_stops_working(admin_client, reader):
    token, key = api_token_create(user=reader, name="laptop")
    action = {"action": "revoke", "_selected_action": [token.pk]}

    confirmation = admin_client.post(CHANGELIST, action)

    assert confirmation.status_code == 200
    assert "Revoke API tokens?" in confirmation.content.decode()
    assert works(key)

    done = admin_client.post(CHANGELIST, {**action, "confirm": "yes"})

    assert done.status_code == 302
    assert not works(key)
    token.refresh_from_db()
    assert token.revoked_at is not None
