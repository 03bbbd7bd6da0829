"""The one hardened entry point for untrusted XML. Nothing else in the project calls lxml's parsers.

What it refuses, and why:
- DTDs and entity declarations of any kind (XXE, billion laughs). lxml 6.1 no longer resolves
  external entities by default, but an unresolved entity still parses into the tree, so the document
  is rejected outright when it carries a doctype or an entity node (lxml FAQ, "web-service endpoint").
- Network access while parsing (`no_network`), and libxml2's "huge tree" mode, which would lift its
  built-in limits: nesting deeper than 256 levels and text nodes over 10 MB are parse errors.
- Documents above the caller's byte limit, checked before a single byte is parsed.

Diagnostics come from the log of the parser that read THIS document (`parser.error_log`), never from
`XMLSyntaxError.error_log`: the latter is a copy of lxml's per-thread global log, which still holds
what earlier documents parsed on the same thread left there. Reading it would let one caller's
broken request change how the next caller's valid one is judged, and leak its text into their fault.
"""

import re
from typing import BinaryIO, Iterator

from lxml import etree

from campaignsite.errors import InvalidXml, Problem, TooLarge

# libxml2 refuses nesting deeper than this unless huge_tree is on (it never is here).
MAX_DEPTH = 256

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_pis=True,
)


def _parser(*, keep_comments: bool) -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not meant to be shared between threads.
    return etree.XMLParser(remove_comments=not keep_comments, **_PARSER_OPTIONS)


_DTD_PROBLEM = Problem("remove the <!DOCTYPE ...> declaration; DTDs and entities are refused for security")


def _syntax_problem(exc: etree.XMLSyntaxError, error_log) -> Problem:
    """The problem to report, from `error_log`: the log of the parser that raised `exc`."""
    real = [e for e in error_log if e.type_name != "WAR_NS_URI"]
    if real and len(real) < len(error_log):
        # A Campaign URN namespace name came first (see _reparse_despite_namespace_names): name the real error.
        entry = real[0]
        return Problem(f"{entry.message.strip()} (column {entry.column})" if entry.column else entry.message.strip(),
                       line=entry.line)
    message = re.sub(r", line \d+, column \d+$", "", exc.msg or "syntax error")
    column = exc.position[1] if exc.position else None
    return Problem(f"{message} (column {column})" if column else message, line=exc.lineno)


def _reject_dtd_and_entities(root: etree._Element) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InvalidXml("DTDs are not accepted.", [_DTD_PROBLEM])
    entity = next(root.iter(etree.Entity), None)
    if entity is not None:
        raise InvalidXml(
            "Entity references are not accepted.",
            [Problem(f"remove the entity reference {entity.text}", line=entity.sourceline)],
        )


def _reparse_despite_namespace_names(data: bytes, error_log, *, keep_comments: bool):
    """The document when libxml2's only complaint is a namespace name that is not an RFC 3986 URI.

    libxml2 2.14 reports that as an error, yet Campaign's URNs are such names: Adobe's SDK declares
    xmlns:m="urn:xtk:persist|xtk:session". Parsing goes on past it, so when the log holds nothing
    else the document is otherwise well-formed; parse it again letting libxml2 keep the names.
    """
    if not error_log or any(e.type_name != "WAR_NS_URI" for e in error_log):
        return None
    parser = etree.XMLParser(recover=True, remove_comments=not keep_comments, **_PARSER_OPTIONS)
    root = etree.fromstring(data, parser)
    if root is None or any(e.type_name != "WAR_NS_URI" for e in parser.error_log):
        return None
    return root


def parse_xml(data: bytes | str, *, max_bytes: int, what: str = "document", keep_comments: bool = False):
    """Parse an untrusted document and return its root element.

    Raises TooLarge when `data` exceeds `max_bytes` and InvalidXml for anything that is not a
    well-formed, DTD-free document, with the line and column libxml2 reported.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise TooLarge(f"The {what} is {len(data)} bytes; the limit is {max_bytes} bytes.")
    if not data.strip():
        raise InvalidXml(f"The {what} is empty.")
    error = None
    parser = _parser(keep_comments=keep_comments)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        root = _reparse_despite_namespace_names(data, parser.error_log, keep_comments=keep_comments)
        error = exc if root is None else None
    if error is not None:
        if b"<!DOCTYPE" in data:
            # libxml2 may stop on an entity before we see the doctype; say why in one voice.
            raise InvalidXml(f"DTDs are not accepted in the {what}.", [_DTD_PROBLEM]) from None
        raise InvalidXml(f"The {what} is not well-formed XML.", [_syntax_problem(error, parser.error_log)]) from None
    if root is None:
        raise InvalidXml(f"The {what} has no root element.")
    _reject_dtd_and_entities(root)
    return root


def iterparse_xml(source: BinaryIO, *, tag: str | None = None) -> Iterator[tuple[str, etree._Element]]:
    """Stream `source` with the same hardening as parse_xml, yielding ("end", element) events.

    The caller clears elements it has handled so memory stays bounded. `resolve_entities=False` is
    passed explicitly: before lxml 6.1 iterparse resolved entities by default (CVE-2026-41066).
    """
    events = etree.iterparse(
        source, events=("start", "end"), tag=tag, remove_comments=True, **_PARSER_OPTIONS
    )
    try:
        for event, element in events:
            if event == "start":
                if element.getparent() is None:
                    _reject_dtd_and_entities(element)
                continue
            yield event, element
    except etree.XMLSyntaxError as exc:
        # iterparse keeps its own parser's log, as parse_xml does: only this file's errors.
        raise InvalidXml("The file is not well-formed XML.", [_syntax_problem(exc, events.error_log)]) from None
