"""The hardened parser judges each document on its own: what an earlier parse on the same thread left in
lxml's global error log never changes the verdict on, nor the text of the error about, a later one."""

import io

import pytest

from campaignsite.errors import InvalidXml, TooLarge
from staging.xml import iterparse_xml, parse_xml
from tests.soap.conftest import doc_param, sdk_envelope

LIMIT = 1_000_000
# The SDK's form: the persist methods go to urn:xtk:persist|xtk:session, a name libxml2 2.14 calls "not a valid URI".
SDK_INGEST = sdk_envelope(
    "xtk:persist|xtk:session", "Ingest",
    doc_param('<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="ok"/>'),
    session_token="___A", security_token="@B",
).encode()

BAD_DOCUMENTS = {
    "tag mismatch": b"<alpha><bravo></alpha>",
    "truncated": SDK_INGEST[: len(SDK_INGEST) // 2],
    "invalid utf-8": b"<a>\xff\xfe\xc3</a>",
    "undeclared prefix": b"<zz:root><zz:leaf/></zz:root>",
    "duplicate attribute": b'<a dupe="1" dupe="2"/>',
    "doctype with entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret "s">]><x>&secret;</x>',
    "undefined entity": b"<x>&undefinedentity;</x>",
    "nesting too deep": b"<d>" * 300 + b"</d>" * 300,
    "not xml at all": b"this is plain text",
    "bad namespace and a real error": b'<m:a xmlns:m="urn:xtk:persist|xtk:session"><b></m:a>',
    "two roots": b"<a/><b/>",
}


def refused(data: bytes) -> InvalidXml:
    with pytest.raises(InvalidXml) as caught:
        parse_xml(data, max_bytes=LIMIT)
    return caught.value


def test_the_sdk_envelope_with_its_urn_namespace_parses():
    root = parse_xml(SDK_INGEST, max_bytes=LIMIT)

    assert root.find(".//{urn:xtk:persist|xtk:session}Ingest") is not None


@pytest.mark.parametrize("bad", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_a_valid_sdk_envelope_still_parses_after_a_broken_document_on_the_same_thread(bad):
    parse_xml(SDK_INGEST, max_bytes=LIMIT)
    refused(bad)

    root = parse_xml(SDK_INGEST, max_bytes=LIMIT)

    assert root.find(".//{urn:xtk:persist|xtk:session}Ingest") is not None


def test_many_broken_documents_do_not_wear_the_parser_down():
    for _ in range(30):
        for bad in BAD_DOCUMENTS.values():
            refused(bad)

    assert parse_xml(SDK_INGEST, max_bytes=LIMIT) is not None


def test_the_error_names_only_this_documents_problem():
    refused(b"<secretElementOfAnotherCaller><x></secretElementOfAnotherCaller>")
    refused(b"<y>&anotherCallersEntity;</y>")

    error = refused(b'<m:mine xmlns:m="urn:xtk:persist|xtk:session"><inner></m:mine>')

    assert "Opening and ending tag mismatch: inner line 1 and m:mine" in error.detail
    assert "secretElementOfAnotherCaller" not in error.detail
    assert "anotherCallersEntity" not in error.detail


def test_a_real_error_after_a_urn_namespace_is_named_not_the_namespace():
    refused(b"<earlier><x></earlier>")

    error = refused(b'<m:a xmlns:m="urn:xtk:persist|xtk:session"><b></m:a>')

    assert "Opening and ending tag mismatch: b line 1 and m:a" in error.detail
    assert "earlier" not in error.detail and "not a valid URI" not in error.detail


def test_a_urn_namespace_alone_after_a_broken_document_is_not_an_error():
    refused(b"<a><b></a>")

    root = parse_xml(b'<m:a xmlns:m="urn:xtk:persist|xtk:session"><m:b/></m:a>', max_bytes=LIMIT)

    assert root.tag == "{urn:xtk:persist|xtk:session}a"


def test_oversize_is_refused_before_parsing():
    with pytest.raises(TooLarge):
        parse_xml(b"<a/>" + b" " * 100, max_bytes=50)


def test_iterparse_reports_only_this_files_error():
    refused(b"<secretElementOfAnotherCaller><x></secretElementOfAnotherCaller>")

    with pytest.raises(InvalidXml) as caught:
        list(iterparse_xml(io.BytesIO(b"<collection><row></collection>")))

    assert "Opening and ending tag mismatch: row line 1 and collection" in caught.value.detail
    assert "secretElementOfAnotherCaller" not in caught.value.detail


def test_iterparse_streams_a_good_file_after_a_broken_one():
    with pytest.raises(InvalidXml):
        list(iterparse_xml(io.BytesIO(b"<a><b></a>")))

    tags = [element.tag for _, element in iterparse_xml(io.BytesIO(b"<rows><row/><row/></rows>"))]

    assert tags == ["row", "row", "rows"]
