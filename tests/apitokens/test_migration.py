"""The data migration that turns DRF's plaintext `authtoken_token` rows into hashed API tokens."""

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apitokens.models import ApiToken
from apitokens.services import key_digest
from tests.apitokens.conftest import rest_get
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

BEFORE = ("apitokens", "0001_initial")
AFTER = ("apitokens", "0002_convert_authtoken_tokens")
DRF_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's shape: 40 hex digits


def migrate(target) -> None:
    MigrationExecutor(connections["default"]).migrate([target])


def create_authtoken_table(rows) -> None:
    """The table `rest_framework.authtoken` creates, with its rows (key, created, user id)."""
    connection = connections["default"]
    created_type = "timestamp with time zone" if connection.vendor == "postgresql" else "datetime"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, created {created_type} '
                       "NOT NULL, user_id integer NOT NULL UNIQUE)")
        for key, created, user_id in rows:
            cursor.execute('INSERT INTO authtoken_token ("key", created, user_id) VALUES (%s, %s, %s)',
                           [key, connection.ops.adapt_datetimefield_value(created), user_id])


def authtoken_rows() -> list:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT * FROM authtoken_token")
        return cursor.fetchall()


def test_a_plaintext_drf_token_keeps_working_hashed_and_its_plaintext_is_deleted(live_server, reader, settings):
    settings.API_TOKEN_TTL_DAYS = 90
    migrate(BEFORE)
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)
    create_authtoken_table([(DRF_KEY, created, reader.pk)])

    migrate(AFTER)

    token = ApiToken.objects.get()
    assert (token.user, token.digest, token.created_at) == (reader, key_digest(DRF_KEY), created)
    assert timedelta(days=89, hours=23) < token.expires_at - timezone.now() <= timedelta(days=90)
    assert authtoken_rows() == []
    assert rest_get(live_server.url, f"Token {DRF_KEY}")[0] == 200


def test_without_an_authtoken_table_the_migration_does_nothing(reader):
    migrate(BEFORE)

    migrate(AFTER)

    assert not ApiToken.objects.exists()
