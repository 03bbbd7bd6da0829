"""The queryDef expression grammar and SQL builder, without a database: trees, precedence, escaping,
error positions, and what reaches the SQL text (identifiers of the schema only) versus the parameters."""

from datetime import date, datetime, timezone

import pytest
from lxml import etree

from campaignsite.errors import InvalidInput
from staging import query as q
from staging.srcschema import Attribute, parse_srcschema

SOURCE = """<srcSchema name="person" namespace="qry">
  <element name="person" autopk="true" autouuid="true">
    <attribute name="email" type="string"/>
    <attribute name="age" type="long"/>
    <attribute name="seen" type="datetime"/>
  </element>
</srcSchema>"""
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def target(vendor="sqlite", description=None):
    description = description or parse_srcschema(SOURCE)
    return q.Target(description, "person", description.sql_table, vendor, {}, ("uPersonId",))


def compile_json(vendor="sqlite", **query_def):
    query_def.setdefault("schema", "qry:person")
    query_def.setdefault("select", {"node": [{"expr": "@email"}]})
    return q.compile_query(q.query_def_from_json(query_def), target(vendor), default_line_count=100,
                           max_line_count=1000, now=NOW)


def where_sql(expr, vendor="sqlite"):
    compiled = compile_json(vendor, where={"condition": [{"expr": expr}]})
    text = compiled.sql.partition(" WHERE ")[2].partition(" ORDER BY ")[0]
    return text, compiled.params[:-2]  # without LIMIT / OFFSET


# --- Parsing ---------------------------------------------------------------------------------------

def test_precedence_or_and_not_comparison_sum_product():
    tree = q.parse_expression("NOT @a = 1 OR @b + 2 * 3 > 4 AND @c IS NULL")
    assert isinstance(tree, q.BoolOp) and tree.op == "OR"
    assert isinstance(tree.left, q.Not) and isinstance(tree.left.operand, q.Compare)
    right = tree.right
    assert right.op == "AND" and isinstance(right.right, q.IsNull)
    total = right.left.left
    assert total.op == "+" and total.right.op == "*"


def test_keywords_and_function_names_are_case_insensitive_but_need_a_word_boundary():
    tree = q.parse_expression("lower(@x) not like 'a%' and @y iS nOt NuLl")
    assert tree.op == "AND" and tree.left.negated and tree.right.negated
    assert q.parse_expression("ordinal(@a)").name == "ordinal"  # 'or' inside a name is not OR


@pytest.mark.parametrize("text, value, kind", [
    ("'it''s'", "it's", "string"),
    ('"say ""hi"""', 'say "hi"', "string"),
    ("''", "", "string"),
    ("42", 42, "number"),
    ("4.5", 4.5, "number"),
    (".5e1", 5.0, "number"),
    ("#2026-11-30#", date(2026, 11, 30), "date"),
    ("#2026-11-30 10:00:00Z#", datetime(2026, 11, 30, 10, tzinfo=timezone.utc), "datetime"),
    ("#2026-11-30T10:00:00.250+02:00#", datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=timezone.utc), "datetime"),
])
def test_literals(text, value, kind):
    literal = q.parse_expression(text)
    assert (literal.value, literal.kind) == (value, kind)


@pytest.mark.parametrize("text, path", [
    ("@email", "@email"), ("[@email]", "@email"), ("location/@city", "location/@city"),
    ("[company/@name]", "company/@name"), ("@folder-id", "@folder-id"),
])
def test_paths(text, path):
    assert q.parse_expression(text).path == path


def test_in_lists_and_count_star():
    tree = q.parse_expression("@x NOT IN (1, 'b', #2026-01-01#)")
    assert tree.negated and [i.value for i in tree.items] == [1, "b", date(2026, 1, 1)]
    assert q.parse_expression("Count(*)").star


@pytest.mark.parametrize("text, message, column", [
    ("@a =", "ends too early", 5),
    ("@a = = 1", "unexpected '=' at column 6", 6),
    ("@a $ 1", "unexpected character '$' at column 4", 4),
    ("@a = 'open", "unexpected character ''' at column 6", 6),
    ("#2026-13-01# = @a", "'#2026-13-01#' is not a date", 1),
    ("Lower(@a", "ends too early", 9),
    ("Sum(*)", None, None),  # parses; refused when compiled
    ("(@a = 1", "ends too early", 8),
    ("@a = 1)", "unexpected ')' at column 7", 7),
    ("", "the expression is empty", 1),
])
def test_syntax_errors_name_what_and_where(text, message, column):
    if message is None:
        q.parse_expression(text)
        return
    with pytest.raises(q.ExpressionError) as error:
        q.parse_expression(text)
    assert message in error.value.message and error.value.column == column


# --- The queryDef shapes --------------------------------------------------------------------------

def test_the_xml_and_the_json_shapes_give_the_same_query_def():
    xml = etree.fromstring(
        '<queryDef schema="qry:person" operation="select" lineCount="5" startLine="2" xtkschema="xtk:queryDef">'
        '<select><node expr="@email" alias="@mail"/><node expr="@age"/></select>'
        '<where><condition expr="@age &gt; 1" boolOperator="OR"/>'
        '<condition><condition expr="@age = 0" bool-operator="AND"/><condition expr="@email IS NULL"/></condition>'
        "</where><orderBy><node expr=\"@age\" sortDesc=\"true\"/></orderBy></queryDef>")
    from_json = {
        "schema": "qry:person", "operation": "select", "lineCount": 5, "startLine": "2",
        "select": {"node": [{"expr": "@email", "alias": "@mail"}, {"expr": "@age"}]},
        "where": {"condition": [{"expr": "@age > 1", "boolOperator": "OR"},
                                {"condition": [{"expr": "@age = 0", "bool-operator": "AND"},
                                               {"expr": "@email IS NULL"}]}]},
        "orderBy": {"node": {"expr": "@age", "sortDesc": True}},
    }
    assert q.query_def_from_xml(xml) == q.query_def_from_json(from_json)


@pytest.mark.parametrize("query_def, where, message", [
    ({"operation": "select"}, "schema", "needs schema="),
    ({"schema": "qry:person", "operation": "delete"}, "operation", "must be one of"),
    ({"schema": "qry:person", "operation": "select"}, "select", "at least one"),
    ({"schema": "qry:person", "lineCount": "0", "select": {"node": {"expr": "@email"}}}, "lineCount", "at least 1"),
    ({"schema": "qry:person", "startLine": "-1", "select": {"node": {"expr": "@email"}}}, "startLine", "whole"),
    ({"schema": "qry:person", "select": {"node": {"expr": "@email"}}, "update": {}}, "update", "not part"),
    ({"schema": "qry:person", "select": {"field": {"expr": "@email"}}}, "select/field", "use <node"),
    ({"schema": "qry:person", "select": {"node": {"alias": "@x"}}}, "select/node[1]/@expr", "missing"),
    ({"schema": "qry:person", "select": {"node": {"expr": "@email"}},
      "where": {"condition": {"expr": "@age = 1", "boolOperator": "XOR"}}}, "where/condition[1]/@boolOperator",
     "AND or OR"),
    ({"schema": "qry:person", "select": {"node": {"expr": "@email", "sortDesc": 1}},
      "orderBy": {"node": {"expr": "@age", "sortDesc": "maybe"}}}, "orderBy/node[1]/@sortDesc", "true or false"),
])
def test_query_def_errors_name_the_node(query_def, where, message):
    with pytest.raises(InvalidInput) as error:
        q.query_def_from_json(query_def)
    problem = error.value.problems[0]
    assert problem.attribute == where and message in problem.message


# --- Compiling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, sql, params", [
    ("@age = 1", '"iAge" = %s', (1,)),
    ("@age != 1", '"iAge" <> %s', (1,)),
    ("@age >= '2'", '"iAge" >= %s', (2,)),  # a literal takes the type of what it is compared with
    ("@email = 42", '"sEmail" = %s', ("42",)),
    ("1 < @age", '%s < "iAge"', (1,)),
    ("@email IN ('a', 'b')", '"sEmail" IN (%s, %s)', ("a", "b")),
    ("@email NOT IN ('a')", '"sEmail" NOT IN (%s)', ("a",)),
    ("@email IS NULL", '"sEmail" IS NULL', ()),
    ("@email IS NOT NULL", '"sEmail" IS NOT NULL', ()),
    ("@age = 1 AND @age = 2 OR @age = 3", '((("iAge" = %s AND "iAge" = %s) OR "iAge" = %s))', (1, 2, 3)),
    ("NOT @age = 1", '(NOT "iAge" = %s)', (1,)),
    ("@age * 2 + 1 = 3", '(("iAge" * %s) + %s) = %s', (2, 1, 3)),
    ("@age / 2 = 1", '(CAST("iAge" AS DOUBLE PRECISION) / %s) = %s', (2, 1)),
    ("-@age = 1", '(-"iAge") = %s', (1,)),
    ("@email + 'x' = 'ax'", '("sEmail" || %s) = %s', ("x", "ax")),
    ("@seen > #2026-11-30#", '"tsSeen" > %s', ("2026-11-30 00:00:00.000000",)),
    ("@seen < GetDate()", '"tsSeen" < %s', ("2026-11-30 12:00:00.000000",)),
    ("@age", '("iAge") <> 0', ()),
])
def test_sqlite_sql_and_parameters(expr, sql, params):
    text, bound = where_sql(expr)
    assert text == f"({sql})" or text == sql, text
    assert bound == params


@pytest.mark.parametrize("expr, sqlite, postgresql", [
    ("@email LIKE 'a%_*'", '("sEmail" GLOB %s)', '"semail" LIKE %s'),
    ("@email NOT LIKE 'a%'", 'NOT ("sEmail" GLOB %s)', '"semail" NOT LIKE %s'),
    ("Year(@seen) = 2026", 'CAST(strftime(%s, "tsSeen") AS INTEGER) = %s',
     'CAST(EXTRACT(YEAR FROM "tsseen") AS INTEGER) = %s'),
    ("AddDays(@seen, 2) > GetDate()",
     "strftime(%s, \"tsSeen\", CAST(%s AS VARCHAR) || ' days') > %s",
     "(\"tsseen\" + %s * INTERVAL '1 day') > %s"),
    ("DateOnly(@seen) = #2026-11-30#", 'strftime(%s, "tsSeen") = %s', "date_trunc('day', \"tsseen\") = %s"),
])
def test_vendor_specific_sql(expr, sqlite, postgresql):
    assert where_sql(expr, "sqlite")[0] == f"({sqlite})"
    assert where_sql(expr, "postgresql")[0] == f"({postgresql})"


def test_a_like_pattern_becomes_a_case_sensitive_glob_on_sqlite():
    assert where_sql("@email LIKE 'a%_*?[x'")[1] == ("a*?[*][?][[]x",)
    assert where_sql("@email LIKE 'a%'", "postgresql")[1] == ("a%",)


@pytest.mark.parametrize("expr", [
    "Lower(@email)", "Upper(@email)", "Trim(@email)", "Substring(@email, 1, 2)", "Length(@email)",
    "Coalesce(@email, 'x')", "NoNull(@age)", "IsEmptyString(@email)", "GetDate()", "Year(@seen)",
    "Month(@seen)", "Day(@seen)", "AddDays(@seen, 1)", "DateOnly(@seen)", "ToString(@age)", "ToInteger(@email)",
    "Iif(@age > 1, 'a', 'b')", "Abs(@age)",
])
@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
def test_every_scalar_function_compiles_on_both_databases(expr, vendor):
    compiled = compile_json(vendor, select={"node": [{"expr": expr, "alias": "@v"}]})
    assert compiled.sql.startswith("SELECT ") and compiled.outputs[0].attribute == "v"
    assert "@" not in compiled.sql and "'x'" not in compiled.sql


@pytest.mark.parametrize("expr", ["Count(@id)", "Count(*)", "CountDistinct(@email)", "Sum(@age)", "Min(@email)",
                                  "Max(@seen)", "Avg(@age)"])
def test_aggregates(expr):
    compiled = compile_json(select={"node": [{"expr": expr, "alias": "@v"}]})
    assert " ORDER BY " not in compiled.sql  # no key order on an aggregate query


@pytest.mark.parametrize("expr, message", [
    ("@nosuch = 1", "'@nosuch' is not an attribute of qry:person (attributes: @id, @email, @age, @seen) at column 1"),
    ("@age = 1 AND Frob(@age)", "unknown function 'Frob' at column 14"),
    ("Lower(@age) = 'x'", "Lower() needs a string, not a long value"),
    ("Substring(@email, 1) = 'x'", "Substring() takes 3 argument(s), not 2"),
    ("@age = 'abc'", "'abc' is not a number"),
    ("@seen = 'soon'", "'soon' is not a date"),
    ("@email", "a string value is not a condition"),
    ("Sum(*) > 1", "Sum(*) is not allowed"),
    ("Count(@age) > 1", "aggregate"),
    ("@email - 1 = 0", "'-' needs a number"),
    ("company/@name = 'x'", "'company/@name' is not an attribute"),
])
def test_compile_errors_name_the_expression_and_column(expr, message):
    with pytest.raises(InvalidInput) as error:
        compile_json(where={"condition": [{"expr": expr}]})
    problem = error.value.problems[0]
    assert message in problem.message, problem.message
    assert problem.attribute == "where/condition[1]/@expr" and problem.value == expr


def test_nested_aggregates_and_duplicate_outputs_are_refused():
    with pytest.raises(InvalidInput, match="cannot be nested"):
        compile_json(select={"node": [{"expr": "Sum(Count(@id))", "alias": "@v"}]})
    with pytest.raises(InvalidInput, match="give one an alias"):
        compile_json(select={"node": [{"expr": "@email"}, {"expr": "Lower(@email)", "alias": "@email"}]})
    with pytest.raises(InvalidInput, match="alias"):
        compile_json(select={"node": [{"expr": "@email", "alias": "@x y"}]})


def test_paths_of_sub_elements_map_to_their_attribute_and_answer_nested():
    base = parse_srcschema(SOURCE)
    city = Attribute(name="location/city", type="string", sql_name="sCity")
    description = type(base)(**{**{f: getattr(base, f) for f in ("namespace", "name", "label", "sql_table",
                                                                    "autopk", "autouuid", "auto_stg", "data_source",
                                                                    "primary_key")},
                                "attributes": base.attributes + (city,)})
    assert q.resolve_path(target(description=description), "location/@city") == q.Column('"sCity"', "string")
    compiled = q.compile_query(
        q.query_def_from_json({"schema": "qry:person", "select": {"node": [{"expr": "[location/@city]"}]}}),
        target(description=description), default_line_count=10, max_line_count=10, now=NOW)
    assert q.shape_rows(compiled, [("Paris",)], formatter=q.json_value) == [{"location": {"city": "Paris"}}]


def test_limits_offsets_and_key_order():
    compiled = compile_json(lineCount=5, startLine=10, orderBy={"node": {"expr": "@age", "sortDesc": True}})
    assert compiled.sql.endswith('ORDER BY "iAge" DESC NULLS FIRST, "uPersonId" ASC NULLS LAST LIMIT %s OFFSET %s')
    assert compiled.params[-2:] == (5, 10)
    assert compile_json().params[-2:] == (100, 0)
    assert compile_json(operation="getIfExists").params[-2:] == (1, 0)
    with pytest.raises(InvalidInput, match="lineCount is at most 1000"):
        compile_json(lineCount=1001)


def test_caller_text_never_reaches_the_sql_text():
    payload = "x'); DROP TABLE \"QryPerson\"; --"
    quoted = "'" + payload.replace("'", "''") + "'"
    compiled = compile_json(
        select={"node": [{"expr": f"Lower({quoted})", "alias": "@v"}]},
        where={"condition": [{"expr": f"@email = {quoted} OR @email LIKE {quoted} OR @email IN ({quoted})"}]},
        having={"condition": [{"expr": f"Max(@email) <> {quoted}"}]}, groupBy={"node": {"expr": "@email"}},
        orderBy={"node": {"expr": f"Coalesce(@email, {quoted})"}},
    )
    assert "DROP" not in compiled.sql and "--" not in compiled.sql
    assert sum(1 for p in compiled.params if isinstance(p, str) and "DROP" in p) == 6


@pytest.mark.parametrize("value, campaign_type, text, json", [
    (None, "string", "", None),
    (1, "boolean", "true", True),
    (0, "boolean", "false", False),
    (12, "long", "12", 12),
    (2.0, "double", "2", 2.0),
    (2.5, "double", "2.5", 2.5),
    ("2026-11-30 10:00:00.250000", "datetime", "2026-11-30 10:00:00.250Z", "2026-11-30T10:00:00.250Z"),
    (datetime(2026, 11, 30, 11, tzinfo=timezone.utc), "datetime", "2026-11-30 11:00:00.000Z",
     "2026-11-30T11:00:00.000Z"),
    (date(2026, 1, 2), "date", "2026-01-02", "2026-01-02"),
])
def test_values_as_campaign_writes_them_and_as_json(value, campaign_type, text, json):
    assert q.campaign_text(value, campaign_type) == text
    assert q.json_value(value, campaign_type) == json


COMPANY_SOURCE = """<srcSchema name="company" namespace="cus"><element name="company">
  <key name="name" internal="true"><keyfield xpath="@name"/></key>
  <attribute name="name" type="string"/><attribute name="email" type="string"/>
  <element name="location"><attribute name="city" type="string"/></element>
</element></srcSchema>"""
CONTACT_SOURCE = """<srcSchema name="contact" namespace="cus"><element name="contact" autopk="true">
  <attribute name="email" type="string"/>
  <element name="company" type="link" target="cus:company"/>
  <element name="offices" type="link" target="cus:company" unbound="true"/>
</element></srcSchema>"""


def _linked(vendor="sqlite", resolver=True):
    company = parse_srcschema(COMPANY_SOURCE)
    contact = parse_srcschema(CONTACT_SOURCE, resolve=lambda schema_id: company if schema_id == "cus:company" else None)
    company_target = q.Target(company, "company", company.sql_table, vendor, {}, ("sName",))
    return q.Target(contact, "contact", contact.sql_table, vendor, {}, ("iId",),
                    (lambda link: company_target) if resolver else None)


def test_a_link_path_is_one_aliased_left_join_on_the_link_columns():
    compiled = q.compile_query(q.query_def_from_json({
        "schema": "cus:contact", "select": {"node": [{"expr": "@email"}, {"expr": "[company/@email]"}]},
        "where": {"condition": [{"expr": "company/@name = 'Acme'"}]},
        "orderBy": {"node": {"expr": "[company/@name]"}},
    }), _linked(), default_line_count=10, max_line_count=10, now=NOW)
    assert compiled.sql == (
        'SELECT t0."sEmail", t1."sEmail" FROM "CusContact" AS t0 LEFT JOIN "CusCompany" AS t1 '
        'ON t1."sName" = t0."sCompanyName" WHERE (t1."sName" = %s) '
        'ORDER BY t1."sName" ASC NULLS LAST, t0."iId" ASC NULLS LAST LIMIT %s OFFSET %s')
    assert compiled.params == ("Acme", 10, 0)
    assert q.shape_rows(compiled, [("a@x", "info@acme")], formatter=q.json_value) == \
        [{"email": "a@x", "company": {"email": "info@acme"}}]
    postgresql = q.compile_query(q.query_def_from_json({
        "schema": "cus:contact", "operation": "count", "where": {"condition": [{"expr": "[company/@name] = 'A'"}]},
    }), _linked("postgresql"), default_line_count=10, max_line_count=10, now=NOW)
    nested = q.compile_query(q.query_def_from_json({
        "schema": "cus:contact", "select": {"node": {"expr": "[company/location/@city]"}},
    }), _linked(), default_line_count=10, max_line_count=10, now=NOW)
    assert nested.sql.startswith('SELECT t1."sCity" FROM "CusContact" AS t0 LEFT JOIN "CusCompany" AS t1 ')
    assert q.shape_rows(nested, [("Paris",)], formatter=q.json_value) == [{"company": {"location": {"city": "Paris"}}}]
    assert postgresql.sql == ('SELECT COUNT(*) FROM "cuscontact" AS t0 LEFT JOIN "cuscompany" AS t1 '
                              'ON t1."sname" = t0."scompanyname" WHERE (t1."sname" = %s)')


def test_without_links_the_sql_is_unqualified_and_refusals_name_the_construct():
    plain = q.compile_query(q.query_def_from_json({"schema": "cus:contact", "select": {"node": {"expr": "@email"}}}),
                            _linked(), default_line_count=10, max_line_count=10, now=NOW)
    assert plain.sql.startswith('SELECT "sEmail" FROM "CusContact" ORDER BY')
    for target, expr, message in [
        (_linked(), "[offices/@name]", r"a collection link \(unbound\)"),
        (_linked(resolver=False), "[company/@name]", "cannot be followed here"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            q.compile_query(q.query_def_from_json({"schema": "cus:contact", "select": {"node": {"expr": expr}}}),
                            target, default_line_count=10, max_line_count=10, now=NOW)
