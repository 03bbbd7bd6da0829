"""The one place the REST tests make an API token, so a change of token storage touches only this."""

from apitokens.services import api_token_create


def api_token(user) -> str:
    """A new API token for `user`, as sent in `Authorization: Token <key>` (or `Bearer`)."""
    return api_token_create(user=user)[1]
