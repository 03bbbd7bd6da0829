"""REST adapter for synchronization: queue a sync, read runs, retry or discard failed rows.

`POST sync/` queues work and answers 202 at once; the sync itself runs in the task cluster.
"""


from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from campaignsite.api import MAX_POSITION, ErrorSerializer, cursor_decode, cursor_encode, query_int
from campaignsite.errors import Forbidden, InvalidInput, NotFound, Problem
from staging import services, sync
from staging.api.parsers import BoundedJSONParser
from staging.api.schemas import _validated
from staging.models import SyncRun

RUNS_PAGE_SIZE = 50
RUNS_MAX_PAGE_SIZE = 500
# Small JSON bodies only: a schema id, or a list of sequence numbers.
SYNC_BODY_MAX_BYTES = 1_048_576


class _SmallBody:
    max_body_bytes = SYNC_BODY_MAX_BYTES
    parser_classes = [BoundedJSONParser]


# --- POST sync/ -------------------------------------------------------------------------------

class SyncRequestSerializer(serializers.Serializer):
    schema = serializers.CharField(required=False, allow_null=True, max_length=130,
                                   help_text="Schema id such as dem:sampleTable; leave out to sync every staged schema.")


class QueuedTaskSerializer(serializers.Serializer):
    schema = serializers.CharField(allow_null=True, help_text="The schema, or null for every staged schema.")
    task = serializers.CharField(help_text="django-q2 task name; its result shows in the admin under Tasks.")


class SyncQueuedSerializer(serializers.Serializer):
    tasks = QueuedTaskSerializer(many=True)
    runs = serializers.URLField(help_text="Where the runs will appear.")


class SyncView(_SmallBody, APIView):
    """Queue a synchronization now (the run appears under sync/runs/ when the cluster takes it)."""

    @extend_schema(
        summary="Synchronize now",
        operation_id="sync_start",
        request=SyncRequestSerializer,
        responses={
            202: SyncQueuedSerializer,
            400: ErrorSerializer,
            403: OpenApiResponse(ErrorSerializer, description="Missing permission staging.run_sync."),
            404: OpenApiResponse(ErrorSerializer, description="Unknown schema."),
            409: OpenApiResponse(ErrorSerializer, description="Staging off or structure not up to date."),
        },
        examples=[OpenApiExample("One schema", value={"schema": "dem:sampleTable"}, request_only=True)],
    )
    def post(self, request):
        data = request.data if request.stream is not None else {}
        schema = _validated(SyncRequestSerializer, data).get("schema") or None
        task = sync.sync_enqueue(schema=schema, trigger=SyncRun.Trigger.API, user=request.user)
        if schema is not None:
            schema = services.schema_get(schema_id=schema).schema_id
        runs = request.build_absolute_uri(reverse("sync-runs")) + (f"?schema={schema}" if schema else "")
        return Response({"tasks": [{"schema": schema, "task": task}], "runs": runs}, status=202)


# --- GET sync/runs/ ---------------------------------------------------------------------------

class SyncRunSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = ["id", "schema", "trigger", "status", "started_at", "finished_at", "duration_seconds", "sent",
                  "inserted", "updated", "deleted", "skipped", "failed", "error"]

    def get_duration_seconds(self, run: SyncRun) -> float | None:
        return run.duration.total_seconds() if run.duration is not None else None


class SyncRunPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    results = SyncRunSerializer(many=True)


def _require_view_runs(user) -> None:
    if not (user.has_perm("staging.view_syncrun") or user.has_perm(sync.SYNC_PERMISSION)):
        raise Forbidden(f"User '{user}' may not read synchronization runs.",
                        [Problem("grant 'staging.view_syncrun' or 'staging.run_sync'")])


def _choice(request, name: str, choices) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in choices:
        raise InvalidInput(f"Unknown {name} filter.", [Problem(f"accepted: {', '.join(choices)}", attribute=name,
                                                                value=value)])
    return value


class SyncRunListView(APIView):
    """Synchronization runs, newest first, by cursor."""

    @extend_schema(
        summary="List synchronization runs",
        operation_id="sync_runs_list",
        parameters=[
            OpenApiParameter("schema", str, required=False, description="Schema id, e.g. dem:sampleTable."),
            OpenApiParameter("status", str, enum=list(SyncRun.Status.values), required=False),
            OpenApiParameter("trigger", str, enum=list(SyncRun.Trigger.values), required=False),
            OpenApiParameter("cursor", str, required=False, description="From the `next` link."),
            OpenApiParameter("limit", int, required=False, description=f"1 to {RUNS_MAX_PAGE_SIZE}."),
        ],
        responses={200: SyncRunPageSerializer, 400: ErrorSerializer, 403: ErrorSerializer,
                   404: OpenApiResponse(ErrorSerializer, description="Unknown schema in `schema`.")},
    )
    def get(self, request):
        _require_view_runs(request.user)
        runs = SyncRun.objects.order_by("-pk")
        schema = request.query_params.get("schema") or None
        if schema is not None:
            runs = runs.filter(schema=services.schema_get(schema_id=schema).schema_id)
        status = _choice(request, "status", SyncRun.Status.values)
        if status:
            runs = runs.filter(status=status)
        trigger = _choice(request, "trigger", SyncRun.Trigger.values)
        if trigger:
            runs = runs.filter(trigger=trigger)
        limit = query_int(request, "limit", default=RUNS_PAGE_SIZE, minimum=1, maximum=RUNS_MAX_PAGE_SIZE)
        before = cursor_decode(request.query_params.get("cursor"))
        if before is not None:
            runs = runs.filter(pk__lt=before)
        page = list(runs[: limit + 1])
        next_url = None
        if len(page) > limit:
            page = page[:limit]
            cursor = cursor_encode(page[-1].pk)
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", cursor)
        return Response({"next": next_url, "results": SyncRunSerializer(page, many=True).data})


class SyncRunDetailView(APIView):
    """One synchronization run with its counts and error."""

    @extend_schema(summary="Read a synchronization run", operation_id="sync_runs_read",
                   responses={200: SyncRunSerializer, 403: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request, run_id: int):
        _require_view_runs(request.user)
        run = SyncRun.objects.filter(pk=run_id).first() if run_id <= MAX_POSITION else None
        if run is None:
            raise NotFound(f"Unknown synchronization run {run_id}.", [Problem("no run has this id", value=str(run_id))])
        return Response(SyncRunSerializer(run).data)


# --- POST staging/<schema id>/rows/retry-failed/ and discard-failed/ --------------------------

class FailedRowsRequestSerializer(serializers.Serializer):
    seqs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_POSITION), required=False, allow_null=True,
        max_length=100_000, help_text="Sequence numbers of the rows; all failed rows if absent.")


class FailedRowsResultSerializer(serializers.Serializer):
    schema = serializers.CharField()
    count = serializers.IntegerField(help_text="Failed rows made pending again (retry) or deleted (discard).")


class _FailedRowsView(_SmallBody, APIView):
    service = None  # set by subclasses

    def post(self, request, schema_id: str):
        sync.sync_permission_require(user=request.user)
        data = request.data if request.stream is not None else {}
        seqs = _validated(FailedRowsRequestSerializer, data).get("seqs")
        schema = services.schema_get(schema_id=schema_id)
        count = type(self).service(schema=schema, seqs=seqs, user=request.user)
        return Response({"schema": schema.schema_id, "count": count})


_FAILED_DOC = dict(
    request=FailedRowsRequestSerializer,
    responses={200: FailedRowsResultSerializer, 400: ErrorSerializer,
               403: OpenApiResponse(ErrorSerializer, description="Missing permission staging.run_sync."),
               404: ErrorSerializer, 409: OpenApiResponse(ErrorSerializer, description="No staging table.")},
)


class RetryFailedRowsView(_FailedRowsView):
    """Make failed staged rows pending again, once their cause is fixed; the next sync applies them."""

    service = staticmethod(sync.failed_rows_retry)

    @extend_schema(summary="Retry failed rows", operation_id="staging_rows_retry_failed", **_FAILED_DOC)
    def post(self, request, schema_id: str):
        return super().post(request, schema_id)


class DiscardFailedRowsView(_FailedRowsView):
    """Delete failed staged rows (they never reach the cloud)."""

    service = staticmethod(sync.failed_rows_discard)

    @extend_schema(summary="Discard failed rows", operation_id="staging_rows_discard_failed", **_FAILED_DOC)
    def post(self, request, schema_id: str):
        return super().post(request, schema_id)
