"""Campaign srcSchema XML → an immutable description of the schema. No Django in here.

The description carries what decides storage: identity, the main element's flags (autopk, autouuid,
autoStg, dataSource, sqltable), attributes with their Campaign types and SQL names, keys, indexes
and enumerations. Everything else in the document (labels of sub-elements, compute-string, methods,
help, ...) stays in the stored source and is ignored here.

Naming follows Campaign (reference/campaign-v8-behaviour.md §4.6): table = namespace + name with
capital first letters (`dem:sampleTable` → `DemSampleTable`), column = type prefix + name with a
capital first letter (`testcol1` → `sTestcol1`), the autopk key `id` → `u<Name>Id`.
"""

import re
from dataclasses import dataclass, field
from functools import cached_property

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

DEFAULT_STRING_LENGTH = 255
MAX_STRING_LENGTH = 16384  # Campaign's documented ceiling for string; use memo beyond it
KEY_LENGTH = 255  # width of the autopk key: wide enough for caller-supplied ids such as "ABC12345"

RESERVED_NAMESPACES = frozenset({"xtk", "nms", "xxl", "nl", "ncm", "temp", "crm"})
CLOUD_DATA_SOURCE = "nms:extAccount:ffda"
# Names the staging table uses for Campaign's technical fields and our sync bookkeeping.
RESERVED_ATTRIBUTE_NAMES = frozenset({"delete", "lastModified"})
STAGING_SUFFIX = "Stg"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SQL_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SQL_NAME_MAX = 63  # PostgreSQL's identifier limit
_XPATH_RE = re.compile(r"^\[?@([A-Za-z][A-Za-z0-9_-]*)\]?$")
# Sub-elements of the main element that carry no storage and are safely ignored.
_IGNORED_CHILDREN = frozenset(
    {"compute-string", "sysFilter", "help", "condition", "methods", "join", "default", "image", "form"}
)
_TRUE_VALUES = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    sql_name: str
    length: int | None = None  # strings only
    not_null: bool = False
    default: str | None = None  # XTK expression as written, e.g. "0", "'abc'", "GetDate()"
    enum: str | None = None
    label: str = ""
    desc: str = ""
    line: int | None = None

    @property
    def xpath(self) -> str:
        return f"@{self.name}"


@dataclass(frozen=True)
class Key:
    name: str
    fields: tuple[str, ...]  # attribute names
    internal: bool = False


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
    attributes: tuple[Attribute, ...]
    primary_key: tuple[str, ...]  # attribute names
    keys: tuple[Key, ...] = ()
    indexes: tuple[Index, ...] = ()
    enumerations: tuple[Enumeration, ...] = ()
    staging_source: str | None = None  # stgSrcSchema, set on a generated staging schema
    label_singular: str = ""
    _by_name: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {a.name: a for a in self.attributes})

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
        return self._by_name.get(name)

    @cached_property
    def enumerations_by_name(self) -> dict[str, Enumeration]:
        return {e.name: e for e in self.enumerations}


def default_table_name(namespace: str, name: str) -> str:
    return _capitalize(namespace) + _capitalize(name)


def default_column_name(attr_type: str, name: str) -> str:
    # Hyphenated names read as words: "recipient-id" → "RecipientId".
    return TYPE_PREFIXES[attr_type] + "".join(_capitalize(part) for part in re.split(r"[-_]", name) if part)


def _capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]


class _Collector:
    """Gathers every problem of a document so the user can fix them all in one pass."""

    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, message: str, *, line: int | None = None, attribute: str | None = None, value=None):
        self.problems.append(Problem(message, line=line, attribute=attribute, value=value))

    def boolean(self, element, attr: str, default: bool = False) -> bool:
        raw = element.get(attr)
        if raw is None:
            return default
        if raw.strip().lower() in _TRUE_VALUES:
            return _TRUE_VALUES[raw.strip().lower()]
        self.add(f'{attr} must be "true" or "false"', line=element.sourceline, attribute=attr, value=raw)
        return default


def parse_srcschema(source: str | bytes, *, builtin: bool = False, max_bytes: int = 1_048_576) -> SchemaDescription:
    """Parse and check a srcSchema document.

    Raises SchemaInvalid listing every problem (line, attribute, what to change), or InvalidXml /
    TooLarge from the hardened parser. `builtin` allows Campaign's reserved namespaces.
    """
    root = parse_xml(source, max_bytes=max_bytes, what="schema")
    errors = _Collector()

    if not isinstance(root.tag, str) or root.tag != "srcSchema":
        raise SchemaInvalid(
            "Not a srcSchema document.",
            [Problem(f"the root element is <{root.tag}>; a schema starts with <srcSchema namespace=... name=...>",
                     line=root.sourceline)],
        )

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

    enumerations = tuple(_parse_enumeration(el, errors) for el in root.iterchildren("enumeration"))

    mains = [el for el in root.iterchildren("element") if el.get("name") == name]
    others = [el for el in root.iterchildren("element") if el.get("name") != name]
    for el in others:
        errors.add(f"the main <element> must be named like the schema ('{name}')",
                   line=el.sourceline, attribute="name", value=el.get("name"))
    if not mains:
        if name and not others:
            errors.add(f'add the main element <element name="{name}">', line=root.sourceline)
        raise SchemaInvalid(f"Schema {namespace}:{name} is invalid.", errors.problems)
    if len(mains) > 1:
        errors.add("only one main <element> is allowed", line=mains[1].sourceline)
    main = mains[0]

    autopk = errors.boolean(main, "autopk")
    autouuid = errors.boolean(main, "autouuid")
    auto_stg = errors.boolean(main, "autoStg")
    sql_table = main.get("sqltable") or default_table_name(namespace, name)
    if not _SQL_NAME_RE.match(sql_table) or len(sql_table) > _SQL_NAME_MAX - len(STAGING_SUFFIX):
        errors.add(f"sqltable must be a SQL identifier of at most {_SQL_NAME_MAX - len(STAGING_SUFFIX)} characters "
                   "(letters, digits, '_')", line=main.sourceline, attribute="sqltable", value=sql_table)

    attributes: list[Attribute] = []
    if autopk:
        attributes.append(Attribute(
            name="id", type="uuid", sql_name=f"u{_capitalize(name)}Id", length=KEY_LENGTH, not_null=True,
            label="Primary key", desc="Internal primary key", line=main.sourceline,
        ))
    keys: list[Key] = []
    indexes: list[Index] = []
    for child in main.iterchildren():
        if not isinstance(child.tag, str):
            continue
        if child.tag == "attribute":
            attribute = _parse_attribute(child, errors, enumerations)
            if attribute is None:
                continue
            if autopk and attribute.name == "id":
                # A declared id (as in a generated staging schema) refines the generated key.
                attributes[0] = Attribute(
                    name="id", type="uuid", sql_name=child.get("sqlname") or attributes[0].sql_name,
                    length=KEY_LENGTH, not_null=True, label=attribute.label or "Primary key",
                    desc=attribute.desc, line=child.sourceline,
                )
                continue
            attributes.append(attribute)
        elif child.tag == "key":
            key = _parse_fields(child, errors, "key")
            if key:
                keys.append(Key(name=key[0], fields=key[1], internal=errors.boolean(child, "internal")))
        elif child.tag in ("dbindex", "index"):
            index = _parse_fields(child, errors, child.tag)
            if index:
                indexes.append(Index(name=index[0], fields=index[1], unique=errors.boolean(child, "unique")))
        elif child.tag == "element":
            kind = child.get("type") or ("xml" if child.get("xml") == "true" else "structure")
            errors.add(
                f"<element type=\"{kind}\"> (links, XML and nested elements) is not supported yet; "
                "declare the data as <attribute> of the main element",
                line=child.sourceline, attribute="element", value=child.get("name"),
            )
        elif child.tag not in _IGNORED_CHILDREN:
            pass  # kept in the source, no storage impact

    _check_names(attributes, errors)
    by_name = {a.name: a for a in attributes}
    for group, label in ((keys, "key"), (indexes, "index")):
        for item in group:
            for field_name in item.fields:
                if field_name not in by_name:
                    errors.add(f"<{label} name=\"{item.name}\"> refers to @{field_name}, which is not an attribute "
                               "of the main element", attribute="xpath", value=f"@{field_name}")

    if autopk:
        primary_key = ("id",)
    else:
        internal = [k for k in keys if k.internal]
        chosen = internal[0] if internal else (keys[0] if keys else None)
        primary_key = chosen.fields if chosen else ()
        if chosen is None:
            errors.add('the schema has no primary key: add autopk="true" autouuid="true" to the main element, '
                       "or declare a <key>", line=main.sourceline, attribute="autopk")
        # The chosen key becomes the table's primary key, so it needs no separate unique index.
        keys = [k for k in keys if k is not chosen]

    data_source = main.get("dataSource")
    staging_source = root.get("stgSrcSchema")
    description = SchemaDescription(
        namespace=namespace, name=name, label=root.get("label") or main.get("label") or name,
        sql_table=sql_table, autopk=autopk, autouuid=autouuid, auto_stg=auto_stg, data_source=data_source,
        attributes=tuple(attributes), primary_key=primary_key, keys=tuple(keys), indexes=tuple(indexes),
        enumerations=enumerations, staging_source=staging_source, label_singular=root.get("labelSingular") or "",
    )
    if auto_stg:
        _check_staging_allowed(description, main, errors)
    if errors.problems:
        raise SchemaInvalid(f"Schema {namespace}:{name} is invalid.", errors.problems)
    return description


def _check_staging_allowed(description: SchemaDescription, main, errors: _Collector) -> None:
    line = main.sourceline
    if description.is_staging_schema:
        errors.add(f"{description.id} is itself a staging schema; staging cannot be enabled on it. "
                   f"Set autoStg on its source schema instead", line=line, attribute="autoStg", value="true")
    if not description.is_cloud:
        errors.add(f'staging applies to cloud schemas only; dataSource="{description.data_source}" makes this '
                   f'schema local. Remove dataSource or set it to "{CLOUD_DATA_SOURCE}"',
                   line=line, attribute="dataSource", value=description.data_source)
    if not (description.autopk and description.autouuid):
        errors.add('staging needs autopk="true" autouuid="true" on the main element (FFDA requires a UUID key)',
                   line=line, attribute="autoStg", value="true")


def _parse_attribute(element, errors: _Collector, enumerations) -> Attribute | None:
    line = element.sourceline
    name = (element.get("name") or "").strip()
    if not name:
        errors.add("<attribute> needs a name", line=line, attribute="name")
        return None
    if not _NAME_RE.match(name):
        errors.add("attribute names use letters, digits, '_' or '-', starting with a letter",
                   line=line, attribute="name", value=name)
        return None
    if element.get("expr") is not None:
        return None  # calculated field: not stored
    if element.get("xml") == "true":
        errors.add(f"attribute '{name}' is stored in XML (xml=\"true\"), which is not supported yet; "
                   "remove xml=\"true\" to give it its own column", line=line, attribute="xml", value="true")
        return None
    attr_type = element.get("type") or "string"
    if attr_type not in TYPE_PREFIXES:
        errors.add(f"attribute '{name}' has unknown or unsupported type '{attr_type}'; use one of "
                   f"{', '.join(SUPPORTED_TYPES)}", line=line, attribute="type", value=attr_type)
        return None
    length = None
    raw_length = element.get("length")
    if attr_type == "string":
        length = DEFAULT_STRING_LENGTH
        if raw_length is not None:
            if not raw_length.strip().isdigit() or not 1 <= int(raw_length) <= MAX_STRING_LENGTH:
                errors.add(f"length of '{name}' must be a whole number from 1 to {MAX_STRING_LENGTH} "
                           "(use type=\"memo\" for longer text)", line=line, attribute="length", value=raw_length)
            else:
                length = int(raw_length)
    elif raw_length is not None and attr_type != "memo":
        errors.add(f"length applies to strings only; remove it from '{name}' (type {attr_type})",
                   line=line, attribute="length", value=raw_length)
    sql_name = element.get("sqlname") or default_column_name(attr_type, name)
    if not _SQL_NAME_RE.match(sql_name) or len(sql_name) > _SQL_NAME_MAX:
        errors.add(f"sqlname of '{name}' must be a SQL identifier of at most {_SQL_NAME_MAX} characters "
                   "(letters, digits, '_')", line=line, attribute="sqlname", value=sql_name)
    enum = element.get("enum")
    if enum is not None and enum not in {e.name for e in enumerations}:
        errors.add(f"attribute '{name}' refers to enumeration '{enum}', which the schema does not declare; "
                   "add <enumeration name=\"...\"> before the main element", line=line, attribute="enum", value=enum)
    not_null = errors.boolean(element, "notNull")
    return Attribute(
        name=name, type=attr_type, sql_name=sql_name, length=length, not_null=not_null,
        default=element.get("default"), enum=enum, label=element.get("label") or "",
        desc=element.get("desc") or "", line=line,
    )


def _check_names(attributes: list[Attribute], errors: _Collector) -> None:
    seen_names: dict[str, Attribute] = {}
    seen_sql: dict[str, Attribute] = {}
    for attribute in attributes:
        if attribute.name in RESERVED_ATTRIBUTE_NAMES:
            errors.add(f"'{attribute.name}' is reserved for the staging table's technical fields; rename the "
                       "attribute", line=attribute.line, attribute="name", value=attribute.name)
        if attribute.name in seen_names:
            errors.add(f"attribute '{attribute.name}' is declared twice (first on line "
                       f"{seen_names[attribute.name].line}); remove or rename one",
                       line=attribute.line, attribute="name", value=attribute.name)
        seen_names.setdefault(attribute.name, attribute)
        folded = attribute.sql_name.lower()
        if folded in seen_sql and seen_sql[folded].name != attribute.name:
            errors.add(f"column '{attribute.sql_name}' of '{attribute.name}' clashes with "
                       f"'{seen_sql[folded].name}'; set a different sqlname",
                       line=attribute.line, attribute="sqlname", value=attribute.sql_name)
        seen_sql.setdefault(folded, attribute)
        if folded.startswith("stg") or folded.startswith("istg") or folded in {"idelete", "tslastmodified"}:
            errors.add(f"column name '{attribute.sql_name}' is reserved for staging bookkeeping; set another "
                       "sqlname", line=attribute.line, attribute="sqlname", value=attribute.sql_name)


def _parse_fields(element, errors: _Collector, label: str) -> tuple[str, tuple[str, ...]] | None:
    name = element.get("name")
    if not name:
        errors.add(f"<{label}> needs a name", line=element.sourceline, attribute="name")
        return None
    fields = []
    keyfields = list(element.iterchildren("keyfield"))
    for keyfield in keyfields:
        xpath = (keyfield.get("xpath") or "").strip()
        match = _XPATH_RE.match(xpath)
        if not match:
            errors.add(f"<keyfield> of {label} '{name}' must point at an attribute of the main element, "
                       "written @name (links are not supported yet)",
                       line=keyfield.sourceline, attribute="xpath", value=xpath)
            continue
        fields.append(match.group(1))
    if not keyfields:
        errors.add(f"<{label} name=\"{name}\"> needs at least one <keyfield xpath=\"@...\"/>",
                   line=element.sourceline)
        return None
    return name, tuple(fields)


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
