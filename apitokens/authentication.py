"""DRF authentication by API token, and how drf-spectacular documents it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from apitokens.services import api_token_user

SCHEMES = (b"token", b"bearer")


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>` (DRF's usual form) or `Authorization: Bearer <key>` (OAuth's)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None  # no token sent: the session cookie (or nothing) decides
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be 'Token <key>' or 'Bearer <key>': one key, without spaces.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API token has characters no key has.") from None
        user = api_token_user(key=key)
        if user is None:
            raise exceptions.AuthenticationFailed(
                "The API token is unknown, expired or revoked, or its user is inactive; create a new one "
                "(admin › API tokens, or manage.py drf_create_token <username>).")
        return user, None

    def authenticate_header(self, request):
        # Makes DRF answer 401 (with this challenge) rather than 403 when credentials are missing.
        return 'Token realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (admin › API tokens, or `manage.py drf_create_token <username>`), "
                           "sent as `Authorization: Bearer <key>` or `Authorization: Token <key>`.",
        }
