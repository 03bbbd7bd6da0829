"""The django-q2 schedules, declared in code and upserted by name (`manage.py setup_schedules`).

django-q2 does not make schedule names unique, so creating schedules on every start would pile up
duplicates; `schedules_setup` updates each one in place by name and removes extra copies.
`catch_up` is a cluster-wide setting in django-q2 (settings.Q_CLUSTER["catch_up"] = False), not a
schedule field: after downtime each schedule runs once, not once per missed slot.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

SYNC_SCHEDULE = "staging sync"
PURGE_SCHEDULE = "staging retention purge"
# Campaign's own database cleanup runs daily at 4 am (reference/campaign-v8-behaviour.md); so does ours, in UTC.
PURGE_AT = time(4, 0)
MAX_MINUTES = 32767  # Schedule.minutes is a PositiveSmallIntegerField


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    at: time = PURGE_AT  # time of day (UTC) of daily and weekly schedules

    @property
    def period(self) -> timedelta:
        periods = {Schedule.MINUTES: timedelta(minutes=self.minutes or 1), Schedule.HOURLY: timedelta(hours=1),
                   Schedule.DAILY: timedelta(days=1), Schedule.WEEKLY: timedelta(days=7)}
        if self.schedule_type not in periods:
            raise ImproperlyConfigured(f"Schedule '{self.name}': type {self.schedule_type!r} is not supported here; "
                                       "use minutes, hourly, daily or weekly.")
        return periods[self.schedule_type]

    def first_run(self, now: datetime) -> datetime:
        """The next slot after `now`: a whole number of periods since midnight UTC (shifted to `at` for
        daily and weekly schedules), so runs land on predictable times (xx:00, xx:15, 04:00...).
        """
        midnight = datetime.combine(now.astimezone(dt_timezone.utc).date(), time(0), tzinfo=dt_timezone.utc)
        if self.schedule_type in (Schedule.DAILY, Schedule.WEEKLY):
            midnight += timedelta(hours=self.at.hour, minutes=self.at.minute)
            if midnight > now:
                return midnight
        slots = (now - midnight) // self.period + 1
        return midnight + slots * self.period


def schedule_specs() -> list[ScheduleSpec]:
    """Every schedule, as the settings want them now: staging's, then those other apps declare
    (a module-level `SCHEDULES` list of dicts with name, func, schedule_type and optional minutes).
    """
    from subscriptions import tasks as subscription_tasks

    minutes = settings.SYNC_INTERVAL_MINUTES
    if minutes > MAX_MINUTES:
        raise ImproperlyConfigured(f"SYNC_INTERVAL_MINUTES={minutes} is too large; use at most {MAX_MINUTES}.")
    specs = [
        # sync_all runs the subscription processing right after the sync, in the same task.
        ScheduleSpec(SYNC_SCHEDULE, "staging.tasks.sync_all", Schedule.MINUTES, minutes),
        ScheduleSpec(PURGE_SCHEDULE, "staging.tasks.purge_staging", Schedule.DAILY),
    ]
    for declared in getattr(subscription_tasks, "SCHEDULES", ()):
        specs.append(ScheduleSpec(declared["name"], declared["func"], declared["schedule_type"],
                                  declared.get("minutes"), declared.get("at", PURGE_AT)))
    return specs


@transaction.atomic(using="default")
def schedules_setup() -> list[Schedule]:
    """Create or update every schedule of schedule_specs() by name; idempotent.

    A schedule's next run is kept across calls (a restart does not delay it) unless it lies further
    away than one period, as after shortening SYNC_INTERVAL_MINUTES; then it moves to the next slot.
    """
    now = timezone.now()
    result = []
    for spec in schedule_specs():
        copies = list(Schedule.objects.select_for_update().filter(name=spec.name).order_by("pk"))
        for extra in copies[1:]:
            extra.delete()
        schedule = copies[0] if copies else Schedule(name=spec.name)
        schedule.func = spec.func
        schedule.args = schedule.kwargs = schedule.hook = schedule.cron = schedule.cluster = None
        schedule.schedule_type = spec.schedule_type
        schedule.minutes = spec.minutes
        schedule.repeats = -1
        if schedule.next_run is None or schedule.next_run > now + spec.period or not copies:
            schedule.next_run = spec.first_run(now)
        schedule.save()
        result.append(schedule)
    return result
