"""Create, find and revoke API tokens; REST (apitokens.authentication), SOAP, the admin and
`manage.py drf_create_token` all go through these."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apitokens.models import ApiToken
from campaignsite.errors import InvalidInput, Problem

# last_used_at is written at most this often per token, so a busy client does not turn every
# authenticated call into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@transaction.atomic(using="default")
def api_token_create(*, user, name: str = "", ttl_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns (token, key). The key exists only in this return value.

    `ttl_days` defaults to API_TOKEN_TTL_DAYS; 0 makes a token that never expires.
    """
    days = settings.API_TOKEN_TTL_DAYS if ttl_days is None else ttl_days
    if days < 0:
        raise InvalidInput("The token lifetime is invalid.", [Problem(
            "give a number of days, or 0 for a token that never expires", attribute="ttl_days", value=str(days))])
    key = secrets.token_urlsafe(32)  # 256 bits, letters, digits, '-' and '_': safe in headers and shells
    now = timezone.now()
    token = ApiToken.objects.create(user=user, name=name, digest=key_digest(key), created_at=now,
                                    expires_at=now + timedelta(days=days) if days else None)
    return token, key


def api_token_user(*, key: str):
    """The active user whose live token `key` is, or None when the key is unknown, expired or revoked
    or its user inactive."""
    key = key.strip()
    if not key:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=key_digest(key)).first()
    now = timezone.now()
    if token is None or not token.is_live(now):
        return None
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def api_tokens_revoke(*, tokens: QuerySet) -> int:
    """Revoke the live tokens among `tokens` (they stop working at the next call); returns how many.

    Already revoked tokens keep their first revocation time, so running this twice changes nothing.
    """
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())

