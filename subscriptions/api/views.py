"""REST adapter for subscriptions: parse, call one service, format the answer.

Permissions are Django's model permissions (view/add/change/delete on Service, view on
Subscription and SubscriptionHistory); subscribe/unsubscribe write staging rows, so they need
`staging.ingest` like any ingest; "process now" needs `subscriptions.manage_subscriptions`.
"""

from django.db import transaction
from django.db.models import ProtectedError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.response import Response
from rest_framework.views import APIView

from campaignsite.api import ErrorSerializer, IdCursorPagination
from campaignsite.errors import Conflict, InvalidInput, Problem
from staging.models import SyncRun
from subscriptions import services
from subscriptions.models import Service, Subscription, SubscriptionHistory


class ModelPermissions(DjangoModelPermissions):
    """DRF's model permissions, with `view_<model>` required to read."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"],
                 "HEAD": ["%(app_label)s.view_%(model_name)s"]}


class CanManageSubscriptions(BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("subscriptions.manage_subscriptions"))


class Pages(IdCursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


class NewestFirst(Pages):
    ordering = "-pk"


# --- Services -------------------------------------------------------------------------------

class ServiceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Service
        fields = ["name", "label", "channel", "validity_days", "requires_confirmation", "created_at"]
        read_only_fields = ["created_at"]


class ServiceListView(generics.ListCreateAPIView):
    """Services: list, create."""

    queryset = Service.objects.all()
    serializer_class = ServiceSerializer
    permission_classes = [ModelPermissions]
    pagination_class = Pages


class ServiceDetailView(generics.RetrieveUpdateDestroyAPIView):
    """A service by name: read, update, delete (refused while it has subscriptions)."""

    queryset = Service.objects.all()
    serializer_class = ServiceSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "name"

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError:
            count = instance.subscriptions.count()
            raise Conflict(f"The service '{instance.name}' has {count} subscription(s) and cannot be deleted.", [
                Problem("unsubscribe its recipients first (Unsubscribe requests), then delete it",
                        attribute="name", value=instance.name)])


# --- Subscriptions and history ---------------------------------------------------------------

class SubscriptionSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Subscription
        fields = ["recipient_id", "email", "service", "status", "created", "expires", "confirmed", "origin"]


class HistorySerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="service_name")

    class Meta:
        model = SubscriptionHistory
        fields = ["recipient_id", "email", "service", "action", "at", "origin", "request_id"]


_FILTERS = [OpenApiParameter(name, str, description=description) for name, description in (
    ("recipient_id", "uRecipientId of the recipient"), ("email", "the recipient's email"),
    ("service", "service name"),
)]


def _filtered(queryset, params, *extra: str):
    for name, lookup in (("recipient_id", "recipient_id"), ("email", "email"), ("service", "service__name"),
                         *((e, e) for e in extra)):
        value = params.get(name)
        if value:
            queryset = queryset.filter(**{lookup: value})
    return queryset


@extend_schema(parameters=[*_FILTERS, OpenApiParameter("status", str, enum=Subscription.Status.values)])
class SubscriptionListView(generics.ListAPIView):
    """Subscriptions, e.g. a recipient's: ?recipient_id=... or ?email=..., optionally ?service= and ?status=."""

    queryset = Subscription.objects.select_related("service")
    serializer_class = SubscriptionSerializer
    permission_classes = [ModelPermissions]
    pagination_class = Pages

    def get_queryset(self):
        return _filtered(super().get_queryset(), self.request.query_params, "status")


@extend_schema(parameters=[*_FILTERS, OpenApiParameter("action", str, enum=SubscriptionHistory.Action.values)])
class HistoryListView(generics.ListAPIView):
    """Subscription history, newest first; same filters as subscriptions, plus ?action=."""

    queryset = SubscriptionHistory.objects.all()
    serializer_class = HistorySerializer
    permission_classes = [ModelPermissions]
    pagination_class = NewestFirst

    def get_queryset(self):
        return _filtered(super().get_queryset(), self.request.query_params, "action")


# --- Requests -------------------------------------------------------------------------------

class RecipientSerializer(serializers.Serializer):
    id = serializers.CharField(required=False, allow_blank=True, help_text="uRecipientId")
    email = serializers.CharField(required=False, allow_blank=True)


class RequestSerializer(serializers.Serializer):
    service = serializers.JSONField(
        required=False, help_text='A service name, several comma-separated ("a,b") or a list (["a", "b"]).')
    recipient = RecipientSerializer()
    create = serializers.BooleanField(default=False, help_text="Create the recipient if unknown (subscribe only).")
    origin = serializers.CharField(required=False, allow_blank=True, max_length=64, default="api")

    def validate_service(self, value):
        if value is None or isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise serializers.ValidationError("give a name, comma-separated names, or a list of names")


class AcceptedSerializer(serializers.Serializer):
    request = serializers.CharField(help_text="Id of the staged nms:subscriptionRcp request.")
    status = serializers.CharField(help_text="pending: applied by the next processing run.")


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        problems = [Problem(str(message), attribute=name) for name, messages in serializer.errors.items()
                    for message in (messages if isinstance(messages, list) else [messages])]
        raise InvalidInput("The request body is not valid.", problems)
    return serializer.validated_data


class _RequestView(APIView):
    unsubscribe = False

    @extend_schema(request=RequestSerializer, responses={
        202: AcceptedSerializer,
        404: OpenApiResponse(ErrorSerializer, description="The subscription request schema is not loaded."),
        409: OpenApiResponse(ErrorSerializer, description="Its staging is off or its structure is outdated."),
    })
    def post(self, request):
        data = _validated(RequestSerializer, request.data)
        request_id = services.subscription_request(
            service_names=data.get("service") or "", recipient_id=data["recipient"].get("id", ""),
            email=data["recipient"].get("email", ""), create=data["create"] and not self.unsubscribe,
            unsubscribe=self.unsubscribe, origin=data.get("origin") or "api", user=request.user,
        )
        return Response({"request": request_id, "status": "pending"}, status=status.HTTP_202_ACCEPTED)


class SubscribeView(_RequestView):
    """Stage an opt-in; applied asynchronously by the next processing run."""


class UnsubscribeView(_RequestView):
    """Stage an opt-out; without a service the recipient goes on the denylist."""

    unsubscribe = True


class QueuedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="queued: the task cluster runs it shortly.")


class ProcessView(APIView):
    """Queue a processing run of the pending requests now."""

    permission_classes = [CanManageSubscriptions]

    @extend_schema(request=None, responses={202: QueuedSerializer})
    def post(self, request):
        from django_q.tasks import async_task

        transaction.on_commit(lambda: async_task("subscriptions.tasks.process_subscriptions", SyncRun.Trigger.API))
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)
