"""Good and bad SOAP traffic for the one-worker site (tests/site.py): the valid calls of every kind a
bad-input test sends after each bad one, the corpus of bad inputs, and the row counts that show a
refused call wrote nothing. Used by test_bad_then_good.py and test_fuzz.py."""

import http.client
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from tests.api_tokens import api_token

from staging import ddl, services
from tests.soap.conftest import SOAP_ENV, Answer, doc_param, logon_envelope, sdk_envelope
from campaignsite.permissions import SYSTEM

PASSWORD = "Good-pass;1"
LOGIN = "traffic"
# The seed's sample table plus a typed attribute, so "a value of the wrong type" can be sent.
SCHEMA = """\
<srcSchema entitySchema="xtk:srcSchema" label="Sample Table" mappingType="sql" name="sampleTable" namespace="dem"
           xtkschema="xtk:srcSchema">
  <element autoStg="true" autopk="true" autouuid="true" dataSource="nms:extAccount:ffda" label="Sample Table"
           name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
    <attribute label="Quantity" name="qty" type="long"/>
  </element>
</srcSchema>
"""
PERSIST = "xtk:persist|xtk:session"  # the SDK's URN for the persist methods
# The seed's raw envelope ("Campaign API staging mechanism"), token filled in per call.
SEED_INGEST = """\
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">
<soapenv:Header/>
<soapenv:Body>
    <urn:Ingest>
        <urn:sessiontoken>{token}</urn:sessiontoken>
        <urn:domDoc>
            <sampleTableStg
                testcol1="{value}"
                testcol2="Test Value 2 (from SOAP)"
                xtkschema="dem:sampleTableStg">
            </sampleTableStg>
        </urn:domDoc>
    </urn:Ingest>
</soapenv:Body>
</soapenv:Envelope>"""
STAGED_RECORD = '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="{value}"/>'


def site_setup() -> tuple[object, str]:
    """The schema with its tables, and an API token of the user LOGIN (ingest, write_cloud, view_schema)."""
    schema = services.schema_create(source=SCHEMA, user=SYSTEM)
    services.structure_update(schema=schema, user=SYSTEM)
    user = get_user_model().objects.create_user(username=LOGIN, password=PASSWORD)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="staging", codename__in=("ingest", "write_cloud", "view_schema")))
    return schema, api_token(user)


def row_counts(schema) -> tuple[int, int]:
    """(rows in the staging table, rows in the cloud table) of `schema`."""
    description = schema.description
    counts = []
    for alias, table in ((ddl.LOCAL, description.staging_table), (ddl.table_alias(description), description.sql_table)):
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {ddl.quote(table, connection.vendor)}")
            counts.append(cursor.fetchone()[0])
    return counts[0], counts[1]


@dataclass
class Request:
    """One raw HTTP request to the router (or elsewhere)."""

    body: bytes = b""
    method: str = "POST"
    headers: dict = field(default_factory=dict)
    chunked: bool = False  # send the body with Transfer-Encoding: chunked, no Content-Length
    path: str = "/nl/jsp/soaprouter.jsp"


class Traffic:
    """Talks to one site over real sockets; `good_round()` makes one valid call of every kind."""

    def __init__(self, url: str, schema, api_token: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.schema = schema
        self.api_token = api_token
        self.rounds = 0
        self.expected = row_counts(schema)
        self.session = self.logon()

    def send(self, request: Request) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = {"Content-Type": "text/xml; charset=utf-8", **request.headers}
            if request.chunked:
                body = (request.body[i:i + 4096] for i in range(0, len(request.body), 4096))
                connection.request(request.method, request.path, body=body, headers=headers, encode_chunked=True)
            else:
                connection.request(request.method, request.path,
                                   body=request.body if request.method != "GET" else None, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def soap(self, body: str, **kwargs) -> Answer:
        return self.send(Request(body.encode("utf-8"), **kwargs))

    def logon(self) -> "Credentials":
        answer = self.soap(logon_envelope(LOGIN, PASSWORD), headers={"SOAPAction": "xtk:session#Logon"})
        assert answer.status == 200, answer.text
        token, _, security = answer.result("Logon")
        return Credentials(token.text, security.text)

    def sdk_call(self, urn: str, method: str, params: str, *, chunked: bool = False) -> Answer:
        s = self.session
        return self.soap(sdk_envelope(urn, method, params, session_token=s.session_token,
                                      security_token=s.security_token),
                         headers={"SOAPAction": f"{urn}#{method}", "X-Security-Token": s.security_token},
                         chunked=chunked)

    def good_round(self) -> None:
        """Valid calls of every kind, each asserted to succeed; the row counts must follow exactly."""
        self.rounds += 1
        n = self.rounds
        staged, cloud = self.expected
        assert row_counts(self.schema) == self.expected, f"a refused call wrote rows before good round {n}"

        self.session = self.logon()  # SDK-form Logon
        s = self.session
        seed = self.soap(SEED_INGEST.format(token=s.session_token, value=f"seed {n}"),
                         headers={"SOAPAction": "xtk:session#Ingest", "X-Security-Token": s.security_token})
        assert seed.status == 200 and re.search(r"<pstrSUuids xsi:type='xsd:string'>[0-9a-f-]{36}<", seed.text), \
            seed.text
        ingest = self.sdk_call(PERSIST, "Ingest", doc_param(STAGED_RECORD.format(value=f"sdk {n}")))
        assert ingest.status == 200, ingest.text
        chunked = self.sdk_call(PERSIST, "Ingest", doc_param(STAGED_RECORD.format(value=f"chunked {n}")), chunked=True)
        assert chunked.status == 200, chunked.text
        ingest_ext = self.sdk_call(PERSIST, "IngestExt", doc_param(
            f'<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="EXT{n:05d}" testcol1="ext {n}" qty="{n}"/>'))
        assert ingest_ext.status == 200, ingest_ext.text
        write = self.sdk_call(PERSIST, "Write", doc_param(
            f'<sampleTable xtkschema="dem:sampleTable" _key="@id" id="W{n:07d}" testcol1="write {n}"/>'))
        assert write.status == 200, write.text
        for pk, name in (("xtk:schema|xtk:session", "session"), ("xtk:schema|dem:sampleTableStg", "sampleTableStg")):
            entity = self.sdk_call("xtk:persist", "GetEntityIfMoreRecent",
                                   f'<pk xsi:type="xsd:string">{pk}</pk><md5 xsi:type="xsd:string"/>'
                                   '<mustExist xsi:type="xsd:boolean">false</mustExist>')
            assert entity.status == 200 and re.search(f"name=['\"]{name}['\"]", entity.text), entity.text
        server_time = self.sdk_call("xtk:session", "GetServerTime", "")
        assert server_time.status == 200, server_time.text
        rest = self.send(Request(json.dumps([{"testcol1": f"rest {n}"}]).encode(),
                                 path="/api/v1/staging/dem:sampleTable/ingest/",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Token {self.api_token}"}))
        assert rest.status == 201, rest.text

        self.expected = (staged + 5, cloud + 1)
        assert row_counts(self.schema) == self.expected


@dataclass
class Credentials:
    session_token: str
    security_token: str


def fault_of(answer: Answer) -> dict:
    """faultcode, faultstring and detail; fails when the body is not a SOAP fault."""
    fault = answer.xml().find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, answer.text
    return {child.tag: child.text or "" for child in fault}
