"""REST adapter for queries: `POST /api/v1/query/` takes a queryDef as JSON, answers JSON.

The body is the object Adobe's SDK passes to `NLWS.xtkQueryDef.create(...)`; the rules and the
expression language are those of `xtk:queryDef#ExecuteQuery` (docs/query.md). One service runs it
(`staging.selectors.query_execute`), which checks the caller may read the schema's rows.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from campaignsite.errors import InvalidInput, Problem
from staging.api.parsers import BoundedJSONParser
from staging.api.schemas import ErrorSerializer
from staging.query import json_value, query_def_from_json
from staging.selectors import query_execute

# A queryDef is a few nodes; a megabyte leaves room for long IN lists and refuses anything bigger unread.
QUERY_MAX_BYTES = 1_048_576


class QueryJSONParser(BoundedJSONParser):
    escape_factor = 1  # the body is the queryDef itself


def query_answer(result) -> dict:
    """{"<element>": [records]} for select, {"<element>": record or null} for get and getIfExists,
    {"count": N} for count; values typed (numbers, booleans, ISO 8601 UTC times, null).
    """
    compiled = result.compiled
    if compiled.operation == "count":
        return {"count": result.count}
    records = result.records(json_value)
    if compiled.operation == "select":
        return {compiled.element: records}
    return {compiled.element: records[0] if records else None}


_EXAMPLE = {
    "schema": "dem:sampleTable", "operation": "select", "lineCount": 10,
    "select": {"node": [{"expr": "@id"}, {"expr": "Upper(@testcol1)", "alias": "@upper"}]},
    "where": {"condition": [{"expr": "@testcol1 LIKE 'a%'", "boolOperator": "OR"}, {"expr": "@testcol2 IS NULL"}]},
    "orderBy": {"node": [{"expr": "@testcol1", "sortDesc": True}]},
}


class QueryView(APIView):
    """Run a queryDef (select, get, getIfExists, count) on a source or staging schema."""

    parser_classes = [QueryJSONParser]
    max_body_bytes = QUERY_MAX_BYTES

    @extend_schema(
        summary="Run a queryDef",
        operation_id="query_execute",
        description=(
            "The queryDef as Adobe's SDK writes it: `schema`, `operation` (select, get, getIfExists, count), "
            "`select.node[]` (`expr`, `alias`), `where.condition[]` (`expr`, `boolOperator`, nested `condition`), "
            "`orderBy.node[]` (`expr`, `sortDesc`), `groupBy.node[]`, `having.condition[]`, `lineCount`, "
            "`startLine`, `distinct`. Needs staging.view_schema (or staging.ingest for a staging schema). "
            "See docs/query.md for the expression language."
        ),
        request={"application/json": {"type": "object", "additionalProperties": True}},
        responses={
            200: OpenApiResponse(
                {"type": "object", "additionalProperties": True},
                description='{"<element>": [records]} (select), {"<element>": record or null} (get, getIfExists), '
                            '{"count": N} (count).',
            ),
            400: OpenApiResponse(ErrorSerializer, description="Invalid queryDef: the node, expression and column."),
            403: OpenApiResponse(ErrorSerializer, description="Missing permission to read the schema's rows."),
            404: OpenApiResponse(ErrorSerializer, description="Unknown schema, or `get` found nothing."),
            409: OpenApiResponse(ErrorSerializer, description="Staging off or database structure not up to date."),
        },
        examples=[OpenApiExample("Select with where and orderBy", value=_EXAMPLE, request_only=True)],
    )
    def post(self, request):
        data = request.data if request.stream is not None else None
        if isinstance(data, dict) and set(data) == {"queryDef"}:
            data = data["queryDef"]  # {"queryDef": {...}} as some clients wrap it
        if not isinstance(data, dict):
            raise InvalidInput("The body is not a queryDef.",
                               [Problem('send a JSON object such as {"schema": "dem:sampleTable", "operation": '
                                        '"select", "select": {"node": [{"expr": "@id"}]}}')])
        result = query_execute(query_def=query_def_from_json(data), user=request.user)
        return Response(query_answer(result))
