"""manage.py sync_staging [SCHEMA...] — synchronize staged rows into the cloud now, in the foreground."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from campaignsite.errors import DomainError
from campaignsite.permissions import SYSTEM
from staging import services, sync
from staging.models import SyncRun
from staging.selectors import backlog_by_schema


def run_summary(run: SyncRun) -> str:
    duration = f"{run.duration.total_seconds():.1f} s" if run.duration is not None else "-"
    line = (f"{run.schema}: {run.status} - sent {run.sent}, inserted {run.inserted}, updated {run.updated}, "
            f"deleted {run.deleted}, skipped {run.skipped}, failed {run.failed} ({duration}, run #{run.pk})")
    return f"{line}\n  {run.error}" if run.error else line


class Command(BaseCommand):
    help = (
        "Synchronize the pending staged rows of the named schemas (every staged schema when none is named) "
        "into their cloud tables now, in this process, with a progress bar; prints each run's counts. Safe "
        "beside the scheduled sync: a schema already being synchronized is reported busy. The exit status is "
        "non-zero when a run failed or was busy; rows that failed individually are counted, see staging_status."
    )

    def add_arguments(self, parser):
        parser.add_argument("schemas", nargs="*", metavar="SCHEMA", help="Schema ids such as dem:sampleTable.")
        parser.add_argument("--batch-size", type=int, default=sync.BATCH_SIZE,
                            help=f"Rows per batch (default {sync.BATCH_SIZE}).")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, schemas, batch_size, no_progress, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more.")
        try:
            targets = [services.schema_get(schema_id=s) for s in schemas] if schemas else sync.staged_schemas()
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        if not targets:
            self.stdout.write("No staged schema (autoStg on): nothing to synchronize.")
            return
        waiting = {b.schema_id: b.pending for b in backlog_by_schema()}
        unsuccessful = []
        for schema in targets:
            bar = tqdm(total=waiting.get(schema.schema_id) or 0, desc=schema.schema_id, unit="row",
                       disable=no_progress, file=sys.stderr)

            def on_batch(counts, bar=bar):
                # Rows re-ingested during the run make the total grow; let the bar follow.
                bar.total = max(bar.total or 0, counts.sent)
                bar.update(counts.sent - bar.n)

            try:
                run = sync.staging_sync(schema=schema, trigger=SyncRun.Trigger.COMMAND, user=SYSTEM, batch_size=batch_size,
                                        on_batch=on_batch)
            finally:
                bar.close()
            ok = run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)
            style = self.style.SUCCESS if run.status == SyncRun.Status.SUCCEEDED else (
                self.style.WARNING if ok else self.style.ERROR)
            self.stdout.write(style(run_summary(run)))
            if not ok:
                unsuccessful.append(f"{run.schema} ({run.status})")
        if unsuccessful:
            raise CommandError(f"{len(unsuccessful)} of {len(targets)} synchronization(s) did not complete: "
                               f"{', '.join(unsuccessful)}")
