"""Campaign's queryDef: read it, check it against a schema, compile it to parameterised SQL.

No Django in here. A queryDef arrives as an XML element (SOAP `xtk:queryDef#ExecuteQuery`) or as
the JSON object Adobe's SDK builds it from (REST `POST /api/v1/query/`); both become one `QueryDef`.
`compile_query` turns it into one SQL statement for SQLite or PostgreSQL, and `shape_rows` turns
the fetched rows into the nested records Campaign answers with.

Expressions (`@email LIKE 'a%'`, `Lower([location/@city])`, `Count(@id) > 1`) are parsed by a
real grammar (lark, below) into a small tree; SQL is generated from that tree only. Identifiers
come from the schema description (an unknown attribute is an error), every value the caller
wrote becomes a query parameter, so no caller text is ever formatted into the SQL.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

# lark (pinned in requirements.txt): a maintained LALR parser generator with exact error positions
# and case-insensitive keywords, so the expression language is a declared grammar, not regexes.
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from campaignsite.errors import InvalidInput, Problem
from staging.ddl import POSTGRESQL, SQLITE, quote
from staging.srcschema import INTEGER_TYPES, NUMERIC_TYPES, SchemaDescription

OPERATIONS = ("select", "get", "getIfExists", "count")

# --- The expression grammar ----------------------------------------------------------------------
#
# Precedence, loosest first: OR, AND, NOT, comparisons (= != <> < <= > >= LIKE IN IS NULL), + -,
# * /, unary sign. Keywords are case-insensitive and need a word boundary, so `ordinal` is a name.
# A path ends in an attribute: `@email`, `location/@city`, `[company/@name]`; a name in a path may
# contain '-' as Campaign's do (`@folder-id`), so write subtraction with spaces: `@a - 1`.

GRAMMAR = r"""
?start: expr

?expr: or_expr
?or_expr: and_expr
        | or_expr OR and_expr            -> bool_or
?and_expr: not_expr
         | and_expr AND not_expr         -> bool_and
?not_expr: predicate
         | NOT not_expr                  -> bool_not
?predicate: sum
          | sum COMP_OP sum              -> compare
          | sum LIKE sum                 -> like
          | sum NOT LIKE sum             -> not_like
          | sum IN "(" args ")"          -> in_list
          | sum NOT IN "(" args ")"      -> not_in_list
          | sum IS NULL                  -> is_null
          | sum IS NOT NULL              -> is_not_null
?sum: product
    | sum ADD_OP product                 -> arith
?product: unary
        | product MUL_OP unary           -> arith
?unary: atom
      | ADD_OP unary                     -> sign
?atom: NUMBER                            -> number
     | STRING                            -> string
     | DATE                              -> date
     | PATH                              -> path
     | "[" PATH "]"                      -> path
     | NAME "(" [args] ")"               -> call
     | NAME "(" MUL_OP ")"               -> call_star
     | "(" expr ")"
args: expr ("," expr)*

OR.2: /or\b/i
AND.2: /and\b/i
NOT.2: /not\b/i
LIKE.2: /like\b/i
IN.2: /in\b/i
IS.2: /is\b/i
NULL.2: /null\b/i
PATH.3: /(?:[A-Za-z_][A-Za-z0-9_-]*\/)*@[A-Za-z_][A-Za-z0-9_-]*/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/
STRING: /'(?:[^']|'')*'|"(?:[^"]|"")*"/
DATE: /#[^#]*#/
COMP_OP: /<>|!=|<=|>=|=|<|>/
ADD_OP: /[+-]/
MUL_OP: /[*\/]/

%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True)


class ExpressionError(Exception):
    """An expression that does not parse or compile: `column` is 1-based in the expression text."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.column = column


# --- Expression tree -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Literal:
    value: object
    kind: str  # string, number, date, datetime
    column: int


@dataclass(frozen=True)
class Path:
    path: str  # as written, without brackets: "@email", "location/@city"
    column: int


@dataclass(frozen=True)
class Call:
    name: str  # as written
    args: tuple
    column: int
    star: bool = False  # Count(*)


@dataclass(frozen=True)
class Sign:
    op: str
    operand: object
    column: int


@dataclass(frozen=True)
class Arith:
    op: str  # + - * /
    left: object
    right: object
    column: int


@dataclass(frozen=True)
class Compare:
    op: str  # = <> < <= > >=  (!= is read as <>)
    left: object
    right: object
    column: int


@dataclass(frozen=True)
class Like:
    left: object
    pattern: object
    negated: bool
    column: int


@dataclass(frozen=True)
class InList:
    left: object
    items: tuple
    negated: bool
    column: int


@dataclass(frozen=True)
class IsNull:
    operand: object
    negated: bool
    column: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR
    left: object
    right: object


@dataclass(frozen=True)
class Not:
    operand: object


_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$"
)


def _date_literal(token: Token) -> Literal:
    text = token.value[1:-1].strip()
    match = _DATE_RE.match(text)
    error = ExpressionError(f"'{token.value}' is not a date: write #YYYY-MM-DD# or #YYYY-MM-DD HH:MM:SSZ#",
                            token.column)
    if not match:
        raise error
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if hour is None:
            return Literal(date(int(year), int(month), int(day)), "date", token.column)
        tz = timezone.utc
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int((fraction or "0").ljust(6, "0"))
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz)
    except ValueError:
        raise error from None
    return Literal(value.astimezone(timezone.utc), "datetime", token.column)


class _ToTree(Transformer):
    def number(self, items):
        (token,) = items
        text = token.value
        value = float(text) if any(c in text for c in ".eE") else int(text)
        return Literal(value, "number", token.column)

    def string(self, items):
        (token,) = items
        quote = token.value[0]
        return Literal(token.value[1:-1].replace(quote * 2, quote), "string", token.column)

    def date(self, items):
        return _date_literal(items[0])

    def path(self, items):
        (token,) = items
        return Path(token.value, token.column)

    def call(self, items):
        name, args = items
        return Call(name.value, tuple(args or ()), name.column)

    def call_star(self, items):
        name, star = items
        if star.value != "*":
            raise ExpressionError(f"unexpected '{star.value}' in {name.value}(): only Count(*) takes no expression",
                                  star.column)
        return Call(name.value, (), name.column, star=True)

    def args(self, items):
        return tuple(items)

    def sign(self, items):
        op, operand = items
        return Sign(op.value, operand, op.column)

    def arith(self, items):
        left, op, right = items
        return Arith(op.value, left, right, op.column)

    def compare(self, items):
        left, op, right = items
        return Compare("<>" if op.value == "!=" else op.value, left, right, op.column)

    def like(self, items):
        left, op, pattern = items
        return Like(left, pattern, False, op.column)

    def not_like(self, items):
        left, op, _, pattern = items
        return Like(left, pattern, True, op.column)

    def in_list(self, items):
        left, op, values = items
        return InList(left, values, False, op.column)

    def not_in_list(self, items):
        left, op, _, values = items
        return InList(left, values, True, op.column)

    def is_null(self, items):
        operand, op, _ = items
        return IsNull(operand, False, op.column)

    def is_not_null(self, items):
        operand, op, _, _ = items
        return IsNull(operand, True, op.column)

    def bool_or(self, items):
        left, _, right = items
        return BoolOp("OR", left, right)

    def bool_and(self, items):
        left, _, right = items
        return BoolOp("AND", left, right)

    def bool_not(self, items):
        _, operand = items
        return Not(operand)


_TOKEN_NAMES = {
    "OR": "OR", "AND": "AND", "NOT": "NOT", "LIKE": "LIKE", "IN": "IN", "IS": "IS", "NULL": "NULL",
    "PATH": "an attribute (@name)", "NAME": "a function name", "NUMBER": "a number", "STRING": "a string",
    "DATE": "a date (#YYYY-MM-DD#)", "COMP_OP": "a comparison (= <> < > ...)", "ADD_OP": "+ or -",
    "MUL_OP": "* or /", "LPAR": "(", "RPAR": ")", "COMMA": ",", "LSQB": "[", "RSQB": "]", "$END": "the end",
}


def _expected(names) -> str:
    shown = sorted({_TOKEN_NAMES.get(n, n) for n in names})
    return ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "")


def parse_expression(text: str):
    """The tree of one expression; ExpressionError naming what is wrong and its column."""
    if text is None or not str(text).strip():
        raise ExpressionError("the expression is empty", 1)
    try:
        return _ToTree().transform(_PARSER.parse(text))
    except VisitError as error:
        if isinstance(error.orig_exc, ExpressionError):
            raise error.orig_exc from None
        raise
    except UnexpectedCharacters as error:
        raise ExpressionError(f"unexpected character '{text[error.pos_in_stream]}' at column {error.column}",
                              error.column) from None
    except UnexpectedEOF as error:
        raise ExpressionError(f"the expression ends too early; expected {_expected(error.expected)}",
                              len(text) + 1) from None
    except UnexpectedToken as error:
        token = error.token
        if token.type == "$END":
            raise ExpressionError(f"the expression ends too early; expected {_expected(error.expected)}",
                                  len(text) + 1) from None
        raise ExpressionError(f"unexpected '{token.value}' at column {token.column}; expected "
                              f"{_expected(error.expected)}", token.column) from None
    except UnexpectedInput as error:  # pragma: no cover - the subclasses above cover lark's errors
        raise ExpressionError(f"syntax error at column {error.column}", error.column) from None


# --- The queryDef --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expr:
    """An expression as written, where it was written (e.g. `select/node[2]/@expr`), and its tree."""

    text: str
    where: str
    tree: object


@dataclass(frozen=True)
class SelectNode:
    expr: Expr
    alias: str | None


@dataclass(frozen=True)
class OrderNode:
    expr: Expr
    descending: bool


@dataclass(frozen=True)
class Condition:
    expr: Expr | None
    bool_operator: str  # how this condition joins the NEXT one: AND or OR
    children: tuple["Condition", ...] = ()


@dataclass(frozen=True)
class QueryDef:
    schema: str
    operation: str
    select: tuple[SelectNode, ...] = ()
    where: tuple[Condition, ...] = ()
    order_by: tuple[OrderNode, ...] = ()
    group_by: tuple[Expr, ...] = ()
    having: tuple[Condition, ...] = ()
    line_count: int | None = None
    start_line: int = 0
    distinct: bool = False


@dataclass
class _Element:
    """The one shape both inputs are read from: a tag, its attributes, its child elements."""

    tag: str
    attrs: dict
    children: list = field(default_factory=list)

    def all(self, tag: str) -> list["_Element"]:
        return [c for c in self.children if c.tag == tag]


def _from_xml(element) -> _Element:
    return _Element(
        tag=element.tag if isinstance(element.tag, str) else "",
        attrs=dict(element.attrib),
        children=[_from_xml(c) for c in element if isinstance(c.tag, str)],
    )


def _from_json(tag: str, value, where: str) -> _Element:
    # The SDK's "SimpleJson" rules: scalars are attributes ("@name" too), objects are child elements,
    # arrays are repeated child elements.
    if not isinstance(value, dict):
        raise InvalidInput("The queryDef is not a JSON object.",
                           [Problem(f"give an object for {where}, e.g. {{\"expr\": \"@email\"}}", attribute=where)])
    element = _Element(tag, {})
    for key, item in value.items():
        if item is None or key.startswith("$"):
            continue
        if isinstance(item, bool):
            element.attrs[key.lstrip("@")] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            element.attrs[key.lstrip("@")] = str(item)
        elif isinstance(item, list):
            element.children.extend(_from_json(key, one, f"{where}/{key}[{i}]") for i, one in enumerate(item))
        else:
            element.children.append(_from_json(key, item, f"{where}/{key}"))
    return element


_TRUE = ("true", "1")
_FALSE = ("false", "0", "")
_ROOT_CHILDREN = ("select", "where", "orderBy", "groupBy", "having")


def query_def_from_xml(element) -> QueryDef:
    """The queryDef of an XML element (`<queryDef schema=... operation=...>`), whatever its tag."""
    return _query_def(_from_xml(element))


def query_def_from_json(data) -> QueryDef:
    """The queryDef of the JSON object Adobe's SDK takes: {"schema", "operation", "select": {"node": [...]}...}."""
    return _query_def(_from_json("queryDef", data, "queryDef"))


def _problem(message: str, where: str, value=None) -> InvalidInput:
    return InvalidInput(f"Invalid queryDef: {message}",
                        [Problem(message, attribute=where, value=None if value is None else str(value))])


def _expr(text, where: str) -> Expr:
    if text is None:
        raise _problem(f"{where} is missing", where)
    try:
        tree = parse_expression(text)
    except ExpressionError as error:
        raise _problem(f"{error.message} (in {where})", where, text) from None
    return Expr(text, where, tree)


def _flag(value, where: str) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _problem(f"{where} must be true or false", where, value)


def _integer(value, where: str, *, minimum: int) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,12}", text) or int(text) < minimum:
        raise _problem(f"{where} must be a whole number of at least {minimum}", where, value)
    return int(text)


def _nodes(parent: _Element | None, where: str) -> list[tuple[_Element, str]]:
    if parent is None:
        return []
    for child in parent.children:
        if child.tag != "node":
            raise _problem(f"<{child.tag}> is not allowed in {where}; use <node expr=\"...\"/>", f"{where}/{child.tag}")
    return [(node, f"{where}/node[{i + 1}]") for i, node in enumerate(parent.children)]


def _conditions(parent: _Element, where: str) -> tuple[Condition, ...]:
    result = []
    for i, child in enumerate(parent.children):
        path = f"{where}/condition[{i + 1}]"
        if child.tag != "condition":
            raise _problem(f"<{child.tag}> is not allowed in {where}; use <condition expr=\"...\"/>",
                           f"{where}/{child.tag}")
        operator = (child.attrs.get("boolOperator") or child.attrs.get("bool-operator") or "AND").strip().upper()
        if operator not in ("AND", "OR"):
            raise _problem(f"{path}/@boolOperator must be AND or OR", f"{path}/@boolOperator", operator)
        expr = _expr(child.attrs["expr"], f"{path}/@expr") if child.attrs.get("expr", "").strip() else None
        children = _conditions(child, path)
        if expr is None and not children:
            raise _problem(f"{path} has neither an expr nor nested conditions", f"{path}/@expr")
        result.append(Condition(expr, operator, children))
    return tuple(result)


def _query_def(root: _Element) -> QueryDef:
    schema = (root.attrs.get("schema") or "").strip()
    if not schema:
        raise _problem('the queryDef needs schema="namespace:name", e.g. schema="dem:sampleTable"', "schema")
    operation = (root.attrs.get("operation") or "select").strip()
    if operation not in OPERATIONS:
        raise _problem(f"operation must be one of {', '.join(OPERATIONS)}", "operation", operation)
    parts: dict[str, _Element] = {}
    for child in root.children:
        if child.tag not in _ROOT_CHILDREN:
            raise _problem(f"<{child.tag}> is not part of a queryDef; use {', '.join(_ROOT_CHILDREN)}", child.tag)
        if child.tag in parts:
            raise _problem(f"<{child.tag}> appears twice; put all its nodes in one", child.tag)
        parts[child.tag] = child

    select = []
    for node, where in _nodes(parts.get("select"), "select"):
        alias = (node.attrs.get("alias") or "").strip() or None
        select.append(SelectNode(_expr(node.attrs.get("expr"), f"{where}/@expr"), alias))
    order_by = [OrderNode(_expr(node.attrs.get("expr"), f"{where}/@expr"), _flag(node.attrs.get("sortDesc"),
                                                                              f"{where}/@sortDesc"))
                for node, where in _nodes(parts.get("orderBy"), "orderBy")]
    group_by = [_expr(node.attrs.get("expr"), f"{where}/@expr") for node, where in _nodes(parts.get("groupBy"),
                                                                                           "groupBy")]
    where = _conditions(parts["where"], "where") if "where" in parts else ()
    having = _conditions(parts["having"], "having") if "having" in parts else ()
    if operation != "count" and not select:
        raise _problem(f"operation '{operation}' needs at least one <select><node expr=\"@...\"/></select>",
                       "select")
    return QueryDef(
        schema=schema, operation=operation, select=tuple(select), where=where, order_by=tuple(order_by),
        group_by=tuple(group_by), having=having,
        line_count=_integer(root.attrs.get("lineCount"), "lineCount", minimum=1),
        start_line=_integer(root.attrs.get("startLine"), "startLine", minimum=0) or 0,
        distinct=_flag(root.attrs.get("distinct"), "distinct"),
    )


# --- Where the data is ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """What a path resolves to: a quoted SQL column and its Campaign type."""

    sql: str
    type: str


@dataclass(frozen=True)
class Target:
    """The table a query reads: the schema's description and its SQL names.

    `element` names the answer's records (`sampleTable`, `sampleTableStg`); `technical` adds
    attributes that are not in the description (the staging table's `@delete`, `@lastModified`),
    name → (column, type); `order_columns` break ties so that pages are stable on every database.
    """

    description: SchemaDescription
    element: str
    table: str
    vendor: str
    technical: dict = field(default_factory=dict)
    order_columns: tuple[str, ...] = ()
    # link → Target of the link's schema; the caller checks it may be read and lives in the same
    # database (raising ExpressionError naming why not). None: paths through links are refused.
    link_target: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Join:
    """A LEFT JOIN of a cardinality-1 link: its alias in the statement and the target it reads."""

    link: object  # srcschema.Link
    alias: str
    target: Target


def resolve_path(target: Target, path: str, *, qualifier: str | None = None, join=None) -> Column:
    """The column of an attribute path; the one place paths meet the schema (and the only source of
    identifiers in the SQL: names of a validated description, quoted by staging.ddl.quote).

    `@name` is an attribute of the main element; `a/b/@c` is the attribute named `a/b/c` (an
    attribute of a sub-element). `link/@c` reads attribute `c` of a cardinality-1 link's target
    through `join(link) -> Join` (the compiler's, which adds one LEFT JOIN per link); `qualifier`
    prefixes the column with the table's alias when the statement joins tables.
    Raises ExpressionError naming the path and the attributes that exist.
    """
    description = target.description
    steps = path.split("/")
    name = "/".join(steps[:-1] + [steps[-1].lstrip("@")])
    prefix = f"{qualifier}." if qualifier else ""
    attribute = description.attribute(name)
    if attribute is not None:
        return Column(prefix + quote(attribute.sql_name, target.vendor), attribute.type)
    if name in target.technical:
        column, kind = target.technical[name]
        return Column(prefix + quote(column, target.vendor), kind)
    if len(steps) > 1:
        joined = _join_for(target, steps, join)
        if joined is not None:
            return joined
    known = ", ".join(f"@{a.name}" for a in description.attributes)
    extra = "".join(f", @{n}" for n in target.technical)
    raise ExpressionError(f"'{path}' is not an attribute of {target_id(target)} (attributes: {known}{extra})")


def _join_for(target: Target, steps: list[str], join) -> Column | None:
    """The column behind a path through a link (`company/@name`), read through the link's LEFT JOIN."""
    path = "/".join(steps)
    link = target.description.link(steps[0])
    if link is None:
        return None
    if link.unbound:
        raise ExpressionError(f"'{path}' goes through '{link.name}', a collection link (unbound) to {link.target}: "
                              "it would answer several values per record; only links of cardinality 1 can be "
                              "read in a path")
    if join is None:
        raise ExpressionError(f"'{path}' goes through the link '{link.name}', which cannot be followed here")
    try:
        joined = join(link)
    except ExpressionError as error:
        raise ExpressionError(f"'{path}' cannot be read: {error.message}") from None
    rest = steps[1:]
    if len(rest) > 1 and joined.target.description.link(rest[0]) is not None:
        raise ExpressionError(f"'{path}' goes through two links ('{link.name}', then '{rest[0]}'): a path may "
                              "cross one link only")
    try:
        return resolve_path(joined.target, "/".join(rest), qualifier=joined.alias)
    except ExpressionError as error:
        known = ", ".join(f"{link.name}/@{a.name}" for a in joined.target.description.attributes)
        raise ExpressionError(f"'{path}': '{'/'.join(rest)}' is not an attribute of {link.target}, the target of "
                              f"the link '{link.name}' (attributes: {known})") from error


def _walk_paths(node):
    """Every Path of an expression tree."""
    if isinstance(node, Path):
        yield node
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk_paths(item)
    elif hasattr(node, "__dataclass_fields__"):
        for name in node.__dataclass_fields__:
            yield from _walk_paths(getattr(node, name))


def _query_exprs(query: "QueryDef"):
    def conditions(items):
        for condition in items:
            if condition.expr is not None:
                yield condition.expr
            yield from conditions(condition.children)

    yield from (node.expr for node in query.select)
    yield from conditions(query.where)
    yield from (node.expr for node in query.order_by)
    yield from query.group_by
    yield from conditions(query.having)


def _uses_links(query: "QueryDef", target: Target) -> bool:
    description = target.description
    return any(len(steps) > 1 and description.attribute("/".join(steps[:-1] + [steps[-1].lstrip("@")])) is None
               and description.link(steps[0]) is not None
               for expr in _query_exprs(query) for steps in (p.path.split("/") for p in _walk_paths(expr.tree)))


def target_id(target: Target) -> str:
    description = target.description
    return f"{description.namespace}:{target.element}"


# --- Compiling -----------------------------------------------------------------------------------

AGGREGATES = ("count", "countdistinct", "sum", "min", "max", "avg")
_STRING_TYPES = ("string", "memo", "uuid")
_DATETIME_TYPES = ("datetime", "datetimetz", "datetimenotz", "time")


def _kind(campaign_type: str) -> str:
    if campaign_type in _STRING_TYPES:
        return "string"
    if campaign_type in NUMERIC_TYPES:
        return "number"
    if campaign_type == "date":
        return "date"
    if campaign_type in _DATETIME_TYPES:
        return "datetime"
    return campaign_type  # "null"


@dataclass(frozen=True)
class Sql:
    text: str
    params: tuple
    type: str  # a Campaign type (string, long, double, boolean, datetime, date ...) or "null"
    predicate: bool = False  # a SQL condition rather than a value
    aggregate: bool = False  # contains an aggregate function
    bare: bool = False  # contains a column outside any aggregate

    @property
    def kind(self) -> str:
        return _kind(self.type)


def _param_value(value, kind: str, vendor: str):
    """A literal as the driver wants it: SQLite compares dates as the text the tables store."""
    if kind == "datetime" and isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if vendor == SQLITE:
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
        if isinstance(value, date):
            return value.isoformat()
    return value


def _like_to_glob(pattern: str) -> str:
    # SQLite's LIKE ignores ASCII case and PostgreSQL's does not; GLOB is case-sensitive, so a
    # literal pattern is translated to keep both databases answering the same rows.
    out = []
    for char in pattern:
        if char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?[":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)


class _Compiler:
    """Compiles expression trees of one query against one target."""

    def __init__(self, target: Target, *, now: datetime, qualifier: str | None = None):
        self.target = target
        self.vendor = target.vendor
        self.now = now
        self.qualifier = qualifier  # the main table's alias when the statement joins links
        self.joins: dict[str, Join] = {}  # link name → its join, in the order first used

    def join(self, link) -> Join:
        """The LEFT JOIN of a cardinality-1 link, added once however many paths go through it."""
        if link.name not in self.joins:
            if self.target.link_target is None:
                raise ExpressionError(f"the link '{link.name}' cannot be followed here")
            linked = self.target.link_target(link)
            self.joins[link.name] = Join(link, f"t{len(self.joins) + 1}", linked)
        return self.joins[link.name]

    def from_clause(self, table: str) -> str:
        """The FROM clause: the main table, then each link's LEFT JOIN on the link's join columns."""
        if self.qualifier is None:
            return table
        text = f"{table} AS {self.qualifier}"
        main = self.target.description
        for join in self.joins.values():
            linked = join.target
            on = " AND ".join(
                f"{join.alias}.{quote(linked.description.attribute(dst).sql_name, linked.vendor)} = "
                f"{self.qualifier}.{quote(main.attribute(src).sql_name, self.vendor)}"
                for src, dst in join.link.joins)
            text += f" LEFT JOIN {quote(linked.table, linked.vendor)} AS {join.alias} ON {on}"
        return text

    # Errors name the expression's place in the queryDef and the column inside it.
    def compile(self, expr: Expr, *, context: str) -> Sql:
        self.context = context  # "select", "where", "orderBy", "groupBy", "having"
        try:
            return self._node(expr.tree, hint=None, in_aggregate=False)
        except ExpressionError as error:
            at = f" at column {error.column}" if error.column and "column" not in error.message else ""
            raise _problem(f"{error.message}{at} (in {expr.where})", expr.where, expr.text) from None

    def condition(self, expr: Expr, *, context: str) -> Sql:
        sql = self.compile(expr, context=context)
        try:
            return self._as_predicate(sql, getattr(expr.tree, "column", 1))
        except ExpressionError as error:
            raise _problem(f"{error.message} (in {expr.where})", expr.where, expr.text) from None

    def value(self, expr: Expr, *, context: str) -> Sql:
        return self._as_value(self.compile(expr, context=context))

    # --- helpers
    def _as_value(self, sql: Sql) -> Sql:
        if not sql.predicate:
            return sql
        return Sql(f"CASE WHEN {sql.text} THEN 1 ELSE 0 END", sql.params, "boolean", False, sql.aggregate, sql.bare)

    def _as_predicate(self, sql: Sql, column: int) -> Sql:
        if sql.predicate:
            return sql
        if sql.kind == "number":
            return Sql(f"({sql.text}) <> 0", sql.params, "boolean", True, sql.aggregate, sql.bare)
        raise ExpressionError(f"a {sql.type} value is not a condition; compare it, e.g. expr = 'value'", column)

    def _literal(self, node: Literal, hint: str | None) -> Sql:
        kind, value = node.kind, node.value
        if hint in ("string",) and kind == "number":
            kind, value = "string", (str(value) if not isinstance(value, float) or not value.is_integer()
                                     else str(int(value)))
        elif hint == "number" and kind == "string":
            try:
                value = int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else float(value)
            except ValueError:
                raise ExpressionError(f"'{node.value}' is not a number", node.column) from None
            kind = "number"
        elif hint in ("datetime", "date") and kind == "date":
            kind = hint
        elif hint in ("datetime", "date") and kind == "string":
            parsed = _DATE_RE.match(value.strip())
            if parsed is None:
                raise ExpressionError(f"'{value}' is not a date; write #YYYY-MM-DD# or 'YYYY-MM-DD HH:MM:SS'",
                                      node.column)
            value = _date_literal(Token("DATE", f"#{value.strip()}#", column=node.column)).value
            kind = hint if isinstance(value, datetime) or hint == "date" else "datetime"
        campaign_type = {"string": "string", "date": "date", "datetime": "datetime"}.get(kind)
        if campaign_type is None:
            campaign_type = "int64" if isinstance(value, int) else "double"
        text = "%s"
        if hint is None and kind == "string":
            # Alone (a function argument, a selected value), PostgreSQL cannot tell a parameter's type.
            text = "CAST(%s AS VARCHAR)"
        elif hint is None and kind in ("date", "datetime") and self.vendor == POSTGRESQL:
            text = "CAST(%s AS DATE)" if kind == "date" else "CAST(%s AS TIMESTAMP WITH TIME ZONE)"
        return Sql(text, (_param_value(value, kind, self.vendor),), campaign_type)

    def _node(self, node, *, hint: str | None, in_aggregate: bool) -> Sql:
        if isinstance(node, Literal):
            return self._literal(node, hint)
        if isinstance(node, Path):
            try:
                column = resolve_path(self.target, node.path, qualifier=self.qualifier, join=self.join)
            except ExpressionError as error:
                raise ExpressionError(error.message, node.column) from None
            return Sql(column.sql, (), column.type, bare=not in_aggregate)
        if isinstance(node, Call):
            return self._call(node, in_aggregate=in_aggregate)
        if isinstance(node, Sign):
            operand = self._as_value(self._node(node.operand, hint="number", in_aggregate=in_aggregate))
            self._require(operand, "number", node.column, f"unary {node.op}")
            return Sql(f"({node.op}{operand.text})", operand.params, operand.type, False, operand.aggregate,
                       operand.bare)
        if isinstance(node, Arith):
            return self._arith(node, in_aggregate)
        if isinstance(node, Compare):
            left, right = self._pair(node.left, node.right, in_aggregate)
            return self._combine(f"{left.text} {node.op} {right.text}", (left, right), "boolean", predicate=True)
        if isinstance(node, Like):
            return self._like(node, in_aggregate)
        if isinstance(node, InList):
            left = self._as_value(self._node(node.left, hint=None, in_aggregate=in_aggregate))
            items = [self._as_value(self._node(item, hint=left.kind, in_aggregate=in_aggregate))
                     for item in node.items]
            keyword = "NOT IN" if node.negated else "IN"
            return self._combine(f"{left.text} {keyword} ({', '.join(i.text for i in items)})", (left, *items),
                                 "boolean", predicate=True)
        if isinstance(node, IsNull):
            operand = self._as_value(self._node(node.operand, hint=None, in_aggregate=in_aggregate))
            keyword = "IS NOT NULL" if node.negated else "IS NULL"
            return self._combine(f"{operand.text} {keyword}", (operand,), "boolean", predicate=True)
        if isinstance(node, BoolOp):
            left = self._node(node.left, hint=None, in_aggregate=in_aggregate)
            right = self._node(node.right, hint=None, in_aggregate=in_aggregate)
            left = self._as_predicate(left, _column_of(node.left))
            right = self._as_predicate(right, _column_of(node.right))
            return self._combine(f"({left.text} {node.op} {right.text})", (left, right), "boolean", predicate=True)
        if isinstance(node, Not):
            operand = self._as_predicate(self._node(node.operand, hint=None, in_aggregate=in_aggregate),
                                         _column_of(node.operand))
            return self._combine(f"(NOT {operand.text})", (operand,), "boolean", predicate=True)
        raise ExpressionError(f"unsupported expression {node!r}")  # pragma: no cover - the grammar has no other

    @staticmethod
    def _combine(text: str, parts, campaign_type: str, *, predicate: bool = False) -> Sql:
        params = tuple(p for part in parts for p in part.params)
        return Sql(text, params, campaign_type, predicate, any(p.aggregate for p in parts), any(p.bare for p in parts))

    def _pair(self, left_node, right_node, in_aggregate: bool) -> tuple[Sql, Sql]:
        # A literal takes the type of what it is compared with (#2026-11-30# against a datetime,
        # '42' against a number), so both databases compare like with like.
        if isinstance(left_node, Literal) and not isinstance(right_node, Literal):
            right = self._as_value(self._node(right_node, hint=None, in_aggregate=in_aggregate))
            left = self._as_value(self._node(left_node, hint=right.kind, in_aggregate=in_aggregate))
        else:
            left = self._as_value(self._node(left_node, hint=None, in_aggregate=in_aggregate))
            right = self._as_value(self._node(right_node, hint=left.kind, in_aggregate=in_aggregate))
        return left, right

    @staticmethod
    def _require(sql: Sql, kind: str, column: int, what: str) -> None:
        if sql.kind not in (kind, "null"):
            raise ExpressionError(f"{what} needs a {kind}, not a {sql.type} value", column)

    def _arith(self, node: Arith, in_aggregate: bool) -> Sql:
        left, right = self._pair(node.left, node.right, in_aggregate)
        if node.op == "+" and "string" in (left.kind, right.kind):
            # Campaign's + joins strings.
            return self._combine(f"({self._text_of(left)} || {self._text_of(right)})", (left, right), "string")
        for side in (left, right):
            self._require(side, "number", node.column, f"'{node.op}'")
        if node.op == "/":
            # Integer division truncates differently per database; Campaign divides as decimals.
            return self._combine(f"(CAST({left.text} AS DOUBLE PRECISION) / {right.text})", (left, right), "double")
        integer = left.type in INTEGER_TYPES + ("int64",) and right.type in INTEGER_TYPES + ("int64",)
        return self._combine(f"({left.text} {node.op} {right.text})", (left, right), "int64" if integer else "double")

    def _text_of(self, sql: Sql) -> str:
        return sql.text if sql.kind == "string" else f"CAST({sql.text} AS VARCHAR)"

    def _like(self, node: Like, in_aggregate: bool) -> Sql:
        left = self._as_value(self._node(node.left, hint=None, in_aggregate=in_aggregate))
        pattern = self._as_value(self._node(node.pattern, hint="string", in_aggregate=in_aggregate))
        left_text = self._text_of(left)
        keyword = "NOT " if node.negated else ""
        if self.vendor == SQLITE and isinstance(node.pattern, Literal):
            glob = Sql("%s", (_like_to_glob(str(pattern.params[0])),), "string")
            return self._combine(f"{keyword}({left_text} GLOB {glob.text})", (left, glob), "boolean", predicate=True)
        return self._combine(f"{left_text} {keyword}LIKE {self._text_of(pattern)}", (left, pattern), "boolean",
                             predicate=True)

    def _args(self, node: Call, count: tuple[int, int], in_aggregate: bool, hint=None) -> list[Sql]:
        low, high = count
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(f"{node.name}() takes {wanted} argument(s), not {len(node.args)}", node.column)
        return [self._as_value(self._node(arg, hint=hint, in_aggregate=in_aggregate)) for arg in node.args]

    def _call(self, node: Call, *, in_aggregate: bool) -> Sql:
        name = node.name.lower()
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise ExpressionError(f"unknown function '{node.name}' at column {node.column}; known functions: "
                                  f"{', '.join(sorted(_FUNCTION_NAMES))}", node.column)
        if node.star and name != "count":
            raise ExpressionError(f"{node.name}(*) is not allowed; only Count(*)", node.column)
        if name in AGGREGATES:
            if in_aggregate:
                raise ExpressionError(f"{node.name}() cannot be nested in another aggregate", node.column)
            if self.context in ("where", "groupBy"):
                raise ExpressionError(f"{node.name}() is an aggregate: it belongs in <select>, <having> or "
                                      f"<orderBy>, not in <{self.context}>", node.column)
        return handler(self, node, in_aggregate)

    # --- functions (each: compiler, call node, in_aggregate → Sql)
    def f_simple(sql_name: str, kind: str, result_type: str | None = None):
        def compile_call(self, node, in_aggregate):
            (arg,) = self._args(node, (1, 1), in_aggregate, hint=kind)
            self._require(arg, kind, node.column, f"{node.name}()")
            return self._combine(f"{sql_name}({arg.text})", (arg,), result_type or arg.type)
        return compile_call

    def f_substring(self, node, in_aggregate):
        text, start, length = self._args(node, (3, 3), in_aggregate)
        self._require(text, "string", node.column, f"{node.name}()")
        for arg in (start, length):
            self._require(arg, "number", node.column, f"{node.name}() position and length")
        return self._combine(f"SUBSTR({text.text}, {start.text}, {length.text})", (text, start, length), "string")

    def f_length(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate, hint="string")
        return self._combine(f"LENGTH({self._text_of(arg)})", (arg,), "long")

    def f_coalesce(self, node, in_aggregate):
        args = self._args(node, (2, 32), in_aggregate)
        first = next((a for a in args if a.type != "null"), args[0])
        return self._combine(f"COALESCE({', '.join(a.text for a in args)})", args, first.type)

    def f_nonull(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate)
        if arg.kind == "string":
            return self._combine(f"COALESCE({arg.text}, '')", (arg,), arg.type)
        if arg.kind == "number":
            return self._combine(f"COALESCE({arg.text}, 0)", (arg,), arg.type)
        raise ExpressionError(f"{node.name}() applies to strings and numbers, not {arg.type}", node.column)

    def f_is_empty_string(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate, hint="string")
        return self._combine(f"(COALESCE({self._text_of(arg)}, '') = '')", (arg,), "boolean", predicate=True)

    def f_count(self, node, in_aggregate):
        if node.star:
            return Sql("COUNT(*)", (), "long", aggregate=True)
        (arg,) = self._args(node, (1, 1), True)
        return Sql(f"COUNT({arg.text})", arg.params, "long", aggregate=True)

    def f_count_distinct(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), True)
        return Sql(f"COUNT(DISTINCT {arg.text})", arg.params, "long", aggregate=True)

    def f_aggregate(sql_name: str, numeric: bool):
        def compile_call(self, node, in_aggregate):
            (arg,) = self._args(node, (1, 1), True)
            if numeric:
                self._require(arg, "number", node.column, f"{node.name}()")
            result = "double" if sql_name == "AVG" or (numeric and arg.type not in INTEGER_TYPES) else arg.type
            if sql_name == "SUM" and arg.type in INTEGER_TYPES:
                result = "int64"
            return Sql(f"{sql_name}({arg.text})", arg.params, result, aggregate=True)
        return compile_call

    def f_getdate(self, node, in_aggregate):
        self._args(node, (0, 0), in_aggregate)
        # The time of the call, bound once: every row and both databases see the same instant.
        return self._literal(Literal(self.now, "datetime", node.column), "datetime")

    def f_date_part(part: str, sqlite_format: str):
        def compile_call(self, node, in_aggregate):
            (arg,) = self._args(node, (1, 1), in_aggregate, hint="datetime")
            if arg.kind not in ("datetime", "date", "null"):
                raise ExpressionError(f"{node.name}() needs a date, not a {arg.type} value", node.column)
            if self.vendor == POSTGRESQL:
                return self._combine(f"CAST(EXTRACT({part} FROM {arg.text}) AS INTEGER)", (arg,), "long")
            fmt = Sql("%s", (sqlite_format,), "string")
            return self._combine(f"CAST(strftime({fmt.text}, {arg.text}) AS INTEGER)", (fmt, arg), "long")
        return compile_call

    def f_add_days(self, node, in_aggregate):
        when, days = self._args(node, (2, 2), in_aggregate, hint=None)
        if when.kind not in ("datetime", "date"):
            raise ExpressionError(f"{node.name}() needs a date first, not a {when.type} value", node.column)
        self._require(days, "number", node.column, f"{node.name}() day count")
        if self.vendor == POSTGRESQL:
            return self._combine(f"({when.text} + {days.text} * INTERVAL '1 day')", (when, days), "datetime")
        fmt = Sql("%s", ("%Y-%m-%d %H:%M:%f",), "string")
        return self._combine(f"strftime({fmt.text}, {when.text}, CAST({days.text} AS VARCHAR) || ' days')",
                             (fmt, when, days), "datetime")

    def f_date_only(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate, hint="datetime")
        if arg.kind not in ("datetime", "date"):
            raise ExpressionError(f"{node.name}() needs a date, not a {arg.type} value", node.column)
        if self.vendor == POSTGRESQL:
            return self._combine(f"date_trunc('day', {arg.text})", (arg,), "datetime")
        fmt = Sql("%s", ("%Y-%m-%d 00:00:00.000000",), "string")
        return self._combine(f"strftime({fmt.text}, {arg.text})", (fmt, arg), "datetime")

    def f_to_string(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate)
        return self._combine(self._text_of(arg), (arg,), "string")

    def f_to_integer(self, node, in_aggregate):
        (arg,) = self._args(node, (1, 1), in_aggregate)
        if arg.kind == "string" and self.vendor == POSTGRESQL:
            # PostgreSQL will not cast '2.5' to an integer directly; through NUMERIC it truncates like SQLite.
            return self._combine(f"CAST(TRUNC(CAST({arg.text} AS NUMERIC)) AS BIGINT)", (arg,), "int64")
        return self._combine(f"CAST({arg.text} AS BIGINT)", (arg,), "int64")

    def f_iif(self, node, in_aggregate):
        if len(node.args) != 3:
            raise ExpressionError(f"{node.name}() takes 3 argument(s), not {len(node.args)}", node.column)
        condition = self._as_predicate(self._node(node.args[0], hint=None, in_aggregate=in_aggregate),
                                       _column_of(node.args[0]))
        then = self._as_value(self._node(node.args[1], hint=None, in_aggregate=in_aggregate))
        other = self._as_value(self._node(node.args[2], hint=then.kind, in_aggregate=in_aggregate))
        return self._combine(f"CASE WHEN {condition.text} THEN {then.text} ELSE {other.text} END",
                             (condition, then, other), then.type)

    _FUNCTION_TABLE = {
        "lower": f_simple("LOWER", "string"),
        "upper": f_simple("UPPER", "string"),
        "trim": f_simple("TRIM", "string"),
        "abs": f_simple("ABS", "number"),
        "substring": f_substring,
        "length": f_length,
        "coalesce": f_coalesce,
        "nonull": f_nonull,
        "isemptystring": f_is_empty_string,
        "count": f_count,
        "countdistinct": f_count_distinct,
        "sum": f_aggregate("SUM", True),
        "avg": f_aggregate("AVG", True),
        "min": f_aggregate("MIN", False),
        "max": f_aggregate("MAX", False),
        "getdate": f_getdate,
        "year": f_date_part("YEAR", "%Y"),
        "month": f_date_part("MONTH", "%m"),
        "day": f_date_part("DAY", "%d"),
        "adddays": f_add_days,
        "dateonly": f_date_only,
        "tostring": f_to_string,
        "tointeger": f_to_integer,
        "iif": f_iif,
    }


_FUNCTIONS = _Compiler._FUNCTION_TABLE
_FUNCTION_NAMES = ("Abs", "AddDays", "Avg", "Coalesce", "Count", "CountDistinct", "DateOnly", "Day", "GetDate",
                   "Iif", "IsEmptyString", "Length", "Lower", "Max", "Min", "Month", "NoNull", "Substring", "Sum",
                   "ToInteger", "ToString", "Trim", "Upper", "Year")


def _column_of(node) -> int:
    while isinstance(node, (BoolOp, Not)):
        node = node.left if isinstance(node, BoolOp) else node.operand
    return getattr(node, "column", 1)


# --- The statement -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    """Where a selected value goes in each answered record: child elements, then the attribute."""

    elements: tuple[str, ...]
    attribute: str
    type: str


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: tuple
    operation: str
    element: str  # the records' element name
    outputs: tuple[Output, ...]  # one per selected column, in order (none for count)
    limit: int  # rows fetched at most


_OUTPUT_NAME_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_-]*/)*@?[A-Za-z_][A-Za-z0-9_-]*$")


def _output_of(node: SelectNode, index: int, sql: Sql) -> Output:
    if node.alias:
        alias = node.alias.strip("[]")
        if not _OUTPUT_NAME_RE.match(alias):
            where = f"select/node[{index + 1}]/@alias"
            raise _problem(f"{where} must be an attribute name such as @total (or a path such as location/@city)",
                           where, node.alias)
        steps = alias.split("/")
        return Output(tuple(steps[:-1]), steps[-1].lstrip("@"), sql.type)
    tree = node.expr.tree
    if isinstance(tree, Path):
        steps = tree.path.split("/")
        return Output(tuple(steps[:-1]), steps[-1].lstrip("@"), sql.type)
    # Campaign needs an alias for a computed value; without one the value is named after its position.
    return Output((), f"expr{index}", sql.type)


def _joined(conditions: tuple[Condition, ...], compiler: _Compiler, context: str) -> Sql | None:
    """Conditions joined by their boolOperator (each joins the next), AND binding tighter than OR as in SQL."""
    if not conditions:
        return None
    parts: list[Sql] = []
    for condition in conditions:
        sqls = []
        if condition.expr is not None:
            sqls.append(compiler.condition(condition.expr, context=context))
        nested = _joined(condition.children, compiler, context)
        if nested is not None:
            sqls.append(nested)
        parts.append(sqls[0] if len(sqls) == 1 else compiler._combine(
            f"({sqls[0].text} AND {sqls[1].text})", sqls, "boolean", predicate=True))
    text, params = parts[0].text, list(parts[0].params)
    for previous, part in zip(conditions, parts[1:]):
        text += f" {previous.bool_operator} {part.text}"
        params.extend(part.params)
    return Sql(f"({text})", tuple(params), "boolean", True, any(p.aggregate for p in parts), any(p.bare for p in parts))


def compile_query(query: QueryDef, target: Target, *, default_line_count: int, max_line_count: int,
                  now: datetime) -> CompiledQuery:
    """One parameterised statement for `query` on `target`; InvalidInput naming the faulty part."""
    qualifier = "t0" if _uses_links(query, target) else None
    compiler = _Compiler(target, now=now, qualifier=qualifier)
    table = quote(target.table, target.vendor)
    params: list = []

    select_sql = [compiler.value(node.expr, context="select") for node in query.select]
    outputs = tuple(_output_of(node, i, sql) for i, (node, sql) in enumerate(zip(query.select, select_sql)))
    seen: dict[tuple, str] = {}
    for node, output in zip(query.select, outputs):
        key = (*output.elements, output.attribute)
        if key in seen:
            raise _problem(f"two select nodes answer as '{'/'.join(output.elements + ('@' + output.attribute,))}' "
                           f"({seen[key]} and {node.expr.text}); give one an alias=\"@otherName\"", "select",
                           node.expr.text)
        seen[key] = node.expr.text
    elements = {output.elements[:i + 1] for output in outputs for i in range(len(output.elements))}
    for node, output in zip(query.select, outputs):
        if (*output.elements, output.attribute) in elements:
            raise _problem(f"'{node.expr.text}' answers as @{output.attribute}, which is also an element of the "
                           "answer; give it an alias=\"@otherName\"", "select", node.expr.text)
    where = _joined(query.where, compiler, "where")
    group_by = [compiler.value(expr, context="groupBy") for expr in query.group_by]
    having = _joined(query.having, compiler, "having")
    order_by = [(compiler.value(node.expr, context="orderBy"), node.descending) for node in query.order_by]

    aggregating = bool(group_by) or any(s.aggregate for s in select_sql) or having is not None
    if aggregating and query.operation != "count":
        grouped = {(g.text, g.params) for g in group_by}
        for node, sql in zip(query.select, select_sql):
            if sql.bare and (sql.text, sql.params) not in grouped:
                where_ = f"select/node[{query.select.index(node) + 1}]/@expr"
                raise _problem(f"'{node.expr.text}' is neither an aggregate (Count, Sum, ...) nor a <groupBy> "
                               f"expression ({where_})", where_, node.expr.text)

    if query.line_count is not None and query.line_count > max_line_count:
        raise _problem(f"lineCount is at most {max_line_count} (QUERY_MAX_LINE_COUNT); page with startLine",
                       "lineCount", query.line_count)

    def from_where() -> str:
        text = f" FROM {compiler.from_clause(table)}"
        if where is not None:
            text += f" WHERE {where.text}"
            params.extend(where.params)
        if group_by:
            text += " GROUP BY " + ", ".join(g.text for g in group_by)
            params.extend(p for g in group_by for p in g.params)
        if having is not None:
            text += f" HAVING {having.text}"
            params.extend(having.params)
        return text

    if query.operation == "count":
        if group_by or query.distinct:
            inner_columns = ", ".join(s.text for s in select_sql) or "1"
            inner_params = [p for s in select_sql for p in s.params]
            params.extend(inner_params)
            distinct = "DISTINCT " if query.distinct else ""
            sql = f"SELECT COUNT(*) FROM (SELECT {distinct}{inner_columns}{from_where()}) counted"
        else:
            sql = f"SELECT COUNT(*){from_where()}"
        return CompiledQuery(sql, tuple(params), "count", target.element, (), 1)

    columns = ", ".join(s.text for s in select_sql)
    params.extend(p for s in select_sql for p in s.params)
    sql = f"SELECT {'DISTINCT ' if query.distinct else ''}{columns}{from_where()}"
    order_terms = [(o.text, o.params, desc) for o, desc in order_by]
    if not aggregating and not query.distinct:
        # A stable order (the key last) makes startLine pages the same on every database.
        prefix = f"{qualifier}." if qualifier else ""
        order_terms += [(prefix + quote(c, target.vendor), (), False) for c in target.order_columns]
    if order_terms:
        # PostgreSQL's NULL placement, spelled out so SQLite sorts the same way.
        sql += " ORDER BY " + ", ".join(f"{text} {'DESC NULLS FIRST' if desc else 'ASC NULLS LAST'}"
                                        for text, _, desc in order_terms)
        params.extend(p for _, term_params, _ in order_terms for p in term_params)
    if query.operation == "select":
        limit = query.line_count or default_line_count
        limit = min(limit, max_line_count)
    else:
        limit = 1  # get / getIfExists: the first record in the requested order
    sql += " LIMIT %s OFFSET %s"
    params.extend([limit, query.start_line])
    return CompiledQuery(sql, tuple(params), query.operation, target.element, outputs, limit)


# --- Answers -------------------------------------------------------------------------------------

def _as_datetime(value):
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # the tables store UTC
    return value


def _as_date(value):
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.date()
    return value


def typed_value(value, campaign_type: str):
    """A fetched value as a Python value of its Campaign type (None stays None)."""
    if value is None:
        return None
    kind = _kind(campaign_type)
    if campaign_type == "boolean":
        return bool(int(value)) if not isinstance(value, str) else value.strip().lower() in ("1", "true")
    if kind == "number":
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return value
        if campaign_type in INTEGER_TYPES + ("int64",) and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind == "datetime":
        return _as_datetime(value)
    if kind == "date":
        return _as_date(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def campaign_text(value, campaign_type: str) -> str:
    """A value as Campaign writes it in an XML answer: `2026-11-30 10:00:00.000Z`, `true`, `12`, ``."""
    value = typed_value(value, campaign_type)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        suffix = "" if campaign_type == "datetimenotz" else "Z"
        if suffix:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}{suffix}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def json_value(value, campaign_type: str):
    """A value for a JSON answer: numbers and booleans typed, times in ISO 8601 UTC."""
    value = typed_value(value, campaign_type)
    if isinstance(value, datetime):
        if campaign_type != "datetimenotz":
            value = value.astimezone(timezone.utc)
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat()
    return value


def shape_rows(compiled: CompiledQuery, rows, *, formatter) -> list[dict]:
    """Fetched rows as records: {attribute: formatted value, child element: {...}}."""
    records = []
    for row in rows:
        record: dict = {}
        for output, value in zip(compiled.outputs, row):
            node = record
            for step in output.elements:
                node = node.setdefault(step, {})
            node[output.attribute] = formatter(value, output.type)
        records.append(record)
    return records
