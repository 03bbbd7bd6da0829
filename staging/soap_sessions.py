"""SOAP sessions opened by `xtk:session#Logon`: the model and the three services that use it.

Only digests of the tokens are stored, so a copy of the database does not hand out live sessions.
A session token is `___` + an uppercase UUID and a security token `@` + random text, the shapes
Campaign issues (reference/campaign-v8-behaviour.md §5.3); both are 122+ bits of randomness, so a
plain SHA-256 (no salt, no stretching) is enough and lets a lookup use an index.
"""

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SoapSession(models.Model):
    """One Logon: who, until when, and whether Logoff revoked it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_digest = models.CharField(max_length=64, unique=True)
    security_digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "SOAP session"

    def __str__(self) -> str:
        return f"SOAP session of {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now() and self.user.is_active


@transaction.atomic(using="default")
def soap_session_open(*, user) -> tuple[SoapSession, str, str]:
    """Open a session for `user`; returns (session, session token, security token).

    The tokens exist only in this return value. Expired sessions are purged here, so the table
    stays as small as the number of live sessions without a scheduled job.
    """
    now = timezone.now()
    SoapSession.objects.filter(expires_at__lt=now).delete()
    session_token = f"___{str(uuid.uuid4()).upper()}"
    security_token = f"@{secrets.token_urlsafe(32)}=="
    session = SoapSession.objects.create(
        user=user,
        session_digest=token_digest(session_token),
        security_digest=token_digest(security_token),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.SOAP_SESSION_TTL_SECONDS),
    )
    return session, session_token, security_token


def soap_session_find(*, session_token: str) -> SoapSession | None:
    """The live session of `session_token`, or None when it is unknown, expired, revoked or its user inactive."""
    if not session_token:
        return None
    session = (
        SoapSession.objects.select_related("user").filter(session_digest=token_digest(session_token)).first()
    )
    if session is None or not session.is_live:
        return None
    return session


def security_token_matches(session: SoapSession, security_token: str) -> bool:
    return hmac.compare_digest(session.security_digest, token_digest(security_token))


def soap_session_revoke(*, session: SoapSession) -> None:
    """Logoff: the session's tokens stop working at once."""
    SoapSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
