"""A generic SOAP client, zeep, reads our WSDL and calls every registered method, parsing each answer.

zeep knows nothing of Campaign: it builds each request from the WSDL and reads each answer against
the WSDL's types, so a response element declared in the wrong namespace or a result of an undeclared
type fails here. Every method the server registers must have a case below.
"""

import re
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from lxml import etree
from tests.api_tokens import api_token

from campaignsite.soap import _REGISTRY
from staging.options import options_seed
from staging.services import builtin_schemas_load
from staging.soap_sessions import SoapSession
from subscriptions.models import Service
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import PASSWORD, staged_rows
from campaignsite.permissions import SYSTEM

zeep = pytest.importorskip("zeep")

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REGISTERED = sorted({(m.service, m.name) for m in _REGISTRY.values()})


class Zeep:
    """A zeep client per schema WSDL, logged on as a superuser through zeep's own Logon call."""

    def __init__(self, base_url: str, login: str):
        self.base_url = base_url
        self.login = login
        self._clients = {}
        self.session_token = self.security_token = ""

    def client(self, service: str):
        if service not in self._clients:
            client = zeep.Client(f"{self.base_url}/nl/jsp/schemawsdl.jsp?schema={quote(service)}")
            self._clients[service] = client
        client = self._clients[service]
        client.transport.session.headers["X-Security-Token"] = self.security_token
        return client

    def call(self, service: str, method: str, **params):
        return getattr(self.client(service).service, method)(sessiontoken=self.session_token, **params)

    def logon(self):
        result = self.call("xtk:session", "Logon", login=self.login, password=PASSWORD,
                           parameters={"_value_1": etree.Element("parameters")})
        self.session_token, self.security_token = result.pstrSessionToken, result.pstrSecurityToken
        return result


def element(xml: str) -> dict:
    """A DOMDocument/DOMElement argument: zeep's value for the WSDL's `Element` (any content) type."""
    return {"_value_1": etree.fromstring(xml)}


def root_of(result):
    """The root element of a DOM result: zeep reads the `Element` type's any-content into `_value_1`,
    and hands over that content itself when it is a method's only result."""
    value = getattr(result, "_value_1", result)
    return value[0] if isinstance(value, list) else value


def local(node) -> str:
    return etree.QName(node).localname


# --- One case per registered method ------------------------------------------------------------

def case_logon(z, ctx):
    result = z.logon()
    assert z.session_token.startswith("___") and z.security_token.startswith("@")
    info = root_of(result.pSessionInfo)
    assert local(info) == "sessionInfo"
    assert {local(child) for child in info} == {"serverInfo", "userInfo"}


def case_bearer_token_logon(z, ctx):
    key = api_token(ctx["user"])
    result = z.call("xtk:session", "BearerTokenLogon", bearerToken=key)
    assert result.pstrSessionToken.startswith("___") and result.pstrSecurityToken.startswith("@")
    assert local(root_of(result.pSessionInfo)) == "sessionInfo"


def case_logoff(z, ctx):
    assert z.call("xtk:session", "Logoff") is None
    assert not SoapSession.objects.filter(revoked_at__isnull=True).exists()


def case_get_server_time(z, ctx):
    assert z.call("xtk:session", "GetServerTime").year >= 2024


def case_get_option(z, ctx):
    options_seed()
    result = z.call("xtk:session", "GetOption", name="XtkDatabaseId")
    assert re.fullmatch(r"u[0-9A-F]{40}", result.pstrValue) and result.pbtType == 6


def case_get_user_info(z, ctx):
    info = root_of(z.call("xtk:session", "GetUserInfo"))
    assert (local(info), info.get("login")) == ("userInfo", ctx["user"].username)


def case_ingest(z, ctx):
    uuid = z.call("xtk:session", "Ingest",
                  domDoc=element('<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="zeep"/>'))
    assert UUID_RE.match(uuid)
    assert [r["testcol1"] for r in staged_rows(ctx["schema"])] == ["zeep"]


def case_ingest_ext(z, ctx):
    assert z.call("xtk:session", "IngestExt", domDoc=element(
        '<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="Z1" testcol1="ext"/>')) is None
    assert [(r["id"], r["testcol1"]) for r in staged_rows(ctx["schema"])] == [("Z1", "ext")]


def case_write(z, ctx):
    assert z.call("xtk:session", "Write", domDoc=element(
        '<sampleTable xtkschema="dem:sampleTable" id="W1" testcol1="w"/>')) is None


def case_write_collection(z, ctx):
    assert z.call("xtk:session", "WriteCollection", domDoc=element(
        '<sampleTable-collection xtkschema="dem:sampleTable"><sampleTable id="W2" testcol1="w"/>'
        "</sampleTable-collection>")) is None


def case_get_entity_if_more_recent(z, ctx):
    result = z.call("xtk:persist", "GetEntityIfMoreRecent", pk="xtk:schema|dem:sampleTableStg", md5="",
                    mustExist=False)
    schema = root_of(result)
    assert (local(schema), schema.get("name")) == ("schema", "sampleTableStg")


def case_subscribe(z, ctx):
    builtin_schemas_load(user=SYSTEM)
    Service.objects.create(name="newsletter")
    assert z.call("nms:subscription", "Subscribe", serviceName="newsletter",
                  recipient=element('<recipient _key="@email" email="zeep@example.com"/>'), create=True) is None


def case_unsubscribe(z, ctx):
    builtin_schemas_load(user=SYSTEM)
    Service.objects.create(name="newsletter")
    assert z.call("nms:subscription", "Unsubscribe", serviceName="newsletter",
                  recipient=element('<recipient _key="@email" email="zeep@example.com"/>')) is None


def case_start_replicate_staging_data(z, ctx):
    assert z.call("nms:replicationStrategy", "StartReplicateStagingData", schema="dem:sampleTable") is None


def case_execute_query(z, ctx):
    # Non-static: the queryDef is the first parameter after the session token, whatever the WSDL names it.
    operation = z.client("xtk:queryDef").service._binding._operations["ExecuteQuery"]
    first = operation.input.body.type.elements[1][0]
    result = z.call("xtk:queryDef", "ExecuteQuery", **{first: element(
        '<queryDef schema="dem:sampleTableStg" operation="count" xtkschema="xtk:queryDef"/>')})
    assert result is not None


CASES = {
    ("xtk:session", "Logon"): case_logon,
    ("xtk:session", "BearerTokenLogon"): case_bearer_token_logon,
    ("xtk:session", "Logoff"): case_logoff,
    ("xtk:session", "GetServerTime"): case_get_server_time,
    ("xtk:session", "GetOption"): case_get_option,
    ("xtk:session", "GetUserInfo"): case_get_user_info,
    ("xtk:session", "Ingest"): case_ingest,
    ("xtk:session", "IngestExt"): case_ingest_ext,
    ("xtk:session", "Write"): case_write,
    ("xtk:session", "WriteCollection"): case_write_collection,
    ("xtk:persist", "GetEntityIfMoreRecent"): case_get_entity_if_more_recent,
    ("nms:subscription", "Subscribe"): case_subscribe,
    ("nms:subscription", "Unsubscribe"): case_unsubscribe,
    ("nms:replicationStrategy", "StartReplicateStagingData"): case_start_replicate_staging_data,
    ("xtk:queryDef", "ExecuteQuery"): case_execute_query,
}


@pytest.mark.parametrize(("service", "method"), REGISTERED, ids=[f"{s}#{m}" for s, m in REGISTERED])
def test_zeep_calls_the_method_from_the_wsdl_and_parses_the_answer(live_server, sample_schema, service, method):
    case = CASES.get((service, method))
    assert case is not None, f"{service}#{method} is registered but has no zeep case in {__name__}: add one"
    user = get_user_model().objects.create_superuser("zeep", password=PASSWORD)
    z = Zeep(live_server.url, user.username)
    if method != "Logon":
        z.logon()

    case(z, {"user": user, "schema": sample_schema})


def test_a_fault_reaches_zeep_as_a_parsed_fault(live_server, sample_schema):
    get_user_model().objects.create_superuser("zeep", password=PASSWORD)
    z = Zeep(live_server.url, "zeep")
    z.logon()

    with pytest.raises(zeep.exceptions.Fault) as raised:
        z.call("xtk:session", "Ingest", domDoc=element(
            '<sampleTableStg xtkschema="dem:sampleTableStg" nosuchattr="boom"/>'))

    assert raised.value.message.startswith("SOP-330011 ")
    assert "nosuchattr" in raised.value.detail.text
