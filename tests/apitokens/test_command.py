"""manage.py drf_create_token: prints a usable key once; --ttl-days, --revoke and --reset."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apitokens.models import ApiToken
from tests.apitokens.conftest import rest_get
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def create_token(*args) -> tuple[str, str]:
    """(stdout, stderr) of `manage.py drf_create_token ARGS`."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("drf_create_token", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_the_command_prints_a_usable_key_once(live_server, reader):
    stdout, stderr = create_token("reader", "--name", "ci")

    # The README takes the third word: `awk '{print $3}'`.
    assert stdout.startswith("Generated token ") and stdout.rstrip().endswith(" for user reader")
    key = stdout.split()[2]
    assert "cannot be shown again" in stderr
    assert rest_get(live_server.url, f"Token {key}")[0] == 200
    token = ApiToken.objects.get(user=reader)
    assert token.name == "ci" and key not in token.digest


def test_each_run_makes_a_new_token(reader):
    first = create_token("reader")[0].split()[2]
    second = create_token("reader")[0].split()[2]

    assert first != second
    assert ApiToken.objects.filter(user=reader).count() == 2


def test_ttl_days_sets_the_expiry_and_zero_means_never(reader):
    create_token("reader", "--ttl-days", "2", "--name", "short")
    create_token("reader", "--ttl-days", "0", "--name", "forever")

    short = ApiToken.objects.get(name="short")
    assert 1 < (short.expires_at - timezone.now()).total_seconds() / 86400 <= 2
    assert ApiToken.objects.get(name="forever").expires_at is None


def test_revoke_stops_every_token_of_the_user(live_server, reader):
    key = create_token("reader")[0].split()[2]

    stdout, _ = create_token("reader", "--revoke")

    assert stdout.strip() == "Revoked 1 token(s) of user reader"
    assert rest_get(live_server.url, f"Token {key}")[0] == 401
    assert ApiToken.objects.filter(user=reader, revoked_at__isnull=True).count() == 0


def test_reset_revokes_the_old_tokens_and_prints_a_new_one(live_server, reader):
    old = create_token("reader")[0].split()[2]

    new = create_token("reader", "--reset")[0].split()[2]

    assert rest_get(live_server.url, f"Token {old}")[0] == 401
    assert rest_get(live_server.url, f"Token {new}")[0] == 200


def test_an_unknown_user_is_an_error_naming_it():
    with pytest.raises(CommandError, match="There is no user 'ghost'"):
        call_command("drf_create_token", "ghost")


def test_a_negative_lifetime_is_refused_before_anything_is_written(reader):
    with pytest.raises(CommandError, match="'-1' is not a number of days"):
        call_command("drf_create_token", "reader", "--ttl-days", "-1")

    assert not ApiToken.objects.exists()
