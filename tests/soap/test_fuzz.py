"""SOAP fuzzing, bounded and seeded: Hypothesis mutates valid envelopes (truncation, byte flips, invalid
UTF-8, huge and duplicate attributes, deep nesting, undeclared prefixes, DTDs and entities, wrong
content types and methods, chunked and oversize bodies) and sends each to ONE gunicorn worker,
interleaved with valid calls. After every request: no Python traceback in the body, no 5xx that is
not a SOAP Client fault, no row written unless the call succeeded, the same worker still serving,
and the next valid call succeeding.

FUZZ_EXAMPLES sets how many mutated requests are sent (docs/testing.md); the run is derandomized,
so a given FUZZ_EXAMPLES always sends the same requests.
"""

import os

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st

from tests.conftest import BOTH_DATABASES
from tests.site import start_one_worker_site, stop_one_worker_site
from tests.soap.conftest import doc_param, logon_envelope, sdk_envelope
from tests.soap.traffic import (
    LOGIN, PASSWORD, PERSIST, SEED_INGEST, STAGED_RECORD, Request, Traffic, fault_of, row_counts, site_setup,
)

pytestmark = [pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES), pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
MAX_BYTES = 16_384
FULL_ROUND_EVERY = 40  # every kind of valid call (Logon included) after this many mutated requests

# The valid envelopes mutations start from, each a function of the current session.
BASES = {
    "sdk Ingest": lambda s: sdk_envelope(PERSIST, "Ingest", doc_param(STAGED_RECORD.format(value="fuzz")),
                                         session_token=s.session_token, security_token=s.security_token),
    "sdk IngestExt": lambda s: sdk_envelope(
        PERSIST, "IngestExt", doc_param('<sampleTableStg xtkschema="dem:sampleTableStg" _key="@id" id="FZ1" '
                                        'testcol1="fuzz" qty="7"/>'),
        session_token=s.session_token, security_token=s.security_token),
    "sdk Write": lambda s: sdk_envelope(
        PERSIST, "Write", doc_param('<sampleTable xtkschema="dem:sampleTable" _key="@id" id="FW1" testcol1="w"/>'),
        session_token=s.session_token, security_token=s.security_token),
    "seed Ingest": lambda s: SEED_INGEST.format(token=s.session_token, value="fuzz seed"),
    "collection": lambda s: sdk_envelope(
        PERSIST, "Ingest", doc_param('<sampleTableStg-collection xtkschema="dem:sampleTableStg">'
                                     '<sampleTableStg testcol1="c1"/><sampleTableStg testcol1="c2" qty="2"/>'
                                     '</sampleTableStg-collection>'),
        session_token=s.session_token, security_token=s.security_token),
    "Logon": lambda s: logon_envelope(LOGIN, PASSWORD),
    "GetEntity": lambda s: sdk_envelope(
        "xtk:persist", "GetEntityIfMoreRecent",
        '<pk xsi:type="xsd:string">xtk:schema|dem:sampleTableStg</pk><md5 xsi:type="xsd:string"/>'
        '<mustExist xsi:type="xsd:boolean">true</mustExist>',
        session_token=s.session_token, security_token=s.security_token),
}
ENTITY_PROLOGS = [
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
    '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
]
RECORD_TAG = b"<sampleTableStg "


def _insert(data: bytes, at: int, piece: bytes) -> bytes:
    at = min(at, len(data))
    return data[:at] + piece + data[at:]


@st.composite
def mutations(draw):
    """(description, mutate(bytes) -> bytes): one way to break an envelope."""
    kind = draw(st.sampled_from([
        "truncate", "flip bytes", "invalid utf-8", "huge attribute", "duplicate attribute", "deep nesting",
        "undeclared prefix", "entities", "entity reference", "delete slice", "oversize", "none",
    ]))
    position = draw(st.integers(min_value=0, max_value=4000))
    if kind == "truncate":
        return kind, lambda d: d[:position % max(len(d), 1)]
    if kind == "flip bytes":
        flips = draw(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8))

        def flip(d):
            d = bytearray(d)
            for where, value in flips:
                if d:
                    d[where % len(d)] = value
            return bytes(d)
        return f"{kind} {flips}", flip
    if kind == "invalid utf-8":
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                     b"\x00", b"\x1b"]))
        return f"{kind} {junk!r} at {position}", lambda d: _insert(d, position % max(len(d), 1), junk)
    if kind == "huge attribute":
        size = draw(st.integers(min_value=200, max_value=MAX_BYTES * 2))
        return f"{kind} of {size}", lambda d: d.replace(RECORD_TAG, RECORD_TAG + b'big="' + b"x" * size + b'" ', 1)
    if kind == "duplicate attribute":
        return kind, lambda d: d.replace(RECORD_TAG, RECORD_TAG + b'testcol2="a" testcol2="b" ', 1)
    if kind == "deep nesting":
        depth = draw(st.integers(min_value=200, max_value=2000))
        return f"{kind} {depth}", lambda d: d.replace(RECORD_TAG, b"<n>" * depth + RECORD_TAG, 1).replace(
            b"</domDoc>", b"</n>" * depth + b"</domDoc>", 1).replace(b"</doc>", b"</n>" * depth + b"</doc>", 1)
    if kind == "undeclared prefix":
        return kind, lambda d: d.replace(b"<sampleTableStg", b"<zz:sampleTableStg").replace(
            b"</SOAP-ENV:Body>", b"<qq:x/></SOAP-ENV:Body>")
    if kind == "entities":
        prolog = draw(st.sampled_from(ENTITY_PROLOGS)).encode()
        return f"{kind} {prolog[:40]!r}", lambda d: prolog + d.replace(b'"fuzz"', b'"&xxe;&c;"')
    if kind == "entity reference":
        ref = draw(st.sampled_from([b"&xxe;", b"&#0;", b"&#xD800;", b"&#99999999;", b"&lt", b"&amp;&;"]))
        return f"{kind} {ref!r}", lambda d: d.replace(b"fuzz", ref, 1)
    if kind == "delete slice":
        length = draw(st.integers(min_value=1, max_value=200))
        return f"{kind} {position}+{length}", lambda d: d[:position % max(len(d), 1)] + d[
            position % max(len(d), 1) + length:]
    if kind == "oversize":
        extra = draw(st.integers(min_value=1, max_value=MAX_BYTES))
        return f"{kind} +{extra}", lambda d: d + b" " * (MAX_BYTES + extra - len(d))
    return kind, lambda d: d


@st.composite
def bad_requests(draw):
    base = draw(st.sampled_from(sorted(BASES)))
    described, mutate = draw(mutations())
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH"]))
    content_type = draw(st.sampled_from(["text/xml; charset=utf-8", "application/soap+xml", "application/json",
                                         "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                                         "text/plain; charset=latin-1"]))
    chunked = draw(st.booleans())
    return base, described, method, content_type, chunked, mutate


def _check_answer(answer, request: Request) -> None:
    assert "Traceback" not in answer.text and 'File "/' not in answer.text, answer.text[:2000]
    if answer.status >= 500 or answer.status in (405, 413):
        assert answer.status in (500, 405, 413), answer.status
        fault = fault_of(answer)  # Campaign's fault shape, whatever the status
        assert fault["faultcode"] == "SOAP-ENV:Client", fault
    if answer.status == 413:
        assert len(request.body) > MAX_BYTES
    assert answer.status in (200, 400, 405, 413, 500), answer.status


@pytest.fixture
def fuzz_site(tmp_path):
    # Throttling off: mutated Logons must not lock out the valid ones (throttling has its own tests).
    server = start_one_worker_site(tmp_path, INGEST_MAX_BYTES=str(MAX_BYTES), LOGON_THROTTLE_PER_LOGIN="0",
                                   LOGON_THROTTLE_PER_ADDRESS="0")
    yield server
    stop_one_worker_site(server)


def test_mutated_envelopes_interleaved_with_valid_calls(fuzz_site):
    schema, api_token = site_setup()
    traffic = Traffic(fuzz_site.url, schema, api_token)
    worker = fuzz_site.worker_pid()
    traffic.good_round()
    sent = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(bad_requests())
    def send_one(drawn):
        base, described, method, content_type, chunked, mutate = drawn
        body = mutate(BASES[base](traffic.session).encode("utf-8"))
        request = Request(body, method=method, chunked=chunked and method != "GET",
                          headers={"Content-Type": content_type, "X-Security-Token": traffic.session.security_token})
        note(f"{base} / {described} / {method} {content_type} chunked={request.chunked} body={body[:300]!r}")
        before = row_counts(schema)

        answer = traffic.send(request)

        _check_answer(answer, request)
        if answer.status == 200:
            traffic.expected = row_counts(schema)  # a mutation that left the call valid may write
        else:
            assert row_counts(schema) == before, f"a refused call ({answer.status}) wrote rows"
        assert fuzz_site.worker_pid() == worker, "the worker was replaced"
        sent.append(answer.status)
        if len(sent) % FULL_ROUND_EVERY == 0:
            traffic.good_round()
        else:
            valid = traffic.sdk_call(PERSIST, "Ingest", doc_param(STAGED_RECORD.format(value=f"between {len(sent)}")))
            assert valid.status == 200, valid.text
            traffic.expected = (traffic.expected[0] + 1, traffic.expected[1])
            assert row_counts(schema) == traffic.expected

    send_one()
    traffic.good_round()
    assert fuzz_site.worker_pid() == worker
    refused = sum(1 for status in sent if status != 200)
    assert len(sent) >= EXAMPLES * 0.9 and refused > len(sent) // 2, (len(sent), refused)
