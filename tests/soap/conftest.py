"""Real-HTTP helpers for the SOAP tests: a client for /nl/jsp/soaprouter.jsp, users, a logged-on session."""

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.xml import parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PASSWORD = "S0ap-pass;word"

# Step 1 of the seed "Campaign API staging mechanism" (dem:sampleTable), with staging enabled.
SAMPLE_SCHEMA = """\
<srcSchema _cs="Sample Table (dem)" entitySchema="xtk:srcSchema" img="xtk:schema.png" label="Sample Table"
           mappingType="sql" name="sampleTable" namespace="dem" xtkschema="xtk:srcSchema">
  <element autoStg="true" autopk="true" autouuid="true" dataSource="nms:extAccount:ffda" label="Sample Table"
           name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
  </element>
</srcSchema>
"""


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def xml(self):
        return parse_xml(self.body, max_bytes=10_000_000, what="response")

    def fault(self) -> dict:
        """faultcode, faultstring and detail of a fault answer."""
        fault = self.xml().find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
        assert fault is not None, self.text
        return {child.tag: child.text or "" for child in fault}

    def result(self, method: str) -> list:
        """The result elements of `<MethodResponse>`, in order."""
        body = self.xml().find(f"{{{SOAP_ENV}}}Body")
        response = body[0]
        assert response.tag.rpartition("}")[2] == f"{method}Response", self.text
        return list(response)


class SoapClient:
    """Posts raw bytes to the router over a real socket, like any Campaign integration would."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port

    def post(self, body: bytes | str, *, headers: dict | None = None, path: str = "/nl/jsp/soaprouter.jsp",
             method: str = "POST") -> Answer:
        if isinstance(body, str):
            body = body.encode("utf-8")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            all_headers = {"Content-Type": "application/soap+xml;charset=UTF-8", **(headers or {})}
            connection.request(method, path, body=body if method == "POST" else None, headers=all_headers)
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str) -> Answer:
        return self.post(b"", path=path, method="GET")


def sdk_envelope(urn: str, method: str, params: str = "", *, session_token: str = "", security_token: str = "") -> str:
    """An envelope exactly as @adobe/acc-js-sdk 1.2.0 writes it (as Adobe's acc-js-sdk sends and parses them, src/soap.js)."""
    header = (f"<Cookie>__sessiontoken={session_token}</Cookie><X-Security-Token>{security_token}</X-Security-Token>"
              if session_token else "<X-Security-Token/>")
    token = (f'<sessiontoken xsi:type="xsd:string">{session_token}</sessiontoken>' if session_token
             else '<sessiontoken xsi:type="xsd:string"/>')
    return (
        '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="http://xml.apache.org/xml-soap">'
        f"<SOAP-ENV:Header>{header}</SOAP-ENV:Header><SOAP-ENV:Body>"
        f'<m:{method} xmlns:m="urn:{urn}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f"{token}{params}</m:{method}></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def logon_envelope(login: str, password: str) -> str:
    return sdk_envelope(
        "xtk:session", "Logon",
        f'<login xsi:type="xsd:string">{login}</login><password xsi:type="xsd:string">{password}</password>'
        '<parameters xsi:type="ns:Element" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml"/>',
    )


def doc_param(xml: str, name: str = "doc") -> str:
    return (f'<{name} xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
            f"{xml}</{name}>")


@dataclass
class Session:
    session_token: str
    security_token: str
    session_info: object

    @property
    def headers(self) -> dict:
        return {"X-Security-Token": self.security_token, "X-Session-Token": self.session_token,
                "Cookie": f"__sessiontoken={self.session_token}"}


def logon(client: SoapClient, login: str, password: str = PASSWORD) -> Session:
    answer = client.post(logon_envelope(login, password), headers={"SoapAction": "xtk:session#Logon"})
    assert answer.status == 200, answer.text
    token, info, security = answer.result("Logon")
    return Session(token.text, security.text, info)


@pytest.fixture
def soap(live_server) -> SoapClient:
    return SoapClient(live_server.url)


def make_user(username: str, *, perms=("ingest", "write_cloud"), active: bool = True):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_active=active)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="staging", codename__in=perms))
    return user


@pytest.fixture
def operator():
    return make_user("operator")


@pytest.fixture
def session(soap, operator) -> Session:
    return logon(soap, operator.username)


@pytest.fixture
def sample_schema():
    """dem:sampleTable with staging on and its structure applied (tables in both databases)."""
    schema = services.schema_create(user=SYSTEM, source=SAMPLE_SCHEMA)
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def staged_count(schema) -> int:
    """Rows in the schema's staging table, whatever its columns."""
    return services.unsynced_row_count(schema.description.staging_table)


def staged_rows(schema) -> list[dict]:
    """Rows of the schema's staging table as {attribute: value} (attributes of the schema only)."""
    description = schema.description
    connection = connections[ddl.LOCAL]
    vendor = connection.vendor
    columns = ", ".join(ddl.quote(a.sql_name, vendor) for a in description.attributes)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {ddl.quote(description.staging_table, vendor)}")
        return [{a.name: value for a, value in zip(description.attributes, row)} for row in cursor.fetchall()]
