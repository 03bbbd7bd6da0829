"""Campaign methods of xtk:session and xtk:persist, as thin adapters over the staging services.

Registered on import (StagingConfig.ready). Method names, parameter order and result element names
follow Campaign (reference/campaign-v8-behaviour.md §3, §5; acc-js-sdk-wire-format.md §3–5).
"""

import hashlib

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils import timezone

from campaignsite.errors import InvalidInput, NotFound, Problem, Unauthenticated
from campaignsite.soap import SoapCall, soap_method, xml_element
from staging import services
from staging.models import Schema
from staging.query import campaign_text, query_def_from_xml
from staging.records import records_from_xml
from staging.selectors import query_execute
from staging.soap_sessions import soap_session_open, soap_session_revoke
from staging.srcschema import SchemaDescription

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
    <method name="Logoff" static="true"/>
    <method name="GetServerTime" static="true">
      <parameters><param inout="out" name="serverTime" type="datetime"/></parameters>
    </method>
  </methods>
"""
_SESSION_SCHEMA_MD5 = hashlib.md5(_SESSION_SCHEMA_BODY.encode()).hexdigest()
SESSION_SCHEMA = (
    '<schema namespace="xtk" name="session" implements="xtk:persist" entitySchema="xtk:schema" '
    f'xtkschema="xtk:schema" label="Sessions to the application server" md5="{_SESSION_SCHEMA_MD5}">'
    f"{_SESSION_SCHEMA_BODY}</schema>"
)


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
    rights = "".join(xml_element("login-right", {"right": right}) for right in _rights(user))
    packages = xml_element("installed-package", {"name": "core", "namespace": "nms"})
    user_info = xml_element("userInfo", {
        "login": user.get_username(), "loginId": str(user.pk), "loginCS": user.get_full_name() or user.get_username(),
        "locale": "en", "instanceLocale": "en", "timezone": settings.TIME_ZONE, "datakitInDatabase": "true",
    }, rights + packages)
    return xml_element("sessionInfo", content=server + user_info)


def _rights(user) -> list[str]:
    if user.is_superuser:
        return ["admin"]
    # Our permissions, named by codename, so a client can see what the account may do.
    return sorted(p.partition(".")[2] for p in user.get_all_permissions() if p.startswith("staging."))


@soap_method(SESSION, "Logon", anonymous=True,
             params=(("login", "string"), ("password", "string"), ("parameters", "DOMElement")),
             returns=(("pstrSessionToken", "string"), ("pSessionInfo", "DOMElement"), ("pstrSecurityToken", "string")))
def logon(call: SoapCall):
    login = call.text("login", "strLogin")
    password = call.text("password", "strPassword")
    user = authenticate(call.request, username=login, password=password) if login else None
    if user is None or not user.is_active:
        # One message whichever part was wrong, so the answer does not confirm that a login exists.
        raise Unauthenticated("Invalid login or password.")
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


# --- xtk:persist: schemas --------------------------------------------------------------------

def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def schema_document(description: SchemaDescription, *, staging: bool) -> str:
    """The compiled-schema document (`xtk:schema`) of a source schema or of its staging schema."""
    name = description.staging_element if staging else description.name
    label = f"{description.label} (Staging)" if staging else description.label
    table = description.staging_table if staging else description.sql_table
    attributes = "".join(
        xml_element("attribute", {
            "name": a.name, "type": a.type, "sqlname": a.sql_name, "label": a.label or None,
            "length": str(a.length) if a.type in ("string", "uuid") and a.length else None,
            "notNull": "true" if a.not_null else None, "enum": a.enum,
        })
        for a in description.attributes
    )
    keys = xml_element("key", {"name": "id", "internal": "true"},
                       "".join(xml_element("keyfield", {"xpath": f"@{f}"}) for f in description.primary_key))
    keys += "".join(
        xml_element("key", {"name": k.name}, "".join(xml_element("keyfield", {"xpath": f"@{f}"}) for f in k.fields))
        for k in description.keys
    )
    element = xml_element("element", {
        "name": name, "label": label, "sqltable": table, "autopk": "true" if description.autopk else None,
        "autouuid": "true" if description.autouuid else None,
        "autoStg": "true" if description.auto_stg and not staging else None,
        "dataSource": None if staging else description.data_source,
    }, keys + attributes)
    root_attrs = {
        "namespace": description.namespace, "name": name, "label": label, "xtkschema": "xtk:schema",
        "entitySchema": "xtk:schema", "mappingType": "sql",
        "stgSrcSchema": description.id if staging else None,
    }
    md5 = _md5(repr(sorted((k, v) for k, v in root_attrs.items() if v)) + element)
    return xml_element("schema", {**root_attrs, "md5": md5}, element)


def _entity_document(pk: str) -> str | None:
    entity, _, schema_id = pk.partition("|")
    if entity != "xtk:schema" or not schema_id:
        return None
    if schema_id == "xtk:session":
        return SESSION_SCHEMA
    if schema_id == QUERY_DEF:
        return QUERY_DEF_SCHEMA
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
    """`pk` = "xtk:schema|<schema id>": the schema document, empty when unknown or when `md5` is current."""
    pk = call.text("pk")
    document = _entity_document(pk)
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
    services.records_write(schema_id=schema_id, records=records, user=call.user)
    return ()


@soap_method(SESSION, "WriteCollection", **_WRITES)
def write_collection(call: SoapCall):
    schema_id, records = _records_of(call)
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
