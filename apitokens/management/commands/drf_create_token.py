"""manage.py drf_create_token USERNAME: a new API token, printed once (DRF's command, kept by name)."""

import argparse

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apitokens.models import ApiToken
from apitokens.services import api_token_create, api_tokens_revoke


def _days(raw: str) -> int:
    try:
        days = int(raw)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of days (0 = never expires)")
    return days


class Command(BaseCommand):
    help = ("Create an API token for a user and print it; only its digest is stored, so it cannot be shown "
            "again. --revoke revokes the user's tokens instead; -r/--reset revokes them, then creates one.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for (shown in the admin)")
        parser.add_argument("--ttl-days", type=_days, default=None,
                            help="days until the token expires; 0 = never (default: API_TOKEN_TTL_DAYS)")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--revoke", action="store_true", help="revoke all the user's tokens, create none")
        group.add_argument("-r", "--reset", action="store_true",
                           help="revoke all the user's tokens, then create a new one")

    def handle(self, *args, username, name, ttl_days, revoke, reset, **options):
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"There is no user {username!r}; create it first (manage.py createsuperuser "
                               "or the admin).") from None
        with transaction.atomic(using="default"):  # --reset: the old tokens stay if the new one fails
            if revoke or reset:
                count = api_tokens_revoke(tokens=ApiToken.objects.filter(user=user))
                if revoke:
                    self.stdout.write(f"Revoked {count} token(s) of user {username}")
                    return
            token, key = api_token_create(user=user, name=name, ttl_days=ttl_days)
        # The README reads the key as the third word of this line: keep its shape.
        self.stdout.write(f"Generated token {key} for user {username}")
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stderr.write(f"The token {expiry}; copy it now, it cannot be shown again.")
