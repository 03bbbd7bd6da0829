"""Campaign srcSchema XML → an immutable description of the schema. No Django in here.

The description carries what decides storage and identity; everything else in the document (labels of
sub-elements, compute-string, methods, help, forms, ...) stays in the stored source and is ignored here,
with a warning when it is a construct we do not read (`SchemaDescription.warnings`).

The model, as the ingest, sync and query code see it:

- `attributes`: every value that has **its own column**, in document order. Top-level attributes keep
  their plain name (`email`, xpath `@email`). Attributes of sub-elements, at any depth, are columns of
  the same table and are named by their path without the `@`: `location/city` (xpath
  `location/@city`). A typed element holding a value (`<element name="comment" type="memo"/>`) is a
  column named by its path too (`comment`, xpath `comment`, `Attribute.element` set). The foreign-key
  attributes created by links (`company-id`, `Attribute.link` = "company") are ordinary columns. When
  the schema has XML fields, one more attribute, `_data` (`XML_DATA_ATTR`), is the memo column `mData`
  that holds them all as one XML document, the way Campaign stores them (`Attribute.xml_data`).
- `xml_fields`: values stored **inside mData** instead of a column (`xml="true"`, and elements of type
  `html`, `CDATA` or `xml`): `Attribute.xml` is set and `sql_name` is `mData`. They cannot be keys.
- `links`: every `<element type="link">` (`Link`), bound and unbound. A bound link (cardinality 1) has
  `joins` ((source attribute, target attribute), ...); its source attributes are in `attributes`.
  Unbound (collection) links create nothing here.
- `primary_key`: attribute names; `("id",)` with autopk, else the internal (or first) `<key>`, else `()`
  (a key-less table). Keys and indexes list attribute names too (`location/city`, `company-id`).
- `extends`: set on the description of an extension schema by itself (its own additions only);
  `merge` folds extensions into the schema they extend (`parse_srcschema(..., extensions=[...])`).

Naming follows Campaign: table = namespace + name with capital first letters (`dem:sampleTable` →
`DemSampleTable`); column = type prefix + name with a capital first letter (`testcol1` → `sTestcol1`);
a sub-element attribute uses its own name only (`location/@city` → `sCity`), so a clash with another
column is refused and asks for `sqlname`; the autopk key `id` → `u<Name>Id`; a link's foreign key is
`<link>-<target key field>` with the target key's type (`company-id` → `uCompanyId` for our uuid keys,
`iCompanyId` for an integer key) and an index named `<link><Field>` (`companyId`).

Other schemas a document refers to (link targets, templates, `ref=`, qualified enumerations) come from
the optional `resolve(schema_id) -> SchemaDescription | None` callback, which keeps this module pure.
"""

import copy
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

from campaignsite.errors import Problem, SchemaInvalid
from staging.xml import parse_xml

# Campaign type → SQL column-name prefix.
TYPE_PREFIXES = {
    "string": "s",
    "memo": "m",
    "boolean": "i",
    "byte": "i",
    "short": "i",
    "long": "i",
    "int64": "i",
    "float": "d",
    "double": "d",
    "date": "ts",
    "datetime": "ts",
    "datetimetz": "ts",
    "datetimenotz": "ts",
    "time": "ts",
    "uuid": "u",
}
SUPPORTED_TYPES = tuple(TYPE_PREFIXES)
INTEGER_TYPES = ("boolean", "byte", "short", "long", "int64")
NUMERIC_TYPES = INTEGER_TYPES + ("float", "double")
# Types that only exist as XML fields (stored in mData): HTML and CDATA text, or a free XML fragment.
XML_ONLY_TYPES = ("html", "CDATA", "xml")

DEFAULT_STRING_LENGTH = 255
MAX_STRING_LENGTH = 16384  # Campaign's documented ceiling for string; use memo beyond it
KEY_LENGTH = 255  # width of the autopk key: wide enough for caller-supplied ids such as "ABC12345"

RESERVED_NAMESPACES = frozenset({"xtk", "nms", "xxl", "nl", "ncm", "temp", "crm"})
CLOUD_DATA_SOURCE = "nms:extAccount:ffda"
# Names the staging table uses for Campaign's technical fields and our sync bookkeeping.
RESERVED_ATTRIBUTE_NAMES = frozenset({"delete", "lastModified"})
STAGING_SUFFIX = "Stg"
XML_DATA_ATTR = "_data"  # the attribute of the mData column (a name no declared attribute can have)
XML_DATA_COLUMN = "mData"

Resolver = Callable[[str], "SchemaDescription | None"]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SQL_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_QUALIFIED_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$")
_SQL_NAME_MAX = 63  # PostgreSQL's identifier limit
_STEP = r"[A-Za-z][A-Za-z0-9_-]*"
# `@x`, `[@x]`, `location/@city`, `[location/@city]`, `a/b/@c`, and an element value `comment`.
_XPATH_RE = re.compile(rf"^\[?((?:{_STEP}/)*)(@?)({_STEP})\]?$")
_TRUE_VALUES = {"true": True, "1": True, "false": False, "0": False}

# Children of elements that carry no storage: kept in the source, ignored with a warning.
_IGNORED_CHILDREN = frozenset({
    "compute-string", "sysFilter", "help", "condition", "methods", "method", "default", "image", "form",
    "translateDefault", "input", "container", "static", "value", "enter", "leave", "check",
})
# Attributes of Campaign's content model that change nothing in storage (no warning when present).
_KNOWN_ATTRIBUTE_ATTRS = frozenset({
    "_operation", "advanced", "applyIf", "autoIncrement", "belongsTo", "dataPolicy", "dbEnum", "defOnDuplicate",
    "default", "desc", "edit", "enum", "enumImage", "expr", "feature", "featureDate", "img", "inout", "label",
    "length", "localizable", "name", "notNull", "pkgStatus", "ref", "required", "sql", "sqlDefault", "sqlname",
    "sqltable", "target", "template", "translatedDefault", "translatedExpr", "translationExpr", "type",
    "userEnum", "visibleIf", "xml", "dataPolicy", "displayAsField", "emptyKeyValue", "readOnly", "unicode",
    "decimalCount", "precision", "scale", "noDbIndex", "category",
})
_KNOWN_ELEMENT_ATTRS = frozenset({
    "_operation", "advanced", "aggregate", "applyIf", "autopk", "autouuid", "autoStg", "belongsTo", "convDate",
    "dataPolicy", "dataSource", "dbEnum", "defOnDuplicate", "default", "desc", "displayAsField",
    "doesNotSupportDiff", "edit", "emptyKeyValue", "enum", "enumImage", "expandSchemaTarget", "expr",
    "externalJoin", "feature", "featureDate", "filterPath", "folderLink", "folderModel", "folderProcess",
    "fullLoad", "hierarchical", "hierarchicalPath", "img", "inout", "integrity", "label", "labelSingular",
    "length", "localizable", "name", "noDbIndex", "noKey", "ordered", "overflowtable", "pkSequence",
    "pkgStatus", "ref", "required", "revAdvanced", "revCardinality", "revDesc", "revExternalJoin",
    "revIntegrity", "revLabel", "revLink", "revTarget", "revVisibleIf", "sql", "sqlname", "sqltable",
    "tableSpace", "tableSpaceIndex", "target", "template", "translateDefault", "translationExpr", "type",
    "unbound", "userEnum", "view", "visibleIf", "xml", "xmlChildren", "cardinality", "notNull", "deleteStatus",
    "dbCollation", "noSQL", "autoBackup", "category", "isSource", "sysKeyword",
})
_KNOWN_KEY_ATTRS = frozenset({"name", "internal", "noDbIndex", "allowEmptyPart", "applyIf", "label", "desc",
                              "_operation", "unique", "belongsTo", "clustered", "fillFactor", "sqlname"})
# What an extension may not change on the main element of the schema it extends: they decide storage.
_FIXED_BY_BASE = ("autopk", "autouuid", "sqltable", "dataSource", "view")


@dataclass(frozen=True)
class Attribute:
    name: str  # "email"; "location/city" in a sub-element; "comment" for a typed element
    type: str
    sql_name: str
    length: int | None = None  # strings only
    not_null: bool = False
    default: str | None = None  # XTK expression as written, e.g. "0", "'abc'", "GetDate()"
    enum: str | None = None  # an enumeration of `SchemaDescription.enumerations` (checked values)
    label: str = ""
    desc: str = ""
    line: int | None = None
    xml: bool = False  # stored inside the mData XML document, no column of its own
    element: bool = False  # the value of a typed element (xpath without '@')
    link: str | None = None  # the link whose foreign key this is
    belongs_to: str | None = None  # the extension schema or template that declared it
    enum_ref: str | None = None  # the enumeration reference as written (kept when it cannot be resolved)
    xml_data: bool = False  # the mData column holding the XML fields

    @property
    def xpath(self) -> str:
        *parents, leaf = self.name.split("/")
        step = leaf if self.element else f"@{leaf}"
        return "/".join([*parents, step])

    @property
    def leaf(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Link:
    """A link to another schema (`<element type="link">`)."""

    name: str
    target: str  # schema id
    unbound: bool = False  # a collection (1-N seen from here): no column on this side
    joins: tuple[tuple[str, str], ...] = ()  # (source attribute name, target attribute name)
    integrity: str | None = None
    rev_link: str | None = None
    rev_integrity: str | None = None
    rev_cardinality: str | None = None
    external_join: bool = False
    label: str = ""
    belongs_to: str | None = None
    line: int | None = None

    @property
    def foreign_key(self) -> tuple[str, ...]:
        return tuple(source for source, _ in self.joins)


@dataclass(frozen=True)
class Key:
    name: str
    fields: tuple[str, ...]  # attribute names
    internal: bool = False
    db_index: bool = True  # noDbIndex="true" declares the key without its unique index


@dataclass(frozen=True)
class Index:
    name: str
    fields: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class EnumValue:
    name: str
    value: str
    label: str = ""


@dataclass(frozen=True)
class Enumeration:
    name: str
    basetype: str
    values: tuple[EnumValue, ...]
    default: str | None = None

    def accepts(self, raw: str) -> str | None:
        """The stored value for `raw` (a value or a value's name), or None when it is not listed."""
        for item in self.values:
            if raw in (item.value, item.name):
                return item.value
        return None


@dataclass(frozen=True)
class SchemaDescription:
    namespace: str
    name: str
    label: str
    sql_table: str
    autopk: bool
    autouuid: bool
    auto_stg: bool
    data_source: str | None
    attributes: tuple[Attribute, ...]  # every value with its own column (see the module docstring)
    primary_key: tuple[str, ...]  # attribute names; () for a key-less table
    keys: tuple[Key, ...] = ()
    indexes: tuple[Index, ...] = ()
    enumerations: tuple[Enumeration, ...] = ()
    staging_source: str | None = None  # stgSrcSchema, set on a generated staging schema
    label_singular: str = ""
    xml_fields: tuple[Attribute, ...] = ()  # values stored in the mData XML document
    links: tuple[Link, ...] = ()
    view: bool = False  # maps an existing table or view: never created, altered or dropped
    extends: str | None = None  # on an extension schema's own description: the schema it extends
    extensions: tuple[str, ...] = ()  # ids of the extensions merged in, in merge order
    fragments: tuple[tuple[str, tuple[Attribute, ...]], ...] = ()  # extra top-level elements (for ref=)
    warnings: tuple[Problem, ...] = ()  # ignored constructs, unresolved enumerations, ...
    _by_name: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        by_name = {a.name: a for a in self.attributes}
        object.__setattr__(self, "_by_name", by_name)

    @property
    def id(self) -> str:
        return f"{self.namespace}:{self.name}"

    @property
    def staging_id(self) -> str:
        return f"{self.namespace}:{self.name}{STAGING_SUFFIX}"

    @property
    def staging_element(self) -> str:
        return f"{self.name}{STAGING_SUFFIX}"

    @property
    def staging_table(self) -> str:
        return f"{self.sql_table}{STAGING_SUFFIX}"

    @property
    def is_cloud(self) -> bool:
        """Cloud unless the main element names another data source (then it is local-only)."""
        return self.data_source in (None, CLOUD_DATA_SOURCE)

    @property
    def is_staging_schema(self) -> bool:
        return self.staging_source is not None or self.name.endswith(STAGING_SUFFIX)

    def attribute(self, name: str) -> Attribute | None:
        """The column attribute `name` (an XML field is not one: see `field`)."""
        return self._by_name.get(name)

    def field(self, name: str) -> Attribute | None:
        """The attribute `name`, with its own column or stored in mData."""
        return self._by_name.get(name) or next((f for f in self.xml_fields if f.name == name), None)

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def fragment(self, name: str) -> tuple[Attribute, ...] | None:
        return next((attrs for fragment, attrs in self.fragments if fragment == name), None)

    @cached_property
    def enumerations_by_name(self) -> dict[str, Enumeration]:
        return {e.name: e for e in self.enumerations}


def default_table_name(namespace: str, name: str) -> str:
    return _capitalize(namespace) + _capitalize(name)


def default_column_name(attr_type: str, name: str) -> str:
    # Hyphenated names read as words: "recipient-id" → "RecipientId". A path uses its leaf only.
    leaf = name.rsplit("/", 1)[-1]
    return TYPE_PREFIXES[attr_type] + "".join(_capitalize(part) for part in re.split(r"[-_]", leaf) if part)


def xpath_to_name(xpath: str) -> str | None:
    """The attribute name an XPath designates (`location/@city` → `location/city`), or None."""
    match = _XPATH_RE.match((xpath or "").strip())
    if not match:
        return None
    parents, _, leaf = match.groups()
    return parents + leaf


def _capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]


class _Collector:
    """Gathers every problem (and warning) of a document so the user can fix them all in one pass."""

    def __init__(self):
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.origin: str | None = None  # the extension a merged node came from: its lines are that document's

    def _where(self, message: str) -> str:
        return f"extension {self.origin}: {message}" if self.origin else message

    def add(self, message: str, *, line: int | None = None, attribute: str | None = None, value=None):
        self.problems.append(Problem(self._where(message), line=line, attribute=attribute, value=value))

    def warn(self, message: str, *, line: int | None = None, attribute: str | None = None, value=None):
        self.warnings.append(Problem(self._where(message), line=line, attribute=attribute, value=value))

    def boolean(self, element, attr: str, default: bool = False) -> bool:
        raw = element.get(attr)
        if raw is None:
            return default
        if raw.strip().lower() in _TRUE_VALUES:
            return _TRUE_VALUES[raw.strip().lower()]
        self.add(f'{attr} must be "true" or "false"', line=element.sourceline, attribute=attr, value=raw)
        return default

    def unknown_attributes(self, element, known: frozenset, what: str) -> None:
        for attr in element.attrib:
            if attr not in known and not attr.startswith("{"):
                self.warn(f"{what}: '{attr}' is not an attribute this application reads; it is kept in the "
                          "source and ignored", line=element.sourceline, attribute=attr, value=element.get(attr))


def _tag(element) -> str | None:
    return element.tag if isinstance(element.tag, str) else None


def _describe_element(element) -> str:
    name = element.get("name")
    return f'<{_tag(element)} name="{name}">' if name else f"<{_tag(element)}>"


# --- Entry point ------------------------------------------------------------------------------

def parse_srcschema(
    source: str | bytes,
    *,
    builtin: bool = False,
    max_bytes: int = 1_048_576,
    resolve: Resolver | None = None,
    extensions: Sequence[str | bytes] = (),
    extension_builtin: bool = False,
    local_only: bool = False,
) -> SchemaDescription:
    """Parse and check a srcSchema document, with the extension schemas `extensions` merged in.

    Raises SchemaInvalid listing every problem (line, attribute, what to change), or InvalidXml /
    TooLarge from the hardened parser. `builtin` allows Campaign's reserved namespaces (and
    `extension_builtin` for the extensions). `resolve` returns the description of another schema
    (link targets, templates, `ref=`, qualified enumerations), None when it is not loaded.
    `local_only` checks the document by itself: references to schemas `resolve` does not know
    (link targets, templates, `ref=`) are left out instead of refused (a first check before the
    registry is read, and the way cycles of links between schemas are broken).
    """
    root = _root(source, max_bytes)
    errors = _Collector()
    base_id = _identity(root, errors, builtin)
    merged: list[str] = []
    if extensions:
        if root.get("extendedSchema"):
            raise SchemaInvalid(f"Schema {base_id} is itself an extension; extensions merge into the schema "
                                "they extend.")
        for ext_source in extensions:
            ext_root = _root(ext_source, max_bytes)
            merged.append(_merge_extension(root, ext_root, base_id, errors, extension_builtin))
    return _Parser(root, errors, resolve, local_only, tuple(merged)).describe()


def _root(source, max_bytes):
    root = parse_xml(source, max_bytes=max_bytes, what="schema")
    if _tag(root) != "srcSchema":
        raise SchemaInvalid(
            "Not a srcSchema document.",
            [Problem(f"the root element is <{root.tag}>; a schema starts with <srcSchema namespace=... name=...>",
                     line=root.sourceline)],
        )
    return root


def _identity(root, errors: _Collector, builtin: bool) -> str:
    namespace = (root.get("namespace") or "").strip()
    name = (root.get("name") or "").strip()
    for attr, value in (("namespace", namespace), ("name", name)):
        if not value:
            errors.add(f"<srcSchema> needs a {attr} attribute", line=root.sourceline, attribute=attr)
        elif not _NAME_RE.match(value):
            errors.add("use letters, digits, '_' or '-', starting with a letter",
                       line=root.sourceline, attribute=attr, value=value)
    if namespace.lower() in RESERVED_NAMESPACES and not builtin:
        errors.add(
            f"namespace '{namespace}' is reserved for built-in schemas ({', '.join(sorted(RESERVED_NAMESPACES))}); "
            "choose your own, e.g. 'cus' or 'dem'",
            line=root.sourceline, attribute="namespace", value=namespace,
        )
    return f"{namespace}:{name}"


# --- Extensions (merged at the XML level, so an override only changes what it writes) ----------

def _merge_extension(base_root, ext_root, base_id: str, errors: _Collector, builtin: bool) -> str:
    """Fold the extension `ext_root` into `base_root` (modified in place); returns the extension's id."""
    ext_errors = _Collector()
    ext_id = _identity(ext_root, ext_errors, builtin)
    extended = (ext_root.get("extendedSchema") or "").strip()
    if extended != base_id:
        ext_errors.add(f"{ext_id} extends '{extended or 'nothing'}', not {base_id}",
                       line=ext_root.sourceline, attribute="extendedSchema", value=extended)
    base_name = base_id.partition(":")[2]
    base_main = _main_element(base_root, base_name)
    ext_mains = [el for el in ext_root.iterchildren("element") if el.get("name") == base_name]
    if not ext_mains:
        ext_errors.add(f'an extension of {base_id} holds its additions in <element name="{base_name}">',
                       line=ext_root.sourceline)
    for enumeration in ext_root.iterchildren("enumeration"):
        _replace_or_append(base_root, enumeration, ext_id, before=base_main)
    if ext_mains and base_main is not None:
        ext_main = ext_mains[0]
        for attr, value in ext_main.attrib.items():
            if attr in ("name", "_operation"):
                continue
            if attr in _FIXED_BY_BASE and value != base_main.get(attr):
                ext_errors.add(f"an extension cannot change {attr} of {base_id}: it decides the table",
                               line=ext_main.sourceline, attribute=attr, value=value)
                continue
            base_main.set(attr, value)
        _merge_children(base_main, ext_main, ext_id, ext_errors, base_id)
    for problem in ext_errors.problems:
        errors.problems.append(Problem(f"extension {ext_id}: {problem.message}", line=problem.line,
                                       attribute=problem.attribute, value=problem.value))
    for problem in ext_errors.warnings:
        errors.warnings.append(Problem(f"extension {ext_id}: {problem.message}", line=problem.line,
                                       attribute=problem.attribute, value=problem.value))
    return ext_id


def _main_element(root, name: str):
    return next((el for el in root.iterchildren("element") if el.get("name") == name), None)


def _same(base_parent, child):
    tag, name = _tag(child), child.get("name")
    if tag is None or name is None:
        return None
    tags = ("dbindex", "index") if tag in ("dbindex", "index") else (tag,)
    return next((el for el in base_parent.iterchildren(*tags) if el.get("name") == name), None)


def _replace_or_append(parent, child, ext_id: str, *, before=None):
    existing = _same(parent, child)
    added = copy.deepcopy(child)
    added.set("belongsTo", added.get("belongsTo") or ext_id)
    if existing is not None:
        parent.replace(existing, added)
    elif before is not None:
        before.addprevious(added)
    else:
        parent.append(added)


def _merge_children(base_el, ext_el, ext_id: str, errors: _Collector, base_id: str) -> None:
    for child in ext_el.iterchildren():
        tag = _tag(child)
        if tag is None:
            continue
        existing = _same(base_el, child)
        if child.get("_operation") == "delete":
            if existing is None:
                errors.warn(f"{_describe_element(child)} has _operation=\"delete\" but {base_id} has no such "
                            "item; nothing to remove", line=child.sourceline)
            else:
                base_el.remove(existing)
            continue
        if tag in ("key", "dbindex", "index"):
            _replace_or_append(base_el, child, ext_id)
        elif tag == "attribute" and existing is not None:
            _override_attribute(existing, child, errors, base_id)
        elif tag == "element" and existing is not None:
            if (existing.get("type") == "link") != (child.get("type") == "link"):
                errors.add(f"{_describe_element(child)} is a link in one schema and not in the other",
                           line=child.sourceline, attribute="type", value=child.get("type"))
                continue
            for attr, value in child.attrib.items():
                if attr not in ("name", "_operation"):
                    existing.set(attr, value)
            _merge_children(existing, child, ext_id, errors, base_id)
        else:
            added = copy.deepcopy(child)
            added.set("belongsTo", ext_id)
            base_el.append(added)


def _override_attribute(existing, override, errors: _Collector, base_id: str) -> None:
    name = override.get("name")
    line = override.sourceline
    base_type = existing.get("type") or "string"
    new_type = override.get("type")
    if new_type is not None and new_type != base_type:
        errors.add(f"an extension cannot change the type of '{name}' ({base_type} in {base_id}); add a new "
                   "attribute instead", line=line, attribute="type", value=new_type)
        return
    if override.get("sqlname") is not None and override.get("sqlname") != existing.get("sqlname"):
        errors.add(f"an extension cannot rename the column of '{name}'; add a new attribute instead",
                   line=line, attribute="sqlname", value=override.get("sqlname"))
        return
    new_length = override.get("length")
    keep_length = False
    if base_type == "string" and new_length is not None:
        old = existing.get("length") or str(DEFAULT_STRING_LENGTH)
        if new_length.strip().isdigit() and old.strip().isdigit() and int(new_length) < int(old):
            # Adobe's own extension examples shorten built-in fields; shrinking the column could truncate
            # stored values, so the longer length stays and the rest of the override applies.
            errors.warn(f"an extension cannot shorten '{name}' ({old} in {base_id}): the column keeps length "
                        f"{old}", line=line, attribute="length", value=new_length)
            keep_length = True
    for attr, value in override.attrib.items():
        if attr not in ("name", "_operation") and not (attr == "length" and keep_length):
            existing.set(attr, value)


# --- The description of one (merged) document ---------------------------------------------------

class _Parser:
    def __init__(self, root, errors: _Collector, resolve: Resolver | None, local_only: bool,
                 extensions: tuple[str, ...]):
        self.root = root
        self.errors = errors
        self.resolve = resolve
        self.local_only = local_only
        self.extensions = extensions
        self.namespace = (root.get("namespace") or "").strip()
        self.name = (root.get("name") or "").strip()
        self.extends = (root.get("extendedSchema") or "").strip() or None
        self.attributes: list[Attribute] = []
        self.xml_fields: list[Attribute] = []
        self.links: list[tuple[Link, object]] = []  # (link, its element)
        self.keys: list[tuple[str, list, bool, bool]] = []  # (name, fields, internal, db_index)
        self.indexes: list[tuple[str, list, bool]] = []
        self.referenced: set[str] = set()
        self.resolved: dict[str, SchemaDescription | None] = {}
        self.expanding: list[str] = []  # elements being expanded through ref=, to stop cycles
        self.unresolved_links: set[str] = set()  # bound links whose target could not be resolved
        self.autopk = False

    @property
    def id(self) -> str:
        return f"{self.namespace}:{self.name}"

    def lookup(self, schema_id: str) -> "SchemaDescription | None":
        if schema_id not in self.resolved:
            self.resolved[schema_id] = self.resolve(schema_id) if self.resolve else None
        return self.resolved[schema_id]

    def describe(self) -> SchemaDescription:
        root, errors = self.root, self.errors
        # The main element carries the schema's name; an extension's carries the extended schema's.
        main_name = self.extends.partition(":")[2] if self.extends else self.name
        self.enumerations = [_parse_enumeration(el, errors) for el in root.iterchildren("enumeration")]
        mains = [el for el in root.iterchildren("element") if el.get("name") == main_name]
        others = [el for el in root.iterchildren("element") if el.get("name") != main_name]
        self.others = {el.get("name"): el for el in others if el.get("name")}
        if not mains:
            for el in others:
                errors.add(f"the main <element> must be named like the schema ('{main_name}')",
                           line=el.sourceline, attribute="name", value=el.get("name"))
            if main_name:
                errors.add(f'add the main element <element name="{main_name}">', line=root.sourceline)
            raise SchemaInvalid(f"Schema {self.id} is invalid.", errors.problems)
        if len(mains) > 1:
            errors.add("only one main <element> is allowed", line=mains[1].sourceline)
        main = mains[0]
        errors.unknown_attributes(main, _KNOWN_ELEMENT_ATTRS, f"<element name=\"{main_name}\">")

        autopk = self.autopk = errors.boolean(main, "autopk")
        autouuid = errors.boolean(main, "autouuid")
        auto_stg = errors.boolean(main, "autoStg")
        # Campaign reads view="true" on the main element or on <srcSchema> itself (both are documented).
        view = errors.boolean(main, "view") or errors.boolean(root, "view")
        sql_table = main.get("sqltable") or default_table_name(self.namespace, self.name)
        self._check_sql_table(main, sql_table, view)

        if autopk:
            self.attributes.append(Attribute(
                name="id", type="uuid", sql_name=f"u{_capitalize(self.name)}Id", length=KEY_LENGTH, not_null=True,
                label="Primary key", desc="Internal primary key", line=main.sourceline,
            ))
        template = (main.get("template") or root.get("template") or "").strip()
        if template:
            self._include_template(template, main)
        self._walk(main, (), xml=False, main=True)
        for name, element in self.others.items():
            if name not in self.referenced:
                errors.warn(f"top-level <element name=\"{name}\"> is not the main element and nothing here refers "
                            "to it (ref=/aggregate=); it is kept for other schemas' ref= and stores nothing",
                            line=element.sourceline, attribute="name", value=name)
        fragments = tuple((name, tuple(self._fragment(el))) for name, el in self.others.items())

        if self.xml_fields:
            self.attributes.append(Attribute(name=XML_DATA_ATTR, type="memo", sql_name=XML_DATA_COLUMN,
                                             label="XML fields", desc="The values of the XML fields",
                                             xml_data=True, line=main.sourceline))
        primary_key = self._primary_key_before_links(autopk)
        links = self._resolve_links(primary_key)
        keys, indexes = self._keys_and_indexes(links)
        self._check_names()
        by_name = {a.name: a for a in self.attributes}
        xml_names = {f.name for f in self.xml_fields}
        for item in (*keys, *indexes):
            label = "key" if isinstance(item, Key) else "index"
            for field_name in item.fields:
                if field_name in xml_names:
                    errors.add(f"<{label} name=\"{item.name}\"> uses '{field_name}', an XML field (stored in "
                               "mData): XML fields cannot be keys or indexed; remove xml=\"true\" from it",
                               attribute="xpath", value=field_name)
                elif field_name not in by_name:
                    errors.add(f"<{label} name=\"{item.name}\"> refers to {_xpath_of(field_name)}, which is not an "
                               "attribute of the schema", attribute="xpath", value=_xpath_of(field_name))

        if autopk:
            primary_key = ("id",)
        else:
            internal = [k for k in keys if k.internal]
            chosen = internal[0] if internal else (keys[0] if keys else None)
            primary_key = chosen.fields if chosen else ()
            # The chosen key becomes the table's primary key, so it needs no separate unique index.
            keys = [k for k in keys if k is not chosen]

        data_source = main.get("dataSource")
        description = SchemaDescription(
            namespace=self.namespace, name=self.name, label=root.get("label") or main.get("label") or self.name,
            sql_table=sql_table, autopk=autopk, autouuid=autouuid, auto_stg=auto_stg, data_source=data_source,
            attributes=tuple(self.attributes), primary_key=primary_key, keys=tuple(keys), indexes=tuple(indexes),
            enumerations=tuple(self.enumerations), staging_source=root.get("stgSrcSchema"),
            xml_fields=tuple(self.xml_fields), links=tuple(links), view=view, extends=self.extends,
            extensions=self.extensions, fragments=fragments, warnings=tuple(errors.warnings),
            label_singular=root.get("labelSingular") or "",
        )
        if auto_stg:
            _check_staging_allowed(description, main, errors)
        if errors.problems:
            raise SchemaInvalid(f"Schema {self.id} is invalid.", errors.problems)
        return description

    def _check_sql_table(self, main, sql_table: str, view: bool) -> None:
        limit = _SQL_NAME_MAX - len(STAGING_SUFFIX)
        if view and _QUALIFIED_TABLE_RE.match(sql_table) and len(sql_table) <= 2 * _SQL_NAME_MAX + 1:
            return
        if _QUALIFIED_TABLE_RE.match(sql_table):
            self.errors.add('a schema-qualified sqltable (schema.Table) maps an existing table: add view="true" to '
                            "the main element, or use a plain table name", line=main.sourceline,
                            attribute="sqltable", value=sql_table)
        elif not _SQL_NAME_RE.match(sql_table) or len(sql_table) > limit:
            self.errors.add(f"sqltable must be a SQL identifier of at most {limit} characters (letters, digits, "
                            "'_')", line=main.sourceline, attribute="sqltable", value=sql_table)

    # -- elements and attributes

    def _walk(self, element, path: tuple[str, ...], *, xml: bool, main: bool = False) -> None:
        errors = self.errors
        for child in element.iterchildren():
            tag = _tag(child)
            if tag is None:
                continue
            outer, errors.origin = errors.origin, child.get("belongsTo") or errors.origin
            try:
                self._walk_child(child, tag, path, xml=xml, main=main)
            finally:
                errors.origin = outer

    def _walk_child(self, child, tag: str, path: tuple[str, ...], *, xml: bool, main: bool) -> None:
        errors = self.errors
        if tag == "attribute":
            self._add_attribute(child, path, xml=xml)
        elif tag in ("key", "dbindex", "index"):
            if main:
                self._parse_key_or_index(child)
            else:
                errors.warn(f"<{tag}> inside a sub-element is ignored; declare keys and indexes on the main "
                            "element with paths such as location/@city", line=child.sourceline)
        elif tag == "element":
            self._element(child, path, xml=xml, main=main)
        elif tag == "join" and not main:
            return  # read with its link
        else:
            errors.warn(f"<{tag}> is kept in the source and ignored: it does not change storage",
                        line=child.sourceline, attribute=tag)

    def _element(self, child, path: tuple[str, ...], *, xml: bool, main: bool) -> None:
        errors = self.errors
        errors.unknown_attributes(child, _KNOWN_ELEMENT_ATTRS, _describe_element(child))
        name = (child.get("name") or "").strip()
        inlined = (child.get("aggregate") or child.get("ref") or "").strip()
        if not name and inlined:
            # <element aggregate="ns:schema:element"/> without a name copies that element's content in
            # place, at the current level (Campaign's documented way to share a block of fields).
            self._include_reference(child, "aggregate" if child.get("aggregate") else "ref", inlined, path, xml=xml)
            return
        if not name or not _NAME_RE.match(name):
            errors.add("a sub-<element> needs a name of letters, digits, '_' or '-', starting with a letter",
                       line=child.sourceline, attribute="name", value=name or None)
            return
        if child.get("expr") is not None or child.get("_operation") == "delete":
            return  # calculated (not stored), or a removal an extension declares
        kind = child.get("type")
        if kind == "link":
            if not main:
                errors.add(f"link '{name}' is inside a sub-element; declare links on the main element",
                           line=child.sourceline, attribute="type", value="link")
                return
            self._parse_link(child)
            return
        inner = path + (name,)
        is_xml = xml or errors.boolean(child, "xml") or kind in XML_ONLY_TYPES or errors.boolean(child, "unbound")
        for ref_attr in ("ref", "aggregate", "template"):
            reference = (child.get(ref_attr) or "").strip()
            if reference:
                self._include_reference(child, ref_attr, reference, inner, xml=is_xml)
        if kind is not None:
            if kind not in TYPE_PREFIXES and kind not in XML_ONLY_TYPES:
                errors.add(f"element '{name}' has unknown or unsupported type '{kind}'; use one of "
                           f"{', '.join(SUPPORTED_TYPES + XML_ONLY_TYPES)}, or type=\"link\"",
                           line=child.sourceline, attribute="type", value=kind)
                return
            value = self._attribute_from(child, "/".join(inner), kind, xml=is_xml, element=True)
            if value is not None:
                (self.xml_fields if is_xml else self.attributes).append(value)
        self._walk(child, inner, xml=is_xml)

    def _add_attribute(self, element, path: tuple[str, ...], *, xml: bool) -> None:
        errors = self.errors
        line = element.sourceline
        errors.unknown_attributes(element, _KNOWN_ATTRIBUTE_ATTRS, _describe_element(element))
        name = (element.get("name") or "").strip()
        if not name:
            errors.add("<attribute> needs a name", line=line, attribute="name")
            return
        if not _NAME_RE.match(name):
            errors.add("attribute names use letters, digits, '_' or '-', starting with a letter",
                       line=line, attribute="name", value=name)
            return
        if element.get("expr") is not None or element.get("_operation") == "delete":
            return  # calculated field (not stored), or a removal an extension declares
        full = "/".join(path + (name,))
        is_xml = xml or errors.boolean(element, "xml")
        reference = (element.get("ref") or element.get("template") or "").strip()
        if reference and element.get("type") is None:
            referenced = self._referenced_attribute(reference, element)
            if referenced is None:
                return
            attribute = Attribute(
                name=full, type=referenced.type, length=referenced.length, not_null=referenced.not_null,
                default=referenced.default, enum=referenced.enum, enum_ref=referenced.enum_ref,
                label=element.get("label") or referenced.label, desc=referenced.desc, line=line,
                sql_name=XML_DATA_COLUMN if is_xml else (element.get("sqlname") or referenced.sql_name),
                xml=is_xml, belongs_to=self.errors.origin,
            )
        else:
            attr_type = element.get("type") or "string"
            if attr_type not in TYPE_PREFIXES and not (is_xml and attr_type in XML_ONLY_TYPES):
                errors.add(f"attribute '{full}' has unknown or unsupported type '{attr_type}'; use one of "
                           f"{', '.join(SUPPORTED_TYPES)}", line=line, attribute="type", value=attr_type)
                return
            attribute = self._attribute_from(element, full, attr_type, xml=is_xml, element=False)
        if self.autopk and full == "id":
            # A declared id (as in a generated staging schema) refines the generated key.
            generated = self.attributes[0]
            self.attributes[0] = Attribute(
                name="id", type="uuid", sql_name=element.get("sqlname") or generated.sql_name, length=KEY_LENGTH,
                not_null=True, label=attribute.label or generated.label, desc=attribute.desc, line=line,
            )
            return
        (self.xml_fields if is_xml else self.attributes).append(attribute)

    def _attribute_from(self, node, full: str, attr_type: str, *, xml: bool, element: bool) -> Attribute | None:
        errors = self.errors
        line = node.sourceline
        length = None
        raw_length = node.get("length")
        if attr_type == "string":
            length = DEFAULT_STRING_LENGTH
            if raw_length is not None:
                if not raw_length.strip().isdigit() or not 1 <= int(raw_length) <= MAX_STRING_LENGTH:
                    errors.add(f"length of '{full}' must be a whole number from 1 to {MAX_STRING_LENGTH} "
                               "(use type=\"memo\" for longer text)", line=line, attribute="length", value=raw_length)
                else:
                    length = int(raw_length)
        elif raw_length is not None and attr_type != "memo":
            errors.warn(f"length has no effect on '{full}' (type {attr_type}); it is ignored, as Campaign does",
                        line=line, attribute="length", value=raw_length)
        if xml:
            sql_name = XML_DATA_COLUMN
        else:
            sql_name = node.get("sqlname") or default_column_name(attr_type, full)
            if not _SQL_NAME_RE.match(sql_name) or len(sql_name) > _SQL_NAME_MAX:
                errors.add(f"sqlname of '{full}' must be a SQL identifier of at most {_SQL_NAME_MAX} characters "
                           "(letters, digits, '_')", line=line, attribute="sqlname", value=sql_name)
        enum, enum_ref = self._enumeration_of(node, full)
        return Attribute(
            name=full, type=attr_type, sql_name=sql_name, length=length, not_null=errors.boolean(node, "notNull"),
            default=node.get("default"), enum=enum, enum_ref=enum_ref, label=node.get("label") or "",
            desc=node.get("desc") or "", line=line, xml=xml, element=element, belongs_to=self.errors.origin,
        )

    def _enumeration_of(self, element, full: str) -> tuple[str | None, str | None]:
        reference = element.get("enum")
        if reference is None:
            return None, None
        reference = reference.strip()
        local = {e.name for e in self.enumerations}
        if reference in local:
            return reference, reference
        parts = reference.split(":")
        if len(parts) == 3:
            schema_id, enum_name = f"{parts[0]}:{parts[1]}", parts[2]
            if schema_id == self.id or (self.extends and schema_id == self.extends):
                if enum_name in local:
                    return enum_name, reference
            else:
                target = self.lookup(schema_id)
                found = target.enumerations_by_name.get(enum_name) if target else None
                if found is not None:
                    if reference not in local:
                        # Copied in under its qualified name, so the value checks need nothing else.
                        self.enumerations.append(Enumeration(reference, found.basetype, found.values, found.default))
                        local.add(reference)
                    return reference, reference
                if target is None:
                    self.errors.warn(f"attribute '{full}' refers to enumeration '{reference}' of {schema_id}, which is "
                                     "not loaded; the reference is kept and values are not checked against it",
                                     line=element.sourceline, attribute="enum", value=reference)
                    return None, reference
        self.errors.add(f"attribute '{full}' refers to enumeration '{reference}', which is not declared; add "
                        "<enumeration name=\"...\"> before the main element, or write ns:schema:name for another "
                        "schema's", line=element.sourceline, attribute="enum", value=reference)
        return None, reference

    # -- templates and references

    def _include_template(self, template: str, main) -> None:
        target = self.lookup(template) if template != self.id else None
        if target is None and self.local_only:
            return
        if target is None:
            self.errors.add(f"template '{template}' is not available: load the schema {template} first, or remove "
                            "template=", line=main.sourceline, attribute="template", value=template)
            return
        own = {el.get("name") for el in main.iterchildren("attribute")}
        for attribute in (*target.attributes, *target.xml_fields):
            if attribute.xml_data or attribute.link or (attribute.name == "id" and target.autopk):
                continue
            if attribute.name in own:
                continue  # the schema's own declaration wins
            included = _rebased(attribute, attribute.name, template)
            (self.xml_fields if attribute.xml else self.attributes).append(included)
        for key in target.keys:
            self.keys.append((key.name, list(key.fields), key.internal, key.db_index))
        for index in target.indexes:
            self.indexes.append((index.name, list(index.fields), index.unique))

    def _include_reference(self, element, attr: str, reference: str, inner: tuple[str, ...], *, xml: bool) -> None:
        """Pull in the attributes of the element `reference` names, under the path `inner`."""
        parts = reference.split(":")
        if len(parts) == 1 or (len(parts) == 3 and f"{parts[0]}:{parts[1]}" == self.id):
            local = self.others.get(parts[-1])
            if local is None:
                self.errors.add(f"{attr}=\"{reference}\": this schema has no top-level <element name=\"{parts[-1]}\">",
                                line=element.sourceline, attribute=attr, value=reference)
                return
            if parts[-1] in self.expanding:
                self.errors.add(f"{attr}=\"{reference}\" refers to itself through other elements",
                                line=element.sourceline, attribute=attr, value=reference)
                return
            self.referenced.add(parts[-1])
            self.expanding.append(parts[-1])
            try:
                self._walk(local, inner, xml=xml)
            finally:
                self.expanding.pop()
            return
        if len(parts) == 2 and attr == "template":
            parts = [*parts, element.get("name")]
        if len(parts) != 3:
            self.errors.add(f"{attr}=\"{reference}\" must be written ns:schema:element, or name an element of this "
                            "schema", line=element.sourceline, attribute=attr, value=reference)
            return
        schema_id, element_name = f"{parts[0]}:{parts[1]}", parts[2]
        target = self.lookup(schema_id)
        if target is None and self.local_only:
            return
        if target is None:
            self.errors.add(f"{attr}=\"{reference}\": schema {schema_id} is not loaded; load it first",
                            line=element.sourceline, attribute=attr, value=reference)
            return
        attributes = target.fragment(element_name)
        if attributes is None:
            prefix = element_name + "/"
            attributes = tuple(
                _rebased(a, a.name[len(prefix):], schema_id)
                for a in (*target.attributes, *target.xml_fields) if a.name.startswith(prefix)
            ) or None
        if attributes is None:
            self.errors.add(f"{attr}=\"{reference}\": {schema_id} has no element '{element_name}'",
                            line=element.sourceline, attribute=attr, value=reference)
            return
        for attribute in attributes:
            rebased = _rebased(attribute, "/".join(inner + (attribute.name,)), schema_id, xml=xml or attribute.xml)
            (self.xml_fields if rebased.xml else self.attributes).append(rebased)

    def _referenced_attribute(self, reference: str, element) -> Attribute | None:
        parts = reference.split(":")
        if len(parts) == 3:
            schema_id, xpath = f"{parts[0]}:{parts[1]}", parts[2]
        else:
            schema_id, xpath = self.id, reference
        name = xpath_to_name(xpath)
        target = self.lookup(schema_id) if schema_id != self.id else None
        # The path may start at the schema's main element (`cus:person:person/@lastname`).
        main_name = schema_id.partition(":")[2]
        names = [name, name[len(main_name) + 1:]] if name and name.startswith(main_name + "/") else [name]
        found = None
        for candidate in names:
            if found is None and target and candidate:
                found = target.field(candidate)
            if found is None and schema_id == self.id:
                found = next((a for a in (*self.attributes, *self.xml_fields) if a.name == candidate), None)
        if found is None and not (self.local_only and target is None and schema_id != self.id):
            attr = "ref" if element.get("ref") is not None else "template"
            self.errors.add(f"{attr}=\"{reference}\" does not name an attribute of a loaded schema",
                            line=element.sourceline, attribute=attr, value=reference)
        return found

    def _fragment(self, element) -> list[Attribute]:
        """The attributes of an extra top-level element, named relative to it (for other schemas' ref=)."""
        saved = self.attributes, self.xml_fields, self.errors
        self.attributes, self.xml_fields, self.errors = [], [], _Collector()
        try:
            self._walk(element, (), xml=False)
            return [*self.attributes, *self.xml_fields]
        finally:
            self.attributes, self.xml_fields, self.errors = saved

    # -- keys, indexes and links

    def _parse_key_or_index(self, element) -> None:
        errors = self.errors
        tag = _tag(element)
        errors.unknown_attributes(element, _KNOWN_KEY_ATTRS, _describe_element(element))
        name = element.get("name")
        if not name:
            errors.add(f"<{tag}> needs a name", line=element.sourceline, attribute="name")
            return
        keyfields = list(element.iterchildren("keyfield"))
        if not keyfields:
            errors.add(f"<{tag} name=\"{name}\"> needs at least one <keyfield xpath=\"@...\"/>",
                       line=element.sourceline)
            return
        fields: list = []
        for keyfield in keyfields:
            xlink = (keyfield.get("xlink") or "").strip()
            if xlink:
                fields.append(("xlink", xlink, keyfield.sourceline))
                continue
            xpath = (keyfield.get("xpath") or "").strip()
            field_name = xpath_to_name(xpath)
            if field_name is None:
                if tag == "key":
                    errors.add(f"<keyfield> of key '{name}' must be the path of an attribute (@email, "
                               "location/@city) or name a link (xlink=\"company\")",
                               line=keyfield.sourceline, attribute="xpath", value=xpath)
                else:
                    errors.warn(f"index '{name}' uses the expression '{xpath}', which this application cannot "
                                "index; the index is ignored", line=keyfield.sourceline, attribute="xpath", value=xpath)
                    return
                continue
            fields.append(field_name)
        if tag == "key":
            self.keys.append((name, fields, errors.boolean(element, "internal"),
                              not errors.boolean(element, "noDbIndex")))
        else:
            self.indexes.append((name, fields, errors.boolean(element, "unique")))

    def _parse_link(self, element) -> None:
        errors = self.errors
        name = element.get("name")
        target = (element.get("target") or "").strip()
        if not target or len(target.split(":")) != 2:
            errors.add(f"link '{name}' needs target=\"ns:schema\"", line=element.sourceline, attribute="target",
                       value=target or None)
            return
        joins = []
        for join in element.iterchildren("join"):
            source, destination = xpath_to_name(join.get("xpath-src") or ""), xpath_to_name(join.get("xpath-dst") or "")
            if source is None or destination is None:
                errors.add(f"<join> of link '{name}' needs xpath-src and xpath-dst naming attributes (@x)",
                           line=join.sourceline, attribute="xpath-src", value=join.get("xpath-src"))
                continue
            joins.append((source, destination))
        unbound = errors.boolean(element, "unbound")
        link = Link(
            name=name, target=target, unbound=unbound, joins=tuple(joins), integrity=element.get("integrity"),
            rev_link=element.get("revLink"), rev_integrity=element.get("revIntegrity"),
            rev_cardinality=element.get("revCardinality"), external_join=errors.boolean(element, "externalJoin"),
            label=element.get("label") or "", belongs_to=element.get("belongsTo"), line=element.sourceline,
        )
        self.links.append((link, element))

    def _primary_key_before_links(self, autopk: bool) -> tuple[str, ...]:
        if autopk:
            return ("id",)
        plain = [(n, f, i) for n, f, i, _ in self.keys if all(isinstance(x, str) for x in f)]
        internal = [k for k in plain if k[2]]
        chosen = internal[0] if internal else (plain[0] if plain else None)
        return tuple(chosen[1]) if chosen else ()

    def _resolve_links(self, own_key: tuple[str, ...]) -> list[Link]:
        errors = self.errors
        resolved: list[Link] = []
        own = {a.name: a for a in self.attributes}
        for link, element in self.links:
            if link.unbound:
                resolved.append(link)
                continue
            if link.target == self.id:
                target_key, target_attrs = own_key, own
            else:
                target = self.lookup(link.target)
                if target is None:
                    # Parsed alone (local_only), the link is known but its columns are not: keys
                    # naming it (xlink) are checked when the target is at hand.
                    self.unresolved_links.add(link.name)
                    if not self.local_only:
                        errors.add(f"link '{link.name}' targets {link.target}, which is not loaded; load "
                                   f"{link.target} first (links need their target's key)",
                                   line=link.line, attribute="target", value=link.target)
                    continue
                target_key, target_attrs = target.primary_key, {a.name: a for a in target.attributes}
            joins = link.joins or tuple((f"{link.name}-{k.rsplit('/', 1)[-1]}", k) for k in target_key)
            if not joins:
                errors.add(f"link '{link.name}': {link.target} has no primary key to join on; add "
                           "<join xpath-src=\"@x\" xpath-dst=\"@y\"/>", line=link.line, attribute="target",
                           value=link.target)
                continue
            fk_names = []
            for source, destination in joins:
                target_attr = target_attrs.get(destination)
                if target_attr is None:
                    errors.add(f"link '{link.name}' joins on {_xpath_of(destination)}, which {link.target} does "
                               "not have", line=link.line, attribute="xpath-dst", value=_xpath_of(destination))
                    continue
                fk_names.append(source)
                if source in own:
                    continue  # joins on an attribute the schema declares
                fk = Attribute(
                    name=source, type=target_attr.type, length=target_attr.length,
                    sql_name=default_column_name(target_attr.type, source),
                    label=f"Foreign key of link '{link.label or link.name}' (field '{destination}')",
                    line=link.line, link=link.name, belongs_to=link.belongs_to,
                )
                self.attributes.append(fk)
                own[source] = fk
            resolved.append(Link(**{**link.__dict__, "joins": tuple(joins)}))
            if fk_names and not errors.boolean(element, "noDbIndex"):
                index_name = link.name + "".join(_capitalize(n.rsplit("/", 1)[-1].split("-")[-1]) for n in
                                                 (d for _, d in joins))
                if not any(tuple(f) == tuple(fk_names) for _, f, _ in self.indexes):
                    self.indexes.append((index_name, fk_names, False))
        return resolved

    def _keys_and_indexes(self, links: list[Link]) -> tuple[list[Key], list[Index]]:
        by_name = {link.name: link for link in links}

        def expand(fields) -> tuple[str, ...]:
            out = []
            for item in fields:
                if isinstance(item, str):
                    out.append(item)
                    continue
                _, link_name, line = item
                if link_name in self.unresolved_links:
                    continue  # its target is missing: reported for the link itself, when it matters
                link = by_name.get(link_name)
                if link is None or link.unbound or not link.joins:
                    self.errors.add(f"<keyfield xlink=\"{link_name}\"> needs a link of cardinality 1 named "
                                    f"'{link_name}' on the main element", line=line, attribute="xlink",
                                    value=link_name)
                    continue
                out.extend(link.foreign_key)
            return tuple(out)

        keys = [Key(name, expand(fields), internal, db_index) for name, fields, internal, db_index in self.keys]
        indexes = [Index(name, expand(fields), unique) for name, fields, unique in self.indexes]
        return keys, indexes

    def _check_names(self) -> None:
        errors = self.errors
        seen_names: dict[str, Attribute] = {}
        seen_sql: dict[str, Attribute] = {}
        for attribute in (*self.attributes, *self.xml_fields):
            if attribute.name in RESERVED_ATTRIBUTE_NAMES:
                errors.add(f"'{attribute.name}' is reserved for the staging table's technical fields; rename the "
                           "attribute", line=attribute.line, attribute="name", value=attribute.name)
            if attribute.name in seen_names:
                errors.add(f"attribute '{attribute.name}' is declared twice (first on line "
                           f"{seen_names[attribute.name].line}); remove or rename one",
                           line=attribute.line, attribute="name", value=attribute.name)
            seen_names.setdefault(attribute.name, attribute)
            if attribute.xml:
                continue
            folded = attribute.sql_name.lower()
            if folded in seen_sql and seen_sql[folded].name != attribute.name:
                other = seen_sql[folded]
                if other.xml_data or attribute.xml_data:
                    clash = other if attribute.xml_data else attribute
                    errors.add(f"column 'mData' of '{clash.name}' clashes with the column holding the XML fields; "
                               "set a different sqlname", line=clash.line, attribute="sqlname", value=clash.sql_name)
                else:
                    errors.add(f"column '{attribute.sql_name}' of '{attribute.name}' clashes with "
                               f"'{other.name}'; set a different sqlname on one of them",
                               line=attribute.line, attribute="sqlname", value=attribute.sql_name)
            seen_sql.setdefault(folded, attribute)
            if folded.startswith("stg") or folded.startswith("istg") or folded in {"idelete", "tslastmodified"}:
                errors.add(f"column name '{attribute.sql_name}' is reserved for staging bookkeeping; set another "
                           "sqlname", line=attribute.line, attribute="sqlname", value=attribute.sql_name)


def _rebased(attribute: Attribute, name: str, origin: str, *, xml: bool | None = None) -> Attribute:
    xml = attribute.xml if xml is None else xml
    return Attribute(**{**attribute.__dict__, "name": name, "xml": xml,
                        "sql_name": XML_DATA_COLUMN if xml else attribute.sql_name,
                        "belongs_to": attribute.belongs_to or origin})


def _xpath_of(name: str) -> str:
    *parents, leaf = name.split("/")
    return "/".join([*parents, f"@{leaf}"])


def _check_staging_allowed(description: SchemaDescription, main, errors: _Collector) -> None:
    line = main.sourceline
    if description.extends:
        return  # checked on the merged schema
    if description.is_staging_schema:
        errors.add(f"{description.id} is itself a staging schema; staging cannot be enabled on it. "
                   f"Set autoStg on its source schema instead", line=line, attribute="autoStg", value="true")
    if description.view:
        errors.add('a view (view="true") maps an existing table; staging cannot be enabled on it',
                   line=line, attribute="autoStg", value="true")
    if not description.is_cloud:
        errors.add(f'staging applies to cloud schemas only; dataSource="{description.data_source}" makes this '
                   f'schema local. Remove dataSource or set it to "{CLOUD_DATA_SOURCE}"',
                   line=line, attribute="dataSource", value=description.data_source)
    if not (description.autopk and description.autouuid):
        errors.add('staging needs autopk="true" autouuid="true" on the main element (staged rows are identified '
                   "by a generated UUID key, as FFDA requires)", line=line, attribute="autoStg", value="true")


def _parse_enumeration(element, errors: _Collector) -> Enumeration:
    name = element.get("name") or ""
    if not name:
        errors.add("<enumeration> needs a name", line=element.sourceline, attribute="name")
    basetype = element.get("basetype") or "string"
    if basetype not in TYPE_PREFIXES:
        errors.add(f"enumeration '{name}' has unknown basetype '{basetype}'",
                   line=element.sourceline, attribute="basetype", value=basetype)
    values = []
    for value in element.iterchildren("value"):
        value_name = value.get("name") or value.get("value") or ""
        if not value_name:
            errors.add(f"a <value> of enumeration '{name}' needs a name or a value", line=value.sourceline)
            continue
        values.append(EnumValue(name=value_name, value=value.get("value", value_name), label=value.get("label", "")))
    return Enumeration(name=name, basetype=basetype, values=tuple(values), default=element.get("default"))
