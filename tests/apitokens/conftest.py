"""A user allowed to list schemas, and a REST GET over a real socket with an Authorization header."""

import json
import urllib.error
import urllib.request

import pytest
from django.contrib.auth.models import Permission, User

SCHEMAS = "/api/v1/schemas/"


@pytest.fixture
def reader():
    user = User.objects.create_user("reader", password="R3ader-pass;word")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="staging", codename="view_schema"))
    return user


def rest_get(base_url: str, authorization: str, path: str = SCHEMAS) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of GET `path` with `Authorization: <authorization>`."""
    request = urllib.request.Request(f"{base_url}{path}", headers={"Authorization": authorization,
                                                                   "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)
