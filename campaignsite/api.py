"""REST helpers shared by the apps: domain errors as status + JSON body, opaque pagination cursors."""

import base64

from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from campaignsite.errors import DomainError, InvalidInput, Problem, Unauthenticated


def error_body(error: DomainError) -> dict:
    return {"code": error.code, "error": error.message, "problems": [p.as_dict() for p in error.problems]}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc), status=exc.status)
    response = drf_exception_handler(exc, context)
    if isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
        # DRF's answer keeps its status and WWW-Authenticate challenge; only the body takes our shape.
        response.data = error_body(Unauthenticated(str(exc.detail)))
    return response


def cursor_encode(position: int) -> str:
    """An opaque `cursor` query value for keyset pagination (the last row's sequence or id)."""
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def cursor_decode(raw: str | None) -> int | None:
    """The position of a `cursor` made by cursor_encode; InvalidInput for anything else."""
    if not raw:
        return None
    try:
        return int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except ValueError:
        raise InvalidInput("The cursor is invalid.", [Problem("use the `next` link of the previous page",
                                                              attribute="cursor", value=raw)]) from None
