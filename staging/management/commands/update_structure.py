"""manage.py update_structure [SCHEMA...] — plan and apply the database structure of schemas."""

from django.core.management.base import BaseCommand, CommandError

from campaignsite.errors import DomainError
from campaignsite.permissions import SYSTEM
from staging import services
from staging.models import Schema


class Command(BaseCommand):
    help = (
        "Bring the cloud and local databases to what each schema's source calls for, printing the DDL of "
        "each schema. All schemas when none is named. Dropping columns or changing column types is refused "
        "unless --confirm-destructive; turning staging off is refused while the staging table holds "
        "unsynchronized rows. An extension schema updates the tables of the schema it extends. The exit "
        "status is non-zero when any schema failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("schemas", nargs="*", metavar="SCHEMA", help="Schema ids such as dem:sampleTable.")
        parser.add_argument("--dry-run", action="store_true", help="Print the DDL without running it.")
        parser.add_argument(
            "--confirm-destructive", action="store_true",
            help="Allow dropping columns and changing column types.",
        )

    def handle(self, *args, schemas, dry_run, confirm_destructive, **options):
        schema_ids = schemas or [schema.schema_id for schema in Schema.objects.only("namespace", "name")]
        failures = []
        for schema_id in schema_ids:
            self.stdout.write(f"-- {schema_id}{' (dry run)' if dry_run else ''}")
            try:
                schema = services.schema_get(schema_id=schema_id)
                if schema.extends:
                    self.stdout.write(f"-- {schema_id} is an extension: updating the structure of {schema.extends}")
                plan = services.structure_update(
                    schema=schema,
                    confirm_destructive=confirm_destructive,
                    dry_run=dry_run,
                    user=SYSTEM,
                )
            except DomainError as exc:
                message = f"{schema_id}: {exc.detail}"
                self.stderr.write(self.style.ERROR(message))
                failures.append(schema_id)
                continue
            self.stdout.write(plan.as_text())
        if failures:
            raise CommandError(f"{len(failures)} of {len(schema_ids)} schema(s) failed: {', '.join(failures)}")
