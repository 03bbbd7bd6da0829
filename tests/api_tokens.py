"""The one place the REST tests make an API token, so a change of token storage touches only this."""

from rest_framework.authtoken.models import Token


def api_token(user) -> str:
    """A new API token for `user`, as sent in `Authorization: Token <key>`."""
    return Token.objects.create(user=user).key
