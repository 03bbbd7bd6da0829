"""Bad input, then good input, on ONE gunicorn worker: every bad REST request of the corpus is refused
with a clear 4xx in the JSON error shape, writes nothing, and leaves the worker serving every later
call (REST and SOAP) as before. Chunked bodies go through gunicorn's de-chunking, which Django's test
client and live_server do not do."""

import base64
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission

from staging import services
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES
from tests.site import start_one_worker_site, stop_one_worker_site
from tests.soap.conftest import SAMPLE_SCHEMA, SoapClient, doc_param, logon, make_user, sdk_envelope
from tests.staging.conftest import rows_of
from campaignsite.permissions import SYSTEM

pytestmark = [pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES), pytest.mark.slow]

LIMIT = 200_000  # INGEST_MAX_BYTES of this site: small, so oversize bodies are cheap to send
INGEST = "/api/v1/staging/dem:sampleTable/ingest/"
INGEST_EXT = "/api/v1/staging/dem:sampleTable/ingest-ext/"
ROWS = "/api/v1/staging/dem:sampleTable/rows/"


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class RestClient:
    """Raw HTTP/1.1 to the site: any method, header or body, chunked when the body is a list of chunks."""

    def __init__(self, base_url: str, token: str):
        parts = urlsplit(base_url)
        self.host, self.port, self.token = parts.hostname, parts.port, token

    def call(self, method: str, path: str, body: bytes | list[bytes] | None = None, *,
             content_type: str = "application/json", headers: dict | None = None, token: bool = True) -> Reply:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Token {self.token}"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if isinstance(body, list):  # no Content-Length: http.client sends Transfer-Encoding: chunked
                connection.request(method, path, body=iter(body), headers=all_headers, encode_chunked=True)
            else:
                connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()


def nested(depth: int) -> bytes:
    return b"[" * (depth - 1) + b"{}" + b"]" * (depth - 1)


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def big_json(size: int) -> bytes:
    return json.dumps([{"testcol1": "x" * 200}] * (size // 200 + 1)).encode()


# (name, method, path, body, extra, expected status, expected error code). `extra` holds call options.
BAD = [
    ("deep JSON", "POST", INGEST, nested(950), {}, 400, "CST-400200"),
    ("deep JSON, 100 000 levels", "POST", INGEST, nested(100_000), {}, 400, "CST-400200"),
    ("deep JSON, chunked", "POST", INGEST_EXT, chunks(nested(950), 100), {}, 400, "CST-400200"),
    ("deep JSON to sync", "POST", "/api/v1/sync/", nested(950), {}, 400, "CST-400200"),
    ("deep JSON to subscribe", "POST", "/api/v1/subscriptions/subscribe/", nested(950), {}, 400, "CST-400200"),
    ("seq past 64 bits", "POST", "/api/v1/staging/dem:sampleTable/rows/retry-failed/",
     b'{"seqs": [9223372036854775808]}', {}, 400, "CST-400200"),
    ("seq past 64 bits, discard", "POST", "/api/v1/staging/dem:sampleTable/rows/discard-failed/",
     b'{"seqs": [99999999999999999999999999]}', {}, 400, "CST-400200"),
    ("huge limit", "GET", ROWS + "?limit=99999999999999999999", None, {}, 400, "CST-400200"),
    ("cursor past 64 bits", "GET", ROWS + "?cursor=" + base64.urlsafe_b64encode(b"9" * 40).decode(), None, {},
     400, "CST-400200"),
    ("invalid cursor", "GET", "/api/v1/sync/runs/?cursor=%%%", None, {}, 400, "CST-400200"),
    ("invalid DRF cursor", "GET", "/api/v1/services/?cursor=garbage", None, {}, 404, "CST-404000"),
    ("edited DRF cursor", "GET", "/api/v1/subscriptions/?cursor=" + base64.b64encode(b"p=abc").decode(), None, {},
     404, "CST-404000"),
    ("malformed JSON", "POST", INGEST, b'[{"testcol1": "a"', {}, 400, "CST-400200"),
    ("NaN", "POST", INGEST, b'[{"testcol1": NaN}]', {}, 400, "CST-400200"),
    ("invalid UTF-8", "POST", INGEST, b'[{"testcol1": "\xff\xfe"}]', {}, 400, "CST-400200"),
    ("lone surrogate", "POST", INGEST, b'[{"testcol1": "\\ud800"}]', {}, 400, "CST-400200"),
    ("non-string xtkschema", "POST", INGEST, b'[{"xtkschema": {"a": 1}}]', {}, 400, "CST-400200"),
    ("bad records", "POST", INGEST, b'[{"testcol1": "ok"}, {"colour": "red"}]', {}, 400, "CST-400200"),
    ("nested value", "POST", INGEST, b'[{"testcol1": "ok"}, {"testcol1": [[1]]}]', {}, 400, "CST-400200"),
    ("wrong content type", "POST", INGEST, b"testcol1=a", {"content_type": "text/plain"}, 415, "CST-415000"),
    ("form content type", "POST", "/api/v1/services/", b"name=a", {"content_type": "application/x-www-form-urlencoded"},
     415, "CST-415000"),
    ("oversize", "POST", INGEST, big_json(LIMIT + 1000), {}, 413, "CST-413000"),
    ("oversize, chunked", "POST", INGEST, chunks(big_json(LIMIT + 1000)), {}, 413, "CST-413000"),
    ("oversize XML, chunked", "POST", INGEST, chunks(b"<a>" + b"x" * (LIMIT + 10) + b"</a>"),
     {"content_type": "application/xml"}, 413, "CST-413000"),
    ("schema id without namespace", "POST", "/api/v1/staging/sampleTable/ingest/", b"[]", {}, 404, "CST-404000"),
    ("schema id with a dot", "GET", "/api/v1/schemas/dem:sample.Table/", None, {}, 404, "CST-404000"),
    ("unknown schema", "POST", "/api/v1/staging/dem:nothing/ingest/", b'[{"a": "b"}]', {}, 404, "CST-404000"),
    ("unknown endpoint", "GET", "/api/v1/nothing/", None, {}, 404, "CST-404000"),
    ("run id past 64 bits", "GET", "/api/v1/sync/runs/99999999999999999999999/", None, {}, 404, "CST-404000"),
    ("no token", "POST", INGEST, b'[{"testcol1": "a"}]', {"token": False}, 401, "CST-401000"),
    ("unknown token", "POST", INGEST, b'[{"testcol1": "a"}]',
     {"token": False, "headers": {"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"}}, 401,
     "CST-401000"),
    ("empty body", "POST", INGEST, b"", {}, 400, "CST-400200"),
]


@pytest.fixture
def site(tmp_path):
    site = start_one_worker_site(tmp_path, INGEST_MAX_BYTES=str(LIMIT))
    yield site
    stop_one_worker_site(site)


def good_calls(rest: RestClient, soap: SoapClient, login: str, round_: int) -> None:
    """One valid call of every kind; each must succeed."""
    answer = rest.call("POST", INGEST, json.dumps([{"testcol1": f"rest {round_}"}]).encode())
    assert answer.status == 201, answer.body[:500]
    answer = rest.call("POST", INGEST_EXT, chunks(json.dumps(
        [{"_key": "@id", "id": f"EXT{round_}", "testcol1": f"chunked {round_}"}]).encode(), 10))
    assert answer.status == 201, answer.body[:500]
    answer = rest.call("GET", ROWS + "?limit=1000")
    assert answer.status == 200 and len(answer.json()["results"]) == 3 * round_ + 2, answer.body[:500]
    answer = rest.call("GET", "/api/v1/schemas/")
    assert answer.status == 200 and [s["id"] for s in answer.json()] == ["dem:sampleTable"], answer.body[:500]
    session = logon(soap, login)
    answer = soap.post(sdk_envelope("xtk:persist|xtk:session", "Ingest",
                                    doc_param(f'<sampleTableStg xtkschema="dem:sampleTableStg" '
                                              f'testcol1="soap {round_}"/>'),
                                    session_token=session.session_token, security_token=session.security_token),
                       headers=session.headers)
    assert answer.status == 200, answer.text[:500]


def test_every_bad_rest_request_is_refused_and_the_worker_serves_the_next_calls(site):
    schema = services.schema_create(source=SAMPLE_SCHEMA, user=SYSTEM)
    services.structure_update(schema=schema, user=SYSTEM)
    user = make_user("rest-operator", perms=("ingest", "run_sync", "view_schema", "view_syncrun"))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="subscriptions"))
    rest, soap = RestClient(site.url, api_token(user)), SoapClient(site.url)
    worker = site.worker_pid()
    assert worker is not None

    good_calls(rest, soap, user.username, 0)
    for round_, (name, method, path, body, extra, status, code) in enumerate(BAD, start=1):
        answer = rest.call(method, path, body, **extra)
        assert answer.status == status, (name, answer.status, answer.body[:500])
        assert answer.headers["content-type"] == "application/json", (name, answer.headers)
        assert answer.json()["code"] == code, (name, answer.json())
        assert b"Traceback" not in answer.body, name
        assert len(rows_of(schema)) == 3 * round_, f"{name} wrote rows"
        good_calls(rest, soap, user.username, round_)
        assert site.worker_pid() == worker, f"the worker was replaced after {name}"
    assert "Internal Server Error" not in site.log() and "Traceback" not in site.log()
