"""manage.py setup_schedules — create or update the django-q2 schedules by name (idempotent)."""

from django.core.management.base import BaseCommand

from staging.schedules import schedules_setup


class Command(BaseCommand):
    help = (
        "Create or update, by name, the schedules the task cluster runs: 'staging sync' every "
        "SYNC_INTERVAL_MINUTES (followed by the subscription processing) and the daily 'staging retention "
        "purge'. Safe to run on every start: each schedule exists once afterwards."
    )

    def handle(self, *args, **options):
        for schedule in schedules_setup():
            every = (f"every {schedule.minutes} min" if schedule.schedule_type == schedule.MINUTES
                     else schedule.get_schedule_type_display().lower())
            next_run = schedule.next_run.strftime("%Y-%m-%d %H:%M:%S UTC")
            self.stdout.write(f"{schedule.name}: {schedule.func}, {every}, next run {next_run}")
