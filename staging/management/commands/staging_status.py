"""manage.py staging_status — the sync backlog per staged schema, as the admin dashboard shows it."""

from django.core.management.base import BaseCommand

from staging.selectors import backlog_by_schema


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _run_text(run) -> str:
    if run is None:
        return "never"
    # The error's first clause ("worker lost", "Database error, rows left pending") says why it failed.
    why = f" ({run.error.split(':')[0]})" if run.status == run.Status.FAILED and run.error else ""
    return f"{run.status}{why} {_when(run.started_at)}"


class Command(BaseCommand):
    help = (
        "Print, for every staged schema: rows pending and failed, when the oldest pending row was staged, the "
        "last synchronization (status and start time) and the next scheduled one."
    )

    def handle(self, *args, **options):
        backlog = backlog_by_schema()
        if not backlog:
            self.stdout.write("No staged schema (autoStg on).")
            return
        header = ("SCHEMA", "PENDING", "FAILED", "OLDEST PENDING", "LAST RUN", "NEXT RUN")
        rows = [
            (
                b.schema_id,
                "-" if b.pending is None else str(b.pending),
                "-" if b.failed is None else str(b.failed),
                _when(b.oldest_pending),
                _run_text(b.last_run),
                _when(b.next_run) if b.next_run else "not scheduled (manage.py setup_schedules)",
            )
            for b in backlog
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if any(b.pending is None for b in backlog):
            self.stdout.write("'-': the staging table does not exist yet; run manage.py update_structure.")
