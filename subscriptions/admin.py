"""Subscriptions in the admin: services are edited here; subscriptions and history are read-only
(they change only through requests, so every change keeps its history row); a page lists the
opt-in/opt-out requests waiting in staging, with a "Process now" button that queues a run."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from campaignsite.errors import DomainError
from staging import ddl
from staging.admin import ReadOnlyAdmin
from staging.models import Schema, SyncRun
from staging.selectors import STAGED_STATUSES, staged_rows
from subscriptions import services
from subscriptions.models import Service, Subscription, SubscriptionHistory

MANAGE_PERMISSION = "subscriptions.manage_subscriptions"
REQUESTS_PER_PAGE = 100


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "label", "channel", "validity_days", "requires_confirmation", "created_at")
    list_filter = ("channel", "requires_confirmation")
    search_fields = ("name", "label")


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("email", "recipient_id", "service", "status", "created", "expires", "origin")
    list_filter = ("service", "status", ("created", admin.DateFieldListFilter))
    list_select_related = ("service",)
    # Exact lookups use the indexes; "=" would compare UPPER() values and scan.
    search_fields = ("email__exact", "recipient_id__exact")
    search_help_text = "Exact email or recipient id."

    def get_urls(self):
        view = self.admin_site.admin_view(self.requests_view)
        return [path("requests/", view, name="subscriptions_requests"), *super().get_urls()]

    def requests_view(self, request):
        """Requests staged in nms:subscriptionRcpStg, by status; POST queues a processing run."""
        if not request.user.has_perm(MANAGE_PERMISSION):
            raise PermissionDenied
        url = reverse("admin:subscriptions_requests")
        if request.method == "POST":
            from django_q.tasks import async_task

            # Queued after commit so the worker never starts before the request is settled.
            transaction.on_commit(lambda: async_task("subscriptions.tasks.process_subscriptions",
                                                     SyncRun.Trigger.ADMIN))
            messages.success(request, "Processing of the subscription requests was queued; reload to follow it.")
            return HttpResponseRedirect(url)
        status = request.GET.get("status", ddl.STATUS_PENDING)
        status = status if status in STAGED_STATUSES else ddl.STATUS_PENDING
        after = request.GET.get("after", "")
        namespace, _, name = services.REQUEST_SCHEMA.partition(":")
        schema = Schema.objects.filter(namespace=namespace, name=name).first()
        rows, error = [], None
        try:
            if schema is None:
                raise DomainError("The built-in schema nms:subscriptionRcp is not loaded "
                                  "(manage.py load_builtin_schemas).")
            rows = staged_rows(schema, status=status, after=int(after) if after.isdigit() else None,
                               limit=REQUESTS_PER_PAGE + 1)
        except DomainError as exc:
            error = exc.message
        more = len(rows) > REQUESTS_PER_PAGE
        rows = rows[:REQUESTS_PER_PAGE]
        for row in rows:
            row["recipient"] = row["values"].get("recipient-id")  # a hyphenated key templates cannot read
        last_run = SyncRun.objects.filter(schema=services.REQUEST_SCHEMA).first()
        context = {
            **self.admin_site.each_context(request),
            "title": "Subscription requests",
            "opts": self.opts,
            "rows": rows,
            "status": status,
            "statuses": STAGED_STATUSES,
            "next_after": rows[-1]["seq"] if more else None,
            "error": error,
            "last_run": last_run,
        }
        return TemplateResponse(request, "admin/subscriptions/subscription/requests.html", context)


@admin.register(SubscriptionHistory)
class SubscriptionHistoryAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "service_name", "email", "recipient_id", "origin")
    list_filter = ("action", "service", ("at", admin.DateFieldListFilter))
    search_fields = ("email__exact", "recipient_id__exact")
    search_help_text = "Exact email or recipient id."
