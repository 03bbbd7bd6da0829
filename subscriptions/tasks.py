"""django-q2 entry points: each takes plain values and calls one service.

`SCHEDULES` declares the app's schedules; `setup_schedules` upserts them by name with the others.
Subscription requests are processed right after each sync by staging's sync task, so only the daily
expiry is scheduled here.
"""

from datetime import time

from django_q.models import Schedule

from campaignsite.permissions import SYSTEM
from staging.models import SyncRun
from subscriptions import services

SCHEDULES = [
    {
        "name": "subscriptions: expire subscriptions past their validity",
        "func": "subscriptions.tasks.expire_subscriptions",
        "schedule_type": Schedule.DAILY,
        "at": time(3, 0),  # UTC, before staging's 4 am retention purge
    },
]


def process_subscriptions(trigger: str = SyncRun.Trigger.SCHEDULE) -> int:
    """Apply the pending opt-in/opt-out requests; returns the id of the recorded run."""
    return services.subscriptions_process(trigger=trigger, user=SYSTEM).pk


def expire_subscriptions() -> int:
    """Unsubscribe subscriptions whose validity ended; returns how many."""
    return services.subscriptions_expire(user=SYSTEM)
