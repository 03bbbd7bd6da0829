"""Reading request bodies, shared by the SOAP router and the REST API.

A client may send its body with `Transfer-Encoding: chunked` and no Content-Length. Django then
sees an empty body (its stream is limited to Content-Length, i.e. 0), but gunicorn has already
de-chunked the stream and marks it complete with `wsgi.input_terminated`; `read_body` reads it
there, never past the limit. The SOAP router calls `read_body` itself; for the REST API,
`ChunkedBodyMiddleware` does, so DRF's parsers see an ordinary body with its Content-Length.
"""

import io

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from campaignsite.errors import InvalidInput, Problem, TooLarge

API_PREFIX = "/api/"


def is_chunked(request: HttpRequest) -> bool:
    """A body the server de-chunked for us: no Content-Length, a stream marked complete."""
    return not request.META.get("CONTENT_LENGTH") and bool(request.META.get("wsgi.input_terminated"))


def read_body(request: HttpRequest, *, limit: int) -> bytes:
    """The request body, refusing (TooLarge) anything above `limit` before it is all in memory.

    Reads the stream directly: `request.body` would go through DATA_UPLOAD_MAX_MEMORY_SIZE and keep
    a second copy. Without Content-Length (chunked upload), the stream is read only when the server
    marks it terminated (gunicorn sets wsgi.input_terminated), never past `limit + 1` bytes.
    """
    length = request.META.get("CONTENT_LENGTH")
    if length:
        try:
            declared = int(length)
        except ValueError:
            raise InvalidInput("The Content-Length header is not a number.",
                               [Problem("send the body's size in bytes", attribute="Content-Length",
                                        value=length)]) from None
        if declared > limit:
            raise TooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes (INGEST_MAX_BYTES).")
        data = request.read(limit + 1)
    elif is_chunked(request):
        data = request.META["wsgi.input"].read(limit + 1)
    else:
        data = b""
    if len(data) > limit:
        raise TooLarge(f"The request body is more than {limit} bytes; the limit is {limit} bytes (INGEST_MAX_BYTES).")
    return data


class ChunkedBodyMiddleware:
    """Gives REST views the body of a chunked request, read by `read_body` up to INGEST_MAX_BYTES.

    The body becomes the request's stream with its real Content-Length, so DRF's parsers read it
    like any other and apply each view's own, smaller limit. Only /api/ paths: the SOAP router
    reads its bodies itself.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path_info.startswith(API_PREFIX) and is_chunked(request):
            from campaignsite.api import error_body  # DRF is imported only for API requests

            try:
                data = read_body(request, limit=settings.INGEST_MAX_BYTES)
            except (TooLarge, InvalidInput) as error:
                return JsonResponse(error_body(error), status=error.status)
            # Django reads a request's body from `_stream` (a stream limited to Content-Length);
            # WSGIRequest builds it from the environ before any middleware runs, so it is replaced.
            request._stream = io.BytesIO(data)
            request.META["CONTENT_LENGTH"] = str(len(data))
        return self.get_response(request)
