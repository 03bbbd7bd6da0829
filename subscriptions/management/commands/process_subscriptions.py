"""manage.py process_subscriptions: apply the pending opt-in/opt-out requests now."""

from django.core.management.base import BaseCommand, CommandError

from campaignsite.permissions import SYSTEM
from staging.models import SyncRun
from subscriptions import services


class Command(BaseCommand):
    help = ("Apply the pending opt-in/opt-out requests staged in nms:subscriptionRcpStg, in order (what the "
            "scheduled task runs after each sync). With --expire, also end subscriptions past their validity.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=services.BATCH_SIZE)
        parser.add_argument("--expire", action="store_true", help="Also unsubscribe expired subscriptions.")

    def handle(self, *args, batch_size: int, expire: bool, **options):
        def progress(counts):
            if options["verbosity"] >= 2:
                self.stdout.write(f"  {counts.sent} request(s) read…")

        run = services.subscriptions_process(trigger=SyncRun.Trigger.COMMAND, user=SYSTEM, batch_size=batch_size,
                                             on_batch=progress)
        summary = (f"{run.sent} request(s): {run.inserted} subscribed, {run.deleted} unsubscribed, "
                   f"{run.updated} denylisted, {run.skipped} waiting or skipped, {run.failed} failed")
        if run.status in (SyncRun.Status.FAILED, SyncRun.Status.BUSY):
            raise CommandError(f"Processing {run.status}: {run.error} ({summary})")
        self.stdout.write(f"Processing {run.status}: {summary}.")
        if expire:
            count = services.subscriptions_expire(user=SYSTEM)
            self.stdout.write(f"{count} expired subscription(s) unsubscribed.")
