"""SOAP sessions opened by `xtk:session#Logon`: the model and the three services that use it.

Only digests of the tokens are stored, so a copy of the database does not hand out live sessions.
A session token is `___` + an uppercase UUID and a security token `@` + random text, the shapes
Campaign issues (reference/campaign-v8-behaviour.md §5.3); both are 122+ bits of randomness, so a
plain SHA-256 (no salt, no stretching) is enough and lets a lookup use an index.

Each process keeps the sessions it has seen (with their user) for `CACHE_SECONDS`, so a call does not
pay for an ORM query with a join, nor a non-superuser for its permission queries; every call still
checks with one fixed statement that the session is neither revoked nor expired and that its user is
active, so Logoff, expiry and deactivation take effect at once in every process (docs/soap.md).
"""

import functools
import hashlib
import hmac
import secrets
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, models, transaction
from django.utils import timezone

# How long a process reuses a session row and its user object (with the permissions Django caches on
# it): a change of the user's permissions or superuser flag reaches a session within this delay.
CACHE_SECONDS = 10
CACHE_MAX_SESSIONS = 1000  # per process; past this the cache starts over


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


_cache: dict[str, tuple[float, SoapSession]] = {}  # session digest -> (reuse until, session with its user)


def soap_session_find(*, session_token: str) -> SoapSession | None:
    """The live session of `session_token`, or None when it is unknown, expired, revoked or its user inactive."""
    if not session_token:
        return None
    digest = token_digest(session_token)
    now = time.monotonic()
    reuse_until, session = _cache.get(digest, (0.0, None))
    if reuse_until <= now:
        session = SoapSession.objects.select_related("user").filter(session_digest=digest).first()
        if session is None or not session.is_live:
            _cache.pop(digest, None)
            return None
        if len(_cache) >= CACHE_MAX_SESSIONS:
            _cache.clear()
        _cache[digest] = (now + CACHE_SECONDS, session)
    elif not _still_live(session):
        _cache.pop(digest, None)
        return None
    return session


def _still_live(session: SoapSession) -> bool:
    """Whether the session row is still unrevoked and unexpired and its user active, read afresh."""
    connection = connections[SoapSession.objects.db]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_liveness_sql(connection.alias), [session.pk, session.session_digest, now, True])
        return cursor.fetchone() is not None


@functools.cache
def _liveness_sql(alias: str) -> str:
    # Written once per database: building the same query with the ORM cost ten times more than running it.
    quote = connections[alias].ops.quote_name
    users = get_user_model()._meta
    return (
        f"SELECT 1 FROM {quote(SoapSession._meta.db_table)} s JOIN {quote(users.db_table)} u "
        f"ON u.{quote(users.pk.column)} = s.user_id "
        f"WHERE s.id = %s AND s.session_digest = %s AND s.revoked_at IS NULL AND s.expires_at > %s "
        f"AND u.{quote(users.get_field('is_active').column)} = %s"
    )


def security_token_matches(session: SoapSession, security_token: str) -> bool:
    return hmac.compare_digest(session.security_digest, token_digest(security_token))


def soap_session_revoke(*, session: SoapSession) -> None:
    """Logoff: the session's tokens stop working at once (other processes see it at their next check)."""
    _cache.pop(session.session_digest, None)
    SoapSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
