"""`Idempotency-Key` for REST writes: a retried call returns the first answer without writing twice.

The answer is stored in the same local-database transaction as the rows it acknowledges, so either
both exist or neither does; a unique constraint on (user, key, endpoint) settles two concurrent
retries: the loser rolls back and replays the winner's answer.
"""

import hashlib
from typing import Callable

from django.conf import settings
from django.db import IntegrityError, models, transaction

from campaignsite.errors import Conflict, InvalidInput, Problem

MAX_KEY_LENGTH = 255


class IdempotencyRecord(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    endpoint = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        app_label = "staging"
        constraints = [
            models.UniqueConstraint(fields=["user", "key", "endpoint"], name="staging_idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key}"


def request_hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord, digest: str) -> tuple[int, dict, bool]:
    if record.request_hash != digest:
        raise Conflict(
            "This Idempotency-Key was already used with a different request.",
            [Problem("send a new Idempotency-Key for a new request; reuse a key only to retry the same request",
                     attribute="Idempotency-Key", value=record.key)],
        )
    return record.status, record.response, True


def idempotent_call(*, user, key: str, endpoint: str, digest: str,
                    call: Callable[[], tuple[int, dict]]) -> tuple[int, dict, bool]:
    """(status, body, replayed): the stored answer for (user, key, endpoint), or `call()`'s answer
    stored with it in one transaction. The same key with another request digest is a Conflict."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput("The Idempotency-Key header is invalid.",
                           [Problem(f"use 1 to {MAX_KEY_LENGTH} characters, e.g. a UUID", attribute="Idempotency-Key",
                                    value=key)])
    lookup = dict(user=user, key=key, endpoint=endpoint)
    existing = IdempotencyRecord.objects.filter(**lookup).first()
    if existing is not None:
        return _replay(existing, digest)
    try:
        with transaction.atomic(using="default"):
            status, body = call()
            IdempotencyRecord.objects.create(**lookup, request_hash=digest, status=status, response=body)
    except IntegrityError:
        # A concurrent retry with the same key committed first; its rows stand, ours rolled back.
        return _replay(IdempotencyRecord.objects.get(**lookup), digest)
    return status, body, False
