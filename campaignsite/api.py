"""REST error mapping: domain errors become a status code and a JSON body naming what is wrong."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from campaignsite.errors import DomainError


def error_body(error: DomainError) -> dict:
    return {"code": error.code, "error": error.message, "problems": [p.as_dict() for p in error.problems]}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc), status=exc.status)
    return drf_exception_handler(exc, context)
