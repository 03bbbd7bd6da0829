"""manage.py load_builtin_schemas — load the schemas shipped in staging/builtin_schemas."""

from django.core.management.base import BaseCommand, CommandError

from campaignsite.errors import DomainError
from campaignsite.permissions import SYSTEM
from staging import services


class Command(BaseCommand):
    help = (
        "Load the built-in schemas (nms:recipient, nms:subscriptionRcp, nms:appSubscriptionRcp) from "
        "staging/builtin_schemas and apply their database structure. Safe to run again: unchanged files "
        "and an up-to-date structure change nothing."
    )

    def handle(self, *args, **options):
        try:
            schemas = services.builtin_schemas_load(user=SYSTEM)
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        for schema in schemas:
            staging = f", staging {schema.staging_id}" if schema.staging_id else ""
            self.stdout.write(f"{schema.schema_id}: structure {schema.structure_state.label}{staging}")
