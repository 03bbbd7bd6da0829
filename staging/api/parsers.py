"""Request-body parsers that read at most a bounded number of bytes.

DRF hands custom parsers the raw request stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never
applies to them, and its own JSONParser reads the whole body first. These parsers read at most
`limit + 1` bytes and raise TooLarge (413) past the limit, so a 50 MB upload is refused without
being held in memory. The limit comes from the view's `max_body_bytes` (an int, or a property
reading settings so tests can override it); views without one get DEFAULT_BODY_MAX_BYTES.

The XML parsers return the body as bytes: parsing is the business of `staging.xml`, called by the
service that knows what the document means. JSON is decoded by `staging.records.json_decode`, which
also refuses nesting deeper than JSON_MAX_DEPTH levels; every JSON endpoint of the API reads its
body with BoundedJSONParser (it is DRF's default parser in settings).
"""

from rest_framework.parsers import BaseParser

from campaignsite.errors import TooLarge
from staging.records import json_decode

# A JSON string escapes quotes, backslashes and newlines with one extra byte each, so a source
# that fits the limit fits twice the limit once wrapped in JSON; the service re-checks the source.
JSON_ESCAPE_FACTOR = 2


# Views that take small JSON objects (services, subscription requests...) declare no limit of their own.
DEFAULT_BODY_MAX_BYTES = 1_048_576


def body_limit(parser_context: dict | None) -> int:
    """The byte limit the view declares for its request bodies (DEFAULT_BODY_MAX_BYTES if none)."""
    view = (parser_context or {}).get("view")
    limit = getattr(view, "max_body_bytes", None)
    return int(limit) if limit is not None else DEFAULT_BODY_MAX_BYTES


def read_bounded(stream, *, limit: int, declared_length: int | None = None, what: str = "request body") -> bytes:
    """Read the whole of `stream`, refusing with TooLarge as soon as it exceeds `limit` bytes."""
    if declared_length is not None and declared_length > limit:
        raise TooLarge(f"The {what} is {declared_length} bytes; the limit is {limit} bytes.")
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise TooLarge(f"The {what} is larger than the limit of {limit} bytes.")
    return data


def _declared_length(parser_context: dict | None) -> int | None:
    request = (parser_context or {}).get("request")
    meta = getattr(request, "META", {})
    try:
        return int(meta.get("CONTENT_LENGTH") or 0) or None
    except ValueError:
        return None


class BoundedXmlParser(BaseParser):
    """`application/xml` bodies, returned as bytes."""

    media_type = "application/xml"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return read_bounded(
            stream, limit=body_limit(parser_context), declared_length=_declared_length(parser_context),
            what="XML document",
        )


class BoundedTextXmlParser(BoundedXmlParser):
    """`text/xml` bodies (what SOAP-era clients send), returned as bytes."""

    media_type = "text/xml"


class BoundedJSONParser(BaseParser):
    """`application/json` bodies, bounded like the XML ones.

    `escape_factor` widens the limit for bodies that wrap a document in a JSON string (see
    JSON_ESCAPE_FACTOR); bodies that are the data themselves keep the view's limit as it is.
    """

    media_type = "application/json"
    escape_factor = JSON_ESCAPE_FACTOR

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limit(parser_context) * self.escape_factor
        data = read_bounded(stream, limit=limit, declared_length=_declared_length(parser_context), what="JSON body")
        return json_decode(data)
