from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Subscriptions"

    def ready(self):
        # Registers nms:subscription#Subscribe / Unsubscribe with campaignsite.soap.
        from subscriptions import soap  # noqa: F401
