from django.apps import AppConfig


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self):
        # Registers the Campaign SOAP methods of xtk:session / xtk:persist with campaignsite.soap.
        from staging import soap  # noqa: F401
