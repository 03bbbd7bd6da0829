"""manage.py purge_staging [--days N] — delete synced staged rows past the retention period."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaignsite.errors import DomainError
from campaignsite.permissions import SYSTEM
from staging.sync import staging_purge


class Command(BaseCommand):
    help = (
        "Delete staged rows that were synchronized (or skipped) more than --days days ago, default "
        "STAGING_RETENTION_DAYS. Pending and failed rows are never deleted, however old. Prints the rows "
        "deleted per schema. The daily 'staging retention purge' schedule runs the same."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help=f"Retention in days (default STAGING_RETENTION_DAYS, now "
                                 f"{settings.STAGING_RETENTION_DAYS}).")

    def handle(self, *args, days, **options):
        try:
            deleted = staging_purge(older_than_days=days, user=SYSTEM)
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        for schema_id, count in deleted.items():
            self.stdout.write(f"{schema_id}: {count} row(s) deleted")
        self.stdout.write(f"Total: {sum(deleted.values())} row(s) deleted from {len(deleted)} staging table(s).")
