"""Keeps each app's tables in its database.

The `subscriptions` app lives in the cloud database beside the target tables it refers to;
everything else (Django itself, schemas, sessions, the task queue) lives in the local database.
Staging and cloud data tables are not Django models: `staging.ddl` creates them directly.
"""

CLOUD_APPS = {"subscriptions"}
# The sync ledger is written in the same transaction as the cloud rows it describes (staging.sync).
CLOUD_MODELS = {"staging.syncledger"}


def _alias_for(app_label: str, model_name: str | None = None) -> str:
    if app_label in CLOUD_APPS or f"{app_label}.{model_name}" in CLOUD_MODELS:
        return "cloud"
    return "default"


class DatabaseRouter:
    def db_for_read(self, model, **hints):
        return _alias_for(model._meta.app_label, model._meta.model_name)

    def db_for_write(self, model, **hints):
        return _alias_for(model._meta.app_label, model._meta.model_name)

    def allow_relation(self, obj1, obj2, **hints):
        return _alias_for(obj1._meta.app_label, obj1._meta.model_name) == _alias_for(
            obj2._meta.app_label, obj2._meta.model_name
        )

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == _alias_for(app_label, model_name)
