"""Routes of the REST API, mounted under /api/v1/ by campaignsite.urls."""

from django.urls import path, register_converter

from staging.api import schemas


class SchemaIdConverter:
    """`namespace:name`, the id Campaign gives a schema (`dem:sampleTable`, `dem:sampleTableStg`)."""

    regex = r"[A-Za-z][A-Za-z0-9_-]*:[A-Za-z][A-Za-z0-9_-]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SchemaIdConverter, "schema_id")

urlpatterns = [
    path("schemas/", schemas.SchemaListView.as_view(), name="schema-list"),
    path("schemas/<schema_id:schema_id>/", schemas.SchemaDetailView.as_view(), name="schema-detail"),
    path(
        "schemas/<schema_id:schema_id>/update-structure/",
        schemas.SchemaStructureView.as_view(),
        name="schema-update-structure",
    ),
]

# Ingestion (staging.api.ingest).
from staging.api import ingest  # noqa: E402

urlpatterns += [
    path("staging/<schema_id:schema_id>/ingest/", ingest.IngestView.as_view(), name="staging-ingest"),
    path("staging/<schema_id:schema_id>/ingest-ext/", ingest.IngestExtView.as_view(), name="staging-ingest-ext"),
    path("staging/<schema_id:schema_id>/rows/", ingest.StagedRowsView.as_view(), name="staging-rows"),
]

# Synchronization (staging.api.sync).
from staging.api import sync  # noqa: E402

urlpatterns += [
    path("sync/", sync.SyncView.as_view(), name="sync"),
    path("sync/runs/", sync.SyncRunListView.as_view(), name="sync-runs"),
    path("sync/runs/<int:run_id>/", sync.SyncRunDetailView.as_view(), name="sync-run-detail"),
    path("staging/<schema_id:schema_id>/rows/retry-failed/", sync.RetryFailedRowsView.as_view(),
         name="staging-rows-retry-failed"),
    path("staging/<schema_id:schema_id>/rows/discard-failed/", sync.DiscardFailedRowsView.as_view(),
         name="staging-rows-discard-failed"),
]

# Queries (staging.api.query).
from staging.api import query  # noqa: E402

urlpatterns += [path("query/", query.QueryView.as_view(), name="query")]
