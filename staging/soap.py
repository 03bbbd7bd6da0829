"""Campaign methods of xtk:session and xtk:persist, as thin adapters over the staging services.

Registered on import (StagingConfig.ready). Method names, parameter order and result element names
follow Campaign (reference/campaign-v8-behaviour.md §3, §5; acc-js-sdk-wire-format.md §3–5).
"""

import functools
import hashlib
import logging
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from lxml import etree

from campaignsite.errors import InvalidInput, NotFound, Problem, Unauthenticated
from campaignsite.soap import SoapCall, api_token_user, soap_method, xml_element
from staging import services
from staging.logons import logon_authenticate
from staging.models import Schema
from staging.options import OPTION_SCHEMA_ID, OPTION_SRCSCHEMA, option_get, options_write
from staging.query import campaign_text, query_def_from_xml
from staging.records import records_from_xml
from staging.selectors import query_execute, schema_read_require
from staging.soap_sessions import soap_session_open, soap_session_revoke
from staging.srcschema import SchemaDescription, parse_srcschema
from staging.xml import parse_xml

logger = logging.getLogger(__name__)

SESSION = "xtk:session"
PERSIST = "xtk:persist"
# The SDK calls the methods of the persist interface xtk:session implements with this URN.
PERSIST_OF_SESSION = "xtk:persist|xtk:session"
# Campaign answers the persist methods in this namespace, Logon/Logoff/GetServerTime in urn:xtk:session.
WPP_DEFAULT = "urn:wpp:default"

SERVER_BUILD = "9999"
SERVER_MAJOR, SERVER_MINOR, SERVER_SERVICE_PACK = "8", "7", "0"
INSTANCE_NAME = "campaign-staging"

# The xtk:session schema as the SDK needs it to learn method signatures: the persist methods are
# static members of an <interface name="persist"> and the schema implements xtk:persist, so the SDK
# calls them with URN xtk:persist|xtk:session (acc-js-sdk-wire-format.md §4). Input <param> names
# become the SDK's request element names; outputs are read by position and type.
_SESSION_SCHEMA_BODY = """
  <interface async="true" label="Persistence" name="persist">
    <method name="Write" static="true">
      <parameters><param desc="Document of difference" name="doc" type="DOMDocument"/></parameters>
    </method>
    <method name="WriteCollection" static="true">
      <parameters><param desc="Difference collection document" name="doc" type="DOMDocument"/></parameters>
    </method>
    <method name="Ingest" static="true">
      <parameters>
        <param desc="New document to be inserted." name="doc" type="DOMDocument"/>
        <param desc="UUID values result." inout="out" name="sUuids" type="string"/>
      </parameters>
    </method>
    <method name="IngestExt" static="true">
      <parameters><param desc="Document to be inserted or updated." name="doc" type="DOMDocument"/></parameters>
    </method>
    <method name="GetEntityIfMoreRecent" static="true">
      <parameters>
        <param name="pk" type="string"/>
        <param name="md5" type="string"/>
        <param inout="out" name="doc" type="DOMDocument"/>
        <param name="mustExist" type="boolean"/>
      </parameters>
    </method>
  </interface>
  <element name="serverInfo"/>
  <element name="userInfo"/>
  <element name="session"/>
  <methods>
    <method access="anonymous" name="Logon" static="true">
      <parameters>
        <param name="login" type="string"/>
        <param name="password" type="string"/>
        <param name="parameters" type="DOMElement"/>
        <param inout="out" name="sessionToken" type="string"/>
        <param inout="out" name="sessionInfo" type="sessionInfo"/>
        <param inout="out" name="securityToken" type="string"/>
      </parameters>
    </method>
    <method access="anonymous" name="BearerTokenLogon" static="true">
      <parameters>
        <param name="bearerToken" type="string"/>
        <param inout="out" name="sessionToken" type="string"/>
        <param inout="out" name="sessionInfo" type="sessionInfo"/>
        <param inout="out" name="securityToken" type="string"/>
      </parameters>
    </method>
    <method name="Logoff" static="true"/>
    <method name="GetServerTime" static="true">
      <parameters><param inout="out" name="serverTime" type="datetime"/></parameters>
    </method>
    <method name="GetOption" static="true">
      <parameters>
        <param name="name" type="string"/>
        <param inout="out" name="value" type="string"/>
        <param inout="out" name="type" type="byte"/>
      </parameters>
    </method>
    <method name="GetUserInfo" static="true">
      <parameters><param inout="out" name="userInfo" type="sessionUserInfo"/></parameters>
    </method>
  </methods>
"""
_SESSION_SCHEMA_MD5 = hashlib.md5(_SESSION_SCHEMA_BODY.encode()).hexdigest()
SESSION_SCHEMA = (
    '<schema namespace="xtk" name="session" implements="xtk:persist" entitySchema="xtk:schema" '
    f'xtkschema="xtk:schema" label="Sessions to the application server" md5="{_SESSION_SCHEMA_MD5}">'
    f"{_SESSION_SCHEMA_BODY}</schema>"
)


# --- Plain pages clients call to check the server ----------------------------------------------

def _utc_text(now) -> str:
    now = now.astimezone(dt_timezone.utc)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@csrf_exempt  # anonymous and read-only: a POST gets 405, not a CSRF page
@require_safe
def redir_test(request: HttpRequest) -> HttpResponse:
    """GET /r/test: Campaign's redirection-server probe, anonymous (the SDK's `client.test()`).

    Tells only what any caller may know: the build, the instance name, the caller's own address and
    the host it asked for; never the machine's name or anything from the database.
    """
    status = xml_element("redir", {
        "status": "OK", "date": _utc_text(timezone.now()), "build": SERVER_BUILD,
        "version": f"{SERVER_MAJOR}.{SERVER_MINOR}.{SERVER_SERVICE_PACK}", "instance": INSTANCE_NAME,
        "sourceIP": request.META.get("REMOTE_ADDR", ""), "host": request.get_host(), "localHost": INSTANCE_NAME,
    })
    return HttpResponse(status, content_type="text/xml;charset=utf-8")


@csrf_exempt  # anonymous and read-only: a POST gets 405, not a CSRF page
@require_safe
def ping(request: HttpRequest) -> HttpResponse:
    """GET /nl/jsp/ping.jsp: "OK" and the server time, one per line, when the database answers
    (the SDK's `client.ping()`); "Error" and 503 when it does not. Anonymous."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.exception("ping.jsp: the database does not answer")
        return HttpResponse("Error\nThe database does not answer.\n", status=503,
                            content_type="text/plain;charset=utf-8")
    return HttpResponse(f"OK\n{_utc_text(timezone.now())}\n", content_type="text/plain;charset=utf-8")


# --- xtk:session: sessions -------------------------------------------------------------------

def session_info(user, *, now) -> str:
    """The <sessionInfo> Logon returns; the SDK needs both <serverInfo> and <userInfo>."""
    ttl = str(settings.SOAP_SESSION_TTL_SECONDS)
    server = xml_element("serverInfo", {
        "buildNumber": SERVER_BUILD, "majNumber": SERVER_MAJOR, "minNumber": SERVER_MINOR,
        "servicePack": SERVER_SERVICE_PACK, "instanceName": INSTANCE_NAME,
        "serverDate": now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "sessionTimeOut": ttl, "securityTimeOut": ttl,
    })
    return xml_element("sessionInfo", content=server + user_info(user))


def user_info(user) -> str:
    """The <userInfo> of Logon's session info, also GetUserInfo's answer."""
    rights = "".join(xml_element("login-right", {"right": right}) for right in _rights(user))
    packages = xml_element("installed-package", {"name": "core", "namespace": "nms"})
    return xml_element("userInfo", {
        "login": user.get_username(), "loginId": str(user.pk), "loginCS": user.get_full_name() or user.get_username(),
        "locale": "en", "instanceLocale": "en", "timezone": settings.TIME_ZONE, "datakitInDatabase": "true",
    }, rights + packages)


def _rights(user) -> list[str]:
    if user.is_superuser:
        return ["admin"]
    # Our permissions, named by codename, so a client can see what the account may do.
    return sorted(p.partition(".")[2] for p in user.get_all_permissions() if p.startswith("staging."))


def logon_user(request, *, login: str, password: str):
    """The active user a login and password name: Logon's check, also used for a "login/password"
    session token (SOAP_ALLOW_USER_PASSWORD). Throttled before any password is hashed, and one message
    whichever part was wrong (staging/logons.py)."""
    return logon_authenticate(request=request, login=login, password=password)


@soap_method(SESSION, "Logon", anonymous=True,
             params=(("login", "string"), ("password", "string"), ("parameters", "DOMElement")),
             returns=(("pstrSessionToken", "string"), ("pSessionInfo", "DOMElement"), ("pstrSecurityToken", "string")))
def logon(call: SoapCall):
    user = logon_user(call.request, login=call.text("login", "strLogin"), password=call.text("password", "strPassword"))
    _, session_token, security_token = soap_session_open(user=user)
    return session_token, session_info(user, now=timezone.now()), security_token


@soap_method(SESSION, "BearerTokenLogon", anonymous=True, params=(("bearerToken", "string"),),
             returns=(("pstrSessionToken", "string"), ("pSessionInfo", "DOMElement"), ("pstrSecurityToken", "string")))
def bearer_token_logon(call: SoapCall):
    """Logon with an API token instead of a password; answers exactly as Logon does."""
    user = api_token_user(call.text("bearerToken", "strBearerToken"))
    if user is None:
        raise Unauthenticated("Invalid bearer token.",
                              [Problem("pass an active API token (admin: API tokens, or manage.py drf_create_token) as bearerToken",
                                       attribute="bearerToken")])
    _, session_token, security_token = soap_session_open(user=user)
    return session_token, session_info(user, now=timezone.now()), security_token


@soap_method(SESSION, "Logoff")
def logoff(call: SoapCall):
    if call.session is not None:
        soap_session_revoke(session=call.session)
    return ()


@soap_method(SESSION, "GetServerTime", returns=(("pdtServerTime", "datetime"),))
def get_server_time(call: SoapCall):
    return (timezone.now(),)


@soap_method(SESSION, "GetUserInfo", returns=(("pUserInfo", "DOMElement"),))
def get_user_info(call: SoapCall):
    return (user_info(call.user),)


@soap_method(SESSION, "GetOption", params=(("name", "string"),),
             returns=(("pstrValue", "string"), ("pbtType", "byte")))
def get_option(call: SoapCall):
    """An option's value as text and its type code; "" and 0 for an option that does not exist."""
    return option_get(name=call.text("name", "strName"))


# --- xtk:persist: schemas --------------------------------------------------------------------

def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _xpath(name: str) -> str:
    """`location/city` -> `location/@city`: an attribute path as Campaign writes it."""
    *parents, leaf = name.split("/")
    return "/".join([*parents, f"@{leaf}"])


def _element_content(description: SchemaDescription) -> str:
    """The attributes of the main element, sub-elements nested as `<element name="location">`, and the
    links as `<element type="link">`. The mData column holding the XML fields is storage, not shown."""
    tree: dict = {}  # sub-element name -> subtree; "" -> the attribute elements at this level
    for attribute in (*description.attributes, *description.xml_fields):
        if attribute.xml_data:
            continue
        *parents, leaf = attribute.name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node.setdefault("", []).append(xml_element("attribute", {
            "name": leaf, "type": attribute.type, "sqlname": None if attribute.xml else attribute.sql_name,
            "label": attribute.label or None, "desc": attribute.desc or None,
            "length": str(attribute.length) if attribute.type in ("string", "uuid") and attribute.length else None,
            "notNull": "true" if attribute.not_null else None, "enum": attribute.enum, "default": attribute.default,
            "xml": "true" if attribute.xml else None,
        }))

    def render(node: dict) -> str:
        return "".join(node.get("", [])) + "".join(
            xml_element("element", {"name": name}, render(child)) for name, child in node.items() if name)

    links = "".join(
        xml_element("element", {
            "name": link.name, "type": "link", "target": link.target, "label": link.label or None,
            "unbound": "true" if link.unbound else None, "integrity": link.integrity,
            "revLink": link.rev_link, "revIntegrity": link.rev_integrity,
        }, "".join(xml_element("join", {"xpath-src": _xpath(s), "xpath-dst": _xpath(d)}) for s, d in link.joins))
        for link in description.links
    )
    return render(tree) + links


def schema_document(description: SchemaDescription, *, staging: bool) -> str:
    """The compiled-schema document (`xtk:schema`) of a source schema or of its staging schema.

    What the SDK's schema objects read: the root's namespace, name, label, labelSingular, mappingType
    and md5; the main element with its attributes (type, label, length, enum...) and keys; the
    enumerations with their values.
    """
    name = description.staging_element if staging else description.name
    label = f"{description.label} (Staging)" if staging else description.label
    table = description.staging_table if staging else description.sql_table
    keys = "".join(
        xml_element("key", {"name": key_name, "internal": internal},
                    "".join(xml_element("keyfield", {"xpath": _xpath(f)}) for f in fields))
        for key_name, internal, fields in (
            *([("id", "true", description.primary_key)] if description.primary_key else []),
            *((k.name, None, k.fields) for k in description.keys),
        )
    )
    enumerations = "".join(
        xml_element("enumeration", {"name": e.name, "basetype": e.basetype, "default": e.default},
                    "".join(xml_element("value", {"name": v.name, "label": v.label or None, "value": v.value})
                            for v in e.values))
        for e in description.enumerations
    )
    element = xml_element("element", {
        "name": name, "label": label, "sqltable": table, "autopk": "true" if description.autopk else None,
        "autouuid": "true" if description.autouuid else None,
        "autoStg": "true" if description.auto_stg and not staging else None,
        "dataSource": None if staging else description.data_source,
    }, keys + _element_content(description))
    root_attrs = {
        "namespace": description.namespace, "name": name, "label": label,
        "labelSingular": description.label_singular or None, "xtkschema": "xtk:schema",
        "entitySchema": "xtk:schema", "mappingType": "sql",
        "stgSrcSchema": description.id if staging else None,
    }
    content = enumerations + element
    md5 = _md5(repr(sorted((k, v) for k, v in root_attrs.items() if v)) + content)
    return xml_element("schema", {**root_attrs, "md5": md5}, content)


@functools.cache
def _option_description() -> SchemaDescription:
    return parse_srcschema(OPTION_SRCSCHEMA, builtin=True)


def _source_document(schema_id: str) -> str | None:
    """The stored srcSchema of `schema_id`, as an element (its XML declaration dropped)."""
    if schema_id == OPTION_SCHEMA_ID:
        source = OPTION_SRCSCHEMA
    else:
        namespace, _, name = schema_id.partition(":")
        source = Schema.objects.filter(namespace=namespace, name=name).values_list("source", flat=True).first()
    if source is None:
        return None
    return etree.tostring(parse_xml(source, max_bytes=settings.SCHEMA_MAX_BYTES, what="schema"), encoding="unicode")


def _entity_document(pk: str, *, user) -> str | None:
    entity, _, schema_id = pk.partition("|")
    if entity == "xtk:srcSchema" and schema_id:
        if schema_id != OPTION_SCHEMA_ID:
            schema_read_require(user=user, schema_id=schema_id)
        return _source_document(schema_id)
    if entity != "xtk:schema" or not schema_id:
        return None
    if schema_id == "xtk:session":
        return SESSION_SCHEMA  # method signatures only: every client needs them to call Ingest at all
    if schema_id == OPTION_SCHEMA_ID:
        return schema_document(_option_description(), staging=False)
    if schema_id == QUERY_DEF:
        return QUERY_DEF_SCHEMA
    schema_read_require(user=user, schema_id=schema_id)
    namespace, _, name = schema_id.partition(":")
    schema = Schema.objects.filter(namespace=namespace, name=name).first()
    staging = False
    if schema is None and name.endswith("Stg"):
        schema = Schema.objects.filter(namespace=namespace, name=name[: -len("Stg")], auto_stg=True).first()
        staging = schema is not None
    if schema is None:
        return None
    return schema_document(schema.description, staging=staging)


@soap_method(PERSIST, "GetEntityIfMoreRecent", aliases=(PERSIST_OF_SESSION, SESSION), response_ns=WPP_DEFAULT,
             params=(("pk", "string"), ("md5", "string"), ("mustExist", "boolean")),
             returns=(("pdomDoc", "DOMDocument"),))
def get_entity_if_more_recent(call: SoapCall):
    """`pk` = "xtk:schema|<schema id>": the schema document, empty when unknown or when `md5` is current.

    `xtk:schema|xtk:session` is open to any caller with a session; other schemas need the permission
    selectors.schema_read_require names.
    """
    pk = call.text("pk")
    document = _entity_document(pk, user=call.user)
    if document is None:
        if call.text("mustExist").lower() in ("true", "1"):
            raise NotFound(f"The entity '{pk}' does not exist.",
                           [Problem("give 'xtk:schema|<namespace:name>' of a registered schema", attribute="pk",
                                    value=pk)])
        return (None,)
    md5 = call.text("md5")
    if md5 and f'md5="{md5}"' in document.partition(">")[0].replace("'", '"'):
        return (None,)  # the caller's copy is current
    return (document,)


# --- xtk:persist: writes ---------------------------------------------------------------------

def _records_of(call: SoapCall):
    """(xtkschema, records) of the call's document; the document must name its schema."""
    root = call.document("doc", "domDoc")
    schema_id, records = records_from_xml(root)
    if not schema_id:
        raise InvalidInput(
            "The document does not name its schema.",
            [Problem('add xtkschema="namespace:name" to the root element, e.g. xtkschema="dem:sampleTableStg" '
                     "for Ingest", record=0, attribute="xtkschema", line=root.sourceline)],
        )
    return schema_id, records


_WRITES = dict(aliases=(PERSIST_OF_SESSION, PERSIST), response_ns=WPP_DEFAULT, params=(("domDoc", "DOMDocument"),))


@soap_method(SESSION, "Ingest", returns=(("pstrSUuids", "string"),), **_WRITES)
def ingest(call: SoapCall):
    """Insert into staging; answers the generated UUIDs, comma-separated, empty for caller-supplied ids."""
    schema_id, records = _records_of(call)
    result = services.records_ingest(schema_id=schema_id, records=records, user=call.user)
    return (result.as_pstr(),)


@soap_method(SESSION, "IngestExt", **_WRITES)
def ingest_ext(call: SoapCall):
    """Insert, update or delete in staging, by key."""
    schema_id, records = _records_of(call)
    services.records_ingest_ext(schema_id=schema_id, records=records, user=call.user)
    return ()


@soap_method(SESSION, "Write", **_WRITES)
def write(call: SoapCall):
    """Campaign v7 path: apply the document to the source schema's cloud table, bypassing staging."""
    schema_id, records = _records_of(call)
    if schema_id == OPTION_SCHEMA_ID:  # what the SDK's client.setOption sends
        options_write(records=records, user=call.user)
        return ()
    services.records_write(schema_id=schema_id, records=records, user=call.user)
    return ()


@soap_method(SESSION, "WriteCollection", **_WRITES)
def write_collection(call: SoapCall):
    schema_id, records = _records_of(call)
    if schema_id == OPTION_SCHEMA_ID:
        options_write(records=records, user=call.user)
        return ()
    services.records_write(schema_id=schema_id, records=records, user=call.user)
    return ()


# --- nms:replicationStrategy -----------------------------------------------------------------

REPLICATION = "nms:replicationStrategy"


@soap_method(REPLICATION, "StartReplicateStagingData", params=(("schema", "string"),))
def start_replicate_staging_data(call: SoapCall):
    """Queue a sync of one schema now. Takes the source schema id (`dem:sampleTable`), as Campaign's
    `nms.replicationStrategy.StartReplicateStagingData("dem:sampleTable")` does; answers at once.
    """
    from staging.models import SyncRun
    from staging.sync import sync_enqueue

    schema_id = call.text("schema", "strSchema", "stagingSchema")
    if not schema_id:
        raise InvalidInput("StartReplicateStagingData needs the schema to synchronize.",
                           [Problem("pass the source schema id, e.g. <schema>dem:sampleTable</schema>",
                                    attribute="schema")])
    sync_enqueue(schema=schema_id, trigger=SyncRun.Trigger.SOAP, user=call.user)
    return ()


# --- xtk:queryDef: reading data back ---------------------------------------------------------

QUERY_DEF = "xtk:queryDef"

# What the SDK needs to call ExecuteQuery: a non-static (const) method whose "this" is the queryDef
# document, answering one DOM document.
_QUERY_DEF_SCHEMA_BODY = """
  <element name="queryDef"/>
  <methods>
    <method const="true" name="ExecuteQuery">
      <parameters><param desc="Output XML document" inout="out" name="output" type="DOMDocument"/></parameters>
    </method>
  </methods>
"""
QUERY_DEF_SCHEMA = (
    '<schema namespace="xtk" name="queryDef" entitySchema="xtk:schema" xtkschema="xtk:schema" label="Queries" '
    f'md5="{hashlib.md5(_QUERY_DEF_SCHEMA_BODY.encode()).hexdigest()}">{_QUERY_DEF_SCHEMA_BODY}</schema>'
)


def _record_xml(tag: str, record: dict, attrs: dict | None = None) -> str:
    values = {name: value for name, value in record.items() if not isinstance(value, dict)}
    children = "".join(_record_xml(name, value) for name, value in record.items() if isinstance(value, dict))
    return xml_element(tag, {**(attrs or {}), **values}, children)


def query_output(result) -> str:
    """The answer element Campaign writes: `<x-collection>` (select), `<x .../>` (get, getIfExists,
    empty when nothing matched), `<x count="N"/>` (count). Never empty: the SDK reads its root.
    """
    compiled = result.compiled
    element = compiled.element
    if compiled.operation == "count":
        return xml_element(element, {"count": str(result.count)})
    records = result.records(campaign_text)
    if compiled.operation == "select":
        return xml_element(f"{element}-collection", content="".join(_record_xml(element, r) for r in records))
    return _record_xml(element, records[0]) if records else xml_element(element)


@soap_method(QUERY_DEF, "ExecuteQuery", params=(("document", "DOMDocument"),),
             returns=(("pdomOutput", "DOMDocument"),))
def execute_query(call: SoapCall):
    """Run the queryDef sent as the method's first document (the SDK names it <document>)."""
    query_def = query_def_from_xml(call.document("document", "entity", "queryDef"))
    return (query_output(query_execute(query_def=query_def, user=call.user)),)
