"""REST helpers shared by the apps: one error shape for every failure, opaque pagination cursors,
range-checked integers from the query string, and the OpenAPI schema class that documents it all.

Every 4xx answer under /api/ has the body `{"code", "error", "problems"}`: domain errors raised by
services, DRF's own refusals (401, 403, 415, invalid serializer data...) and URLs that match no
endpoint (`not_found`, Django's handler404).
"""

import base64
import re

from django.http import JsonResponse
from django.views.defaults import page_not_found, server_error
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from campaignsite.errors import DomainError, InvalidInput, NotFound, Problem

API_PREFIX = "/api/"
# The largest value a 64-bit signed column (a sequence, an id) holds: anything above is refused
# before it reaches the database, whose driver would fail with an overflow.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


class ProblemSerializer(serializers.Serializer):
    message = serializers.CharField()
    record = serializers.IntegerField(required=False)
    attribute = serializers.CharField(required=False)
    value = serializers.CharField(required=False)
    line = serializers.IntegerField(required=False)


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer of the API."""

    code = serializers.CharField(help_text="Stable error code, e.g. CST-400100 (docs/error-codes.md).")
    error = serializers.CharField()
    problems = ProblemSerializer(many=True)


def error_body(error: DomainError) -> dict:
    return {"code": error.code, "error": error.message, "problems": [p.as_dict() for p in error.problems]}


# DRF's own refusals, by status; invalid serializer data is CST-400200 like invalid records.
_DRF_CODES = {400: "CST-400000", 401: "CST-401000", 403: "CST-403000", 404: "CST-404000", 405: "CST-405000",
              406: "CST-406000", 415: "CST-415000", 429: "CST-429000"}


def _field_problems(detail, attribute: str | None = None) -> list[Problem]:
    """DRF's nested validation detail ({field: [messages]}, lists per item) as flat problems."""
    if isinstance(detail, dict):
        return [p for name, sub in detail.items()
                for p in _field_problems(sub, None if name == "non_field_errors" else
                                         f"{attribute}.{name}" if attribute else str(name))]
    if isinstance(detail, list):
        return [p for sub in detail for p in _field_problems(sub, attribute)]
    return [Problem(str(detail), attribute=attribute)]


def _drf_error_body(exc: exceptions.APIException, context: dict, status: int) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        return {"code": "CST-400200", "error": "The request is not valid.",
                "problems": [p.as_dict() for p in _field_problems(exc.detail)]}
    problems = []
    request = context.get("request")
    if isinstance(exc, exceptions.UnsupportedMediaType) and request is not None:
        accepted = ", ".join(p.media_type for p in context["view"].parser_classes)
        problems.append(Problem(f"send one of: {accepted}", attribute="Content-Type",
                                value=request.content_type or "(none)"))
    elif isinstance(exc, exceptions.NotAuthenticated):
        problems.append(Problem("send `Authorization: Token <key>` (docs/rest.md)"))
    return {"code": _DRF_CODES.get(status, f"CST-{status}000"), "error": str(exc.detail),
            "problems": [p.as_dict() for p in problems]}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc), status=exc.status)
    response = drf_exception_handler(exc, context)  # also maps Http404 and Django's PermissionDenied
    if response is not None:
        converted = exc if isinstance(exc, exceptions.APIException) else (
            exceptions.NotFound() if response.status_code == 404 else exceptions.PermissionDenied())
        response.data = _drf_error_body(converted, context, response.status_code)
    return response


def not_found(request, exception):
    """Django's handler404: the JSON error body under /api/, Django's page elsewhere."""
    if not request.path_info.startswith(API_PREFIX):
        return page_not_found(request, exception)
    error = NotFound(f"No API endpoint at {request.path_info}.", [Problem(
        "schema ids are namespace:name (dem:sampleTable); the endpoints are listed in /api/schema/",
        attribute="path", value=request.path_info)])
    return JsonResponse(error_body(error), status=404)


def server_failed(request):
    """Django's handler500: the JSON error body under /api/ (the trace is only in the server log)."""
    if not request.path_info.startswith(API_PREFIX):
        return server_error(request)
    return JsonResponse({"code": "CST-500000", "error": "Internal error; it was logged on the server.",
                         "problems": []}, status=500)


def query_int(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within [minimum, maximum]; InvalidInput naming it otherwise."""
    raw = request.query_params.get(name) or None
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise InvalidInput(f"Invalid {name}.", [Problem(f"use a whole number from {minimum} to {maximum}",
                                                        attribute=name, value=raw)])
    return int(raw)


def cursor_encode(position: int) -> str:
    """An opaque `cursor` query value for keyset pagination (the last row's sequence or id)."""
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def position_parse(text: str) -> int | None:
    """A keyset position (a sequence or an id, 0 to MAX_POSITION) written in decimal, else None."""
    return int(text) if _DIGITS.fullmatch(text) and int(text) <= MAX_POSITION else None


def cursor_decode(raw: str | None) -> int | None:
    """The position of a `cursor` made by cursor_encode; InvalidInput for anything else."""
    if not raw:
        return None
    try:
        position = position_parse(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except ValueError:  # not base64, or not text once decoded
        position = None
    if position is None:
        raise InvalidInput("The cursor is invalid.", [Problem("use the `next` link of the previous page",
                                                              attribute="cursor", value=raw)])
    return position


class IdCursorPagination(CursorPagination):
    """DRF's cursor pagination on the primary key, refusing positions that are not ids.

    DRF trusts the position inside a cursor and hands it to the query, so an edited cursor
    (`p=abc`, a 5000-digit number) failed in the database; it is now DRF's "Invalid cursor" (404).
    """

    ordering = "pk"

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and position_parse(cursor.position) is None:
            raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, plus the error answers every operation can give, with their body.

    Views document the errors their services raise; the ones DRF and the parsers add whatever the
    view (401, 403, a request body's 400/413/415, an unknown object's or cursor's 404) come from here.
    """

    def _get_response_bodies(self, direction="response"):
        # extend_schema replaces get_response_serializers, so the errors are added one step later.
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_statuses().items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), str(code), direction=direction)
        return responses

    def _error_statuses(self) -> dict[int, str]:
        errors = {401: "Not authenticated: no or unknown token.", 403: "The user lacks the permission."}
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            errors.update({400: "The body is not valid (every problem is listed).",
                           413: "The body is larger than the endpoint's limit.",
                           415: "Unsupported Content-Type."})
        paginator = getattr(self.view, "pagination_class", None)
        if "{" in self.path:
            errors[404] = "No object has this id."
        elif self.method == "GET" and paginator is not None and issubclass(paginator, CursorPagination):
            errors[404] = "Invalid cursor."
        return errors
