"""Fixtures for subscription tests: the built-in schemas with their tables, services, recipients in
the cloud, users with permissions, and helpers that read what a user would look at."""

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services as staging_services
from staging.models import SyncRun
from subscriptions import services
from subscriptions.models import Service, Subscription, SubscriptionHistory

PASSWORD = "Subs-pass;word"


def execute(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def builtins():
    """nms:recipient, nms:subscriptionRcp and nms:appSubscriptionRcp with their tables applied."""
    return {schema.schema_id: schema for schema in staging_services.builtin_schemas_load(user=SYSTEM)}


def make_user(username: str, *perms: str) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    for perm in perms:
        app_label, _, codename = perm.partition(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh instance: permission cache empty


@pytest.fixture
def requester():
    return make_user("webform", "staging.ingest")


@pytest.fixture
def newsletter():
    return Service.objects.create(name="newsletter", label="Newsletter")


def add_recipient(recipient_id: str, email: str, *, denylisted: int = 0) -> None:
    execute("cloud", "INSERT INTO NmsRecipient (uRecipientId, sEmail, iBlackList) VALUES (%s, %s, %s)",
            (recipient_id, email, denylisted))


def recipients() -> list[tuple]:
    return execute("cloud", "SELECT uRecipientId, sEmail, iBlackList FROM NmsRecipient ORDER BY sEmail, uRecipientId")


def subscriptions() -> list[tuple]:
    return [(s.email or s.recipient_id, s.service.name, s.status)
            for s in Subscription.objects.select_related("service").order_by("service__name", "email")]


def history() -> list[tuple]:
    return [(h.email or h.recipient_id, h.service_name, h.action, h.origin)
            for h in SubscriptionHistory.objects.order_by("pk")]


def requests_state() -> list[tuple]:
    """(status, attempts, error) of each staged request, in ingestion order."""
    return execute("default", "SELECT sStgStatus, iStgAttempts, mStgError FROM NmsSubscriptionRcpStg ORDER BY iStgSeq")


def subscribe(user, service="newsletter", *, email="", recipient_id="", create=False, origin="test") -> str:
    return services.subscription_request(service_names=service, email=email, recipient_id=recipient_id,
                                         create=create, origin=origin, user=user)


def unsubscribe(user, service="newsletter", *, email="", recipient_id="", origin="test") -> str:
    return services.subscription_request(service_names=service, email=email, recipient_id=recipient_id,
                                         unsubscribe=True, origin=origin, user=user)


def process(**kwargs) -> SyncRun:
    return services.subscriptions_process(trigger=SyncRun.Trigger.COMMAND, **{"user": SYSTEM, **kwargs})
