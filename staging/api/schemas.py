"""REST adapter for schemas: parse the request, call one service, format the answer.

Domain errors raised by the services become `{"code", "error", "problems"}` bodies with their
status in `campaignsite.api.exception_handler`; so do invalid request fields (see `_validated`).
"""

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.response import Response
from rest_framework.views import APIView

from campaignsite.api import ErrorSerializer, ProblemSerializer
from campaignsite.errors import InvalidInput, InvalidXml, NotFound, Problem
from staging import services
from staging.api.parsers import BoundedJSONParser, BoundedTextXmlParser, BoundedXmlParser
from staging.models import Schema, StructureState

# --- Serializers ------------------------------------------------------------------------------


class StatementSerializer(serializers.Serializer):
    database = serializers.CharField(source="alias", help_text="Database alias: cloud or default (local).")
    table = serializers.CharField()
    kind = serializers.CharField()
    sql = serializers.CharField()
    destructive = serializers.BooleanField()


class PlanSerializer(serializers.Serializer):
    ddl = serializers.CharField(source="plan.as_text", help_text="The statements as a SQL script.")
    statements = StatementSerializer(source="plan.statements", many=True)
    applied = serializers.BooleanField()


class AttributeSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Attribute name: `email`, or a path for a sub-element's (`location/city`).")
    xpath = serializers.CharField(help_text="Its XPath in records: `@email`, `location/@city`.")
    type = serializers.CharField()
    sql_name = serializers.CharField()
    length = serializers.IntegerField(allow_null=True)
    not_null = serializers.BooleanField()
    default = serializers.CharField(allow_null=True)
    enum = serializers.CharField(allow_null=True)
    label = serializers.CharField()
    link = serializers.CharField(allow_null=True, help_text="The link whose foreign key this column is.")
    belongs_to = serializers.CharField(allow_null=True, help_text="The extension (or template) that declared it.")


class XmlFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    xpath = serializers.CharField()
    type = serializers.CharField()
    label = serializers.CharField()
    belongs_to = serializers.CharField(allow_null=True)


class JoinSerializer(serializers.Serializer):
    source = serializers.CharField(help_text="Attribute of this schema (the foreign key column).")
    target = serializers.CharField(help_text="Attribute of the target schema.")


class LinkSerializer(serializers.Serializer):
    name = serializers.CharField()
    target = serializers.CharField(help_text="Schema id of the target.")
    unbound = serializers.BooleanField(help_text="A collection link: no column on this side.")
    joins = serializers.SerializerMethodField()
    integrity = serializers.CharField(allow_null=True)
    rev_link = serializers.CharField(allow_null=True)
    rev_integrity = serializers.CharField(allow_null=True)
    external_join = serializers.BooleanField()
    belongs_to = serializers.CharField(allow_null=True)

    @extend_schema_field(JoinSerializer(many=True))
    def get_joins(self, link) -> list[dict]:
        return [{"source": source, "target": target} for source, target in link.joins]


class KeySerializer(serializers.Serializer):
    name = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField())
    internal = serializers.BooleanField()


class DescriptionSerializer(serializers.Serializer):
    """What the source says about storage, as parsed by staging.srcschema."""

    sql_table = serializers.CharField()
    staging_table = serializers.CharField()
    autopk = serializers.BooleanField()
    autouuid = serializers.BooleanField()
    data_source = serializers.CharField(allow_null=True)
    primary_key = serializers.ListField(child=serializers.CharField(), help_text="Empty for a key-less table.")
    view = serializers.BooleanField(help_text="Maps an existing table: never created, altered or dropped.")
    attributes = AttributeSerializer(many=True)
    xml_fields = XmlFieldSerializer(many=True, help_text="Values stored in the mData XML document.")
    links = LinkSerializer(many=True)
    keys = KeySerializer(many=True)


class SchemaSummarySerializer(serializers.Serializer):
    id = serializers.CharField(source="schema_id", help_text="namespace:name, e.g. dem:sampleTable.")
    label = serializers.CharField()
    auto_stg = serializers.BooleanField()
    built_in = serializers.BooleanField()
    structure_state = serializers.ChoiceField(choices=StructureState.choices)
    staging_id = serializers.CharField(allow_null=True, help_text="ns:nameStg while autoStg is on, else null.")
    url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, schema: Schema) -> str:
        path = reverse("schema-detail", kwargs={"schema_id": schema.schema_id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class SchemaDetailSerializer(SchemaSummarySerializer):
    source = serializers.CharField(help_text="The srcSchema XML document, verbatim.")
    extends = serializers.CharField(
        allow_null=True, help_text="For an extension schema: the schema it extends (its fields are that "
        "schema's columns); else null.")
    extensions = serializers.ListField(
        source="description.extensions", child=serializers.CharField(),
        help_text="Ids of the extension schemas merged into this one, in merge order.")
    warnings = serializers.SerializerMethodField(
        help_text="Constructs of the source that are kept but ignored (not errors).")
    description = DescriptionSerializer(help_text="For an extension: its own additions; for a schema with "
                                        "extensions: the merged description.")
    created_at = serializers.DateTimeField()
    modified_at = serializers.DateTimeField()
    structure_applied_at = serializers.DateTimeField(allow_null=True)
    pending = serializers.SerializerMethodField(help_text="The DDL an update of the structure would run now.")

    def to_representation(self, schema: Schema) -> dict:
        data = super().to_representation(schema)
        data["extends"] = schema.extends or None
        return data

    @extend_schema_field(ProblemSerializer(many=True))
    def get_warnings(self, schema: Schema) -> list[dict]:
        return [problem.as_dict() for problem in schema.description.warnings]

    @extend_schema_field(PlanSerializer)
    def get_pending(self, schema: Schema) -> dict:
        return PlanSerializer({"plan": self.context["plan"], "applied": False}).data


class SchemaSourceSerializer(serializers.Serializer):
    source = serializers.CharField(trim_whitespace=False, help_text="The srcSchema XML document.")


class SchemaPatchSerializer(serializers.Serializer):
    source = serializers.CharField(trim_whitespace=False, required=False)
    auto_stg = serializers.BooleanField(required=False, help_text="Turn staging on or off (rewrites autoStg).")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give auto_stg, source, or both.")
        return attrs


class StructureUpdateSerializer(serializers.Serializer):
    confirm_destructive = serializers.BooleanField(
        default=False, help_text="Allow dropping columns and changing column types."
    )


# --- Request helpers ------------------------------------------------------------------------


def _validated(serializer_class, data) -> dict:
    """Validated fields, or InvalidInput naming each field at fault (the same body as service errors)."""
    serializer = serializer_class(data=data if data is not None else {})
    if serializer.is_valid():
        return serializer.validated_data
    problems = []
    for field, messages in serializer.errors.items():
        attribute = None if field == "non_field_errors" else field
        problems.extend(Problem(str(message), attribute=attribute) for message in messages)
    raise InvalidInput("The request body is not valid.", problems)


def _xml_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidXml("The schema is not UTF-8 encoded.", [Problem(f"byte {exc.start}: {exc.reason}")]) from None


def _request_fields(request, serializer_class) -> dict:
    """Fields of a JSON body, or {"source": ...} when the body is the XML document itself."""
    if isinstance(request.data, bytes):
        return {"source": _xml_text(request.data)}
    return _validated(serializer_class, request.data)


def _schema_for_write(schema_id: str) -> Schema:
    # schema_get also resolves a staging id; writes take the source id so nobody edits or deletes
    # dem:sampleTable believing they act on its staging copy.
    schema = services.schema_get(schema_id=schema_id)
    if schema.schema_id != schema_id:
        raise NotFound(
            f"'{schema_id}' is the staging schema of {schema.schema_id}; change {schema.schema_id} instead.",
            [Problem("use the source schema id in the URL", value=schema_id)],
        )
    return schema


def _detail(schema: Schema, request) -> dict:
    plan = services.structure_plan(schema=schema)
    return SchemaDetailSerializer(schema, context={"request": request, "plan": plan}).data


# --- Permissions ----------------------------------------------------------------------------


class SchemaPermissions(DjangoModelPermissions):
    """Model permissions, reads included: view_schema to read, add/change/delete to write."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


def _is_dry_run(request) -> bool:
    return request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")


class CanUpdateStructure(BasePermission):
    """Applying DDL needs staging.update_structure; a dry run only shows what GET already shows."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = "staging.view_schema" if _is_dry_run(request) else "staging.update_structure"
        return user.has_perm(needed)


# --- Views ----------------------------------------------------------------------------------

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 404, 409, 413)}
_SCHEMA_ID = OpenApiParameter(
    "schema_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="namespace:name, e.g. dem:sampleTable"
)
_SOURCE_BODY = {
    "application/json": SchemaSourceSerializer,
    "application/xml": OpenApiTypes.STR,
    "text/xml": OpenApiTypes.STR,
}


class SchemaViewMixin:
    parser_classes = [BoundedJSONParser, BoundedXmlParser, BoundedTextXmlParser]
    permission_classes = [SchemaPermissions]
    queryset = Schema.objects.all()  # read by DjangoModelPermissions to name the permissions

    @property
    def max_body_bytes(self) -> int:
        return settings.SCHEMA_MAX_BYTES


class SchemaListView(SchemaViewMixin, APIView):
    @extend_schema(summary="List schemas", responses=SchemaSummarySerializer(many=True), tags=["schemas"])
    def get(self, request):
        schemas = Schema.objects.only(
            "namespace", "name", "label", "auto_stg", "built_in", "target_fingerprint", "applied_fingerprint"
        )
        return Response(SchemaSummarySerializer(schemas, many=True, context={"request": request}).data)

    @extend_schema(
        summary="Create a schema",
        description="The body is the srcSchema XML document (application/xml or text/xml), "
        'or JSON {"source": "<srcSchema ...>"}. The database structure is not applied. Constructs that are '
        "kept but ignored (presentation elements, `length` on a number, ...) do not refuse the schema: they "
        "are listed in `warnings`. An extension schema (`extendedSchema`) needs the schema it extends.",
        request=_SOURCE_BODY,
        responses={201: SchemaDetailSerializer, **_ERRORS},
        tags=["schemas"],
    )
    def post(self, request):
        fields = _request_fields(request, SchemaSourceSerializer)
        schema = services.schema_create(source=fields["source"], user=request.user)
        return Response(_detail(schema, request), status=status.HTTP_201_CREATED)


@extend_schema(parameters=[_SCHEMA_ID], tags=["schemas"])
class SchemaDetailView(SchemaViewMixin, APIView):
    @extend_schema(summary="Read a schema, its structure state and pending DDL",
                   responses={200: SchemaDetailSerializer, 404: OpenApiResponse(ErrorSerializer)})
    def get(self, request, schema_id: str):
        return Response(_detail(services.schema_get(schema_id=schema_id), request))

    @extend_schema(summary="Replace a schema's source", request=_SOURCE_BODY,
                   responses={200: SchemaDetailSerializer, **_ERRORS})
    def put(self, request, schema_id: str):
        schema = _schema_for_write(schema_id)
        fields = _request_fields(request, SchemaSourceSerializer)
        schema = services.schema_update(schema=schema, source=fields["source"], user=request.user)
        return Response(_detail(schema, request))

    @extend_schema(summary="Turn staging on/off and/or replace the source",
                   request={"application/json": SchemaPatchSerializer},
                   responses={200: SchemaDetailSerializer, **_ERRORS})
    def patch(self, request, schema_id: str):
        schema = _schema_for_write(schema_id)
        fields = _request_fields(request, SchemaPatchSerializer)
        # Both changes or neither: the source first, so autoStg is set on the new document.
        with transaction.atomic(using="default"):
            if "source" in fields:
                schema = services.schema_update(schema=schema, source=fields["source"], user=request.user)
            if "auto_stg" in fields:
                schema = services.schema_set_auto_stg(schema=schema, enabled=fields["auto_stg"], user=request.user)
        return Response(_detail(schema, request))

    @extend_schema(summary="Delete a schema (not a built-in one; its tables are kept)",
                   responses={204: None, 404: OpenApiResponse(ErrorSerializer), 409: OpenApiResponse(ErrorSerializer)})
    def delete(self, request, schema_id: str):
        services.schema_delete(schema=_schema_for_write(schema_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchemaStructureView(SchemaViewMixin, APIView):
    permission_classes = [CanUpdateStructure]
    parser_classes = [BoundedJSONParser]

    @extend_schema(
        summary="Update the database structure of a schema",
        description="Applies the pending DDL to the cloud and local databases. With `?dry_run=1` nothing runs "
        "and the DDL is returned (needs only staging.view_schema); applying needs staging.update_structure. "
        "Dropping columns or changing types needs `confirm_destructive`.",
        parameters=[
            _SCHEMA_ID,
            OpenApiParameter("dry_run", OpenApiTypes.BOOL, OpenApiParameter.QUERY, description="Show, do not apply."),
        ],
        request={"application/json": StructureUpdateSerializer},
        responses={200: PlanSerializer, **_ERRORS},
        tags=["schemas"],
    )
    def post(self, request, schema_id: str):
        fields = _validated(StructureUpdateSerializer, request.data)
        dry_run = _is_dry_run(request)
        plan = services.structure_update(
            schema=services.schema_get(schema_id=schema_id),
            confirm_destructive=fields["confirm_destructive"],
            dry_run=dry_run,
            user=request.user,
        )
        return Response(PlanSerializer({"plan": plan, "applied": not dry_run}).data)
