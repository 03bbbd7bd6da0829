"""Services, subscriptions and their history, in the cloud database (campaignsite.routers).

Recipients are rows of the built-in nms:recipient cloud table (NmsRecipient), which is not a Django
model, so a subscription names its recipient by id (uRecipientId). The email is copied beside it so
the admin and the API can search by email without a join across a raw table.
"""

from django.db import models


class Service(models.Model):
    """An information service recipients subscribe to (Campaign's nms:service)."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        SMS = "sms"
        MOBILE_APP = "mobileApp", "mobile app"

    name = models.CharField(max_length=64, unique=True, help_text="Internal name used by Subscribe/Unsubscribe.")
    label = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    validity_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Subscriptions end by themselves after this many days (empty: never)."
    )
    requires_confirmation = models.BooleanField(
        default=False,
        help_text="Double opt-in: a subscription waits until the link of the confirmation email is followed.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("manage_subscriptions", "Can manage subscriptions (process requests now, see pending requests)"),
        ]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """One recipient subscribed to one service."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        PENDING = "pending-confirmation", "pending confirmation"

    recipient_id = models.CharField(max_length=255, help_text="uRecipientId of the recipient (NmsRecipient).")
    email = models.CharField(max_length=255, blank=True, db_index=True, help_text="The recipient's email, copied.")
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(db_index=True)
    expires = models.DateTimeField(null=True, blank=True)
    confirmed = models.DateTimeField(null=True, blank=True)
    origin = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["service", "recipient_id"]
        constraints = [
            models.UniqueConstraint(fields=["recipient_id", "service"], name="subscriptions_one_per_recipient"),
        ]
        indexes = [models.Index(fields=["expires"], name="subscriptions_expires_idx")]

    def __str__(self) -> str:
        return f"{self.email or self.recipient_id} → {self.service}"


class SubscriptionHistory(models.Model):
    """What happened to a recipient's subscriptions: one row per change, never edited."""

    class Action(models.TextChoices):
        SUBSCRIBE = "subscribe"
        UNSUBSCRIBE = "unsubscribe"
        DENYLIST = "denylist"
        CONFIRMATION_SENT = "confirmation-sent", "confirmation requested"

    recipient_id = models.CharField(max_length=255, db_index=True)
    email = models.CharField(max_length=255, blank=True, db_index=True)
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    service_name = models.CharField(max_length=64, blank=True, help_text="Kept when the service is deleted.")
    action = models.CharField(max_length=24, choices=Action.choices)
    at = models.DateTimeField(db_index=True)
    origin = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(
        max_length=64, blank=True, help_text="Id of the nms:subscriptionRcp request that caused it, if any."
    )

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "subscription history"

    def __str__(self) -> str:
        service = self.service_name or "(all channels)"
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {service} {self.email or self.recipient_id}"
