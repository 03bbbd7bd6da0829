"""The mData document: XML fields (`xml="true"` attributes, `html`/`CDATA`/`xml` elements) stored in one
memo column, the way Campaign keeps them. Pure: no Django, no database.

The document is the record's main element holding only its XML fields, each where the schema puts it:

    <recipient comment="likes jazz"><location note="ring twice"/><desc><![CDATA[<p>Hi</p>]]></desc></recipient>

An attribute field is an attribute of its (sub-)element; an element field is a child element whose
text is the value, written as CDATA so HTML stays readable (plain text when the value itself holds
`]]>`). A field sent empty is kept empty (it clears the value); a field not sent is absent.

`merge_xml_data(old, new)` lays a new document over a stored one: fields present in `new` replace
those of `old`, the others stay. Ingest, IngestExt and the sync all use it, so a partial update
never loses the XML fields it does not carry.
"""

from lxml import etree

from staging.srcschema import Attribute
from staging.xml import parse_xml

MAX_XML_DATA_BYTES = 16 * 1024 * 1024


def xml_document(root: str, fields: list[tuple[Attribute, str]]) -> str:
    """The mData document of one record: `fields` are (XML field, text value) in the order supplied."""
    element = etree.Element(root)
    for attribute, value in fields:
        *parents, leaf = attribute.name.split("/")
        parent = element
        for step in parents:
            found = parent.find(step)
            parent = found if found is not None else etree.SubElement(parent, step)
        if attribute.element:
            child = parent.find(leaf)
            if child is None:
                child = etree.SubElement(parent, leaf)
            child.text = etree.CDATA(value) if value and "]]>" not in value else value
        else:
            parent.set(leaf, value)
    return etree.tostring(element, encoding="unicode")


def merge_xml_data(old: str | None, new: str | None) -> str | None:
    """`new` laid over `old` (see the module docstring); either may be None or empty."""
    if not old:
        return new
    if not new:
        return old
    base = parse_xml(old, max_bytes=MAX_XML_DATA_BYTES, what="stored mData document")
    over = parse_xml(new, max_bytes=MAX_XML_DATA_BYTES, what="mData document")
    _merge(base, over)
    return etree.tostring(base, encoding="unicode")


def _merge(base, over) -> None:
    for name, value in over.items():
        base.set(name, value)
    for child in list(over.iterchildren("*")):
        existing = base.find(child.tag)
        if existing is None:
            base.append(child)
            continue
        if len(child) or child.attrib:
            _merge(existing, child)
        if child.text is not None or not len(child) and not child.attrib:
            existing.text = etree.CDATA(child.text) if child.text and "]]>" not in child.text else child.text
