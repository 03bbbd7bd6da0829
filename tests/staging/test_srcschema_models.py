"""The srcSchema constructs of real data models: sub-elements, links, XML fields, key-less tables, views,
templates, qualified enumerations, leniency, and extension schemas. Pure: no database.

The schemas are written for these tests, modelled on the constructs of Adobe's public Campaign pages:
- https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/schema-reference/database-mapping.html
  (sub-element columns, XML fields in mData, keys and indexes on location/@city, links, xlink keys)
- https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/editing-schemas/extending-a-schema.html
  (extendedSchema, belongsTo)
"""

from pathlib import Path

import pytest

from campaignsite.errors import SchemaInvalid
from staging.srcschema import XML_DATA_ATTR, parse_srcschema

RECIPIENT = (Path(__file__).resolve().parents[2] / "staging" / "builtin_schemas" / "nms_recipient.xml").read_text()

SHOP = """<srcSchema namespace="cus" name="shop">
  <element name="shop" autopk="true" autouuid="true"><attribute name="title" length="60"/></element>
</srcSchema>"""
LEGACY = """<srcSchema namespace="cus" name="legacy">
  <enumeration name="grade" basetype="byte"><value name="low" value="0"/><value name="high" value="1"/></enumeration>
  <element name="legacy"><key name="code" internal="true"><keyfield xpath="@code"/></key>
    <attribute name="code" type="long"/><attribute name="grade" type="byte" enum="grade"/></element>
</srcSchema>"""


def registry(*sources, builtin=False):
    """A resolver over already parsed schemas, as the schema registry passes one."""
    described = {}
    for source in sources:
        description = parse_srcschema(source, builtin=builtin, resolve=described.get)
        described[description.id] = description
    return described.get


def refusal(source, **kwargs) -> str:
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(source, **kwargs)
    return excinfo.value.detail


def test_sub_element_attributes_are_columns_of_the_same_table_named_by_their_leaf():
    description = parse_srcschema("""<srcSchema namespace="cus" name="person">
      <element name="person" autopk="true" autouuid="true">
        <dbindex name="byPlace"><keyfield xpath="@mail"/><keyfield xpath="[location/@town]"/></dbindex>
        <key name="mailTown"><keyfield xpath="@mail"/><keyfield xpath="location/@town"/></key>
        <attribute name="mail" length="90"/>
        <element name="location" label="Where">
          <attribute name="town" length="40"/>
          <element name="geo"><attribute name="lat" type="double"/></element>
        </element>
      </element></srcSchema>""")

    town = description.attribute("location/town")
    assert (town.xpath, town.sql_name, town.length) == ("location/@town", "sTown", 40)
    assert description.attribute("location/geo/lat").sql_name == "dLat"
    assert description.attribute("mail").xpath == "@mail"  # top-level names are unchanged
    assert description.keys[0].fields == ("mail", "location/town")
    assert description.indexes[0].fields == ("mail", "location/town")


def test_a_sub_element_column_that_clashes_asks_for_sqlname():
    detail = refusal("""<srcSchema namespace="cus" name="person"><element name="person" autopk="true">
        <attribute name="town"/><element name="location"><attribute name="town"/></element></element></srcSchema>""")

    assert "column 'sTown' of 'location/town' clashes with 'town'; set a different sqlname" in detail


def test_a_link_creates_a_foreign_key_mirroring_the_target_key_and_an_index():
    resolve = registry(SHOP, LEGACY)
    description = parse_srcschema("""<srcSchema namespace="cus" name="visit">
      <element name="visit" autopk="true" autouuid="true">
        <key name="shopDay"><keyfield xlink="shop"/><keyfield xpath="@day"/></key>
        <attribute name="day" type="date"/>
        <element name="shop" type="link" target="cus:shop" label="Shop" integrity="own" revLink="visits"
                 revIntegrity="normal" externalJoin="true"/>
        <element name="legacy" type="link" target="cus:legacy"/>
        <element name="visits" type="link" target="cus:shop" unbound="true"/>
      </element></srcSchema>""", resolve=resolve)

    fk = description.attribute("shop-id")
    assert (fk.type, fk.length, fk.sql_name, fk.link) == ("uuid", 255, "uShopId", "shop")
    assert description.attribute("legacy-code").sql_name == "iLegacyCode"  # an integer key gives an integer FK
    shop = description.link("shop")
    assert shop.joins == (("shop-id", "id"),)
    assert (shop.integrity, shop.rev_link, shop.rev_integrity, shop.external_join) == ("own", "visits", "normal", True)
    assert description.link("visits").unbound and description.attribute("visits-id") is None
    assert [(i.name, i.fields) for i in description.indexes] == [("shopId", ("shop-id",)), ("legacyCode", ("legacy-code",))]
    assert description.keys[0].fields == ("shop-id", "day")


def test_a_join_names_the_columns_of_the_link():
    resolve = registry(SHOP)
    description = parse_srcschema("""<srcSchema namespace="cus" name="visit">
      <element name="visit" autopk="true"><attribute name="shopTitle" length="60"/>
        <element name="shop" type="link" target="cus:shop"><join xpath-src="@shopTitle" xpath-dst="@title"/></element>
      </element></srcSchema>""", resolve=resolve)

    assert description.link("shop").joins == (("shopTitle", "title"),)
    assert [a.name for a in description.attributes] == ["id", "shopTitle"]  # joins on a declared attribute


@pytest.mark.parametrize("link, expected", [
    ('<element name="shop" type="link" target="cus:nowhere"/>', "link 'shop' targets cus:nowhere, which is not loaded"),
    ('<element name="shop" type="link"/>', 'needs target="ns:schema"'),
    ('<element name="shop" type="link" target="cus:shop"><join xpath-src="@x" xpath-dst="@nope"/></element>',
     "joins on @nope, which cus:shop does not have"),
    ('<key name="k"><keyfield xlink="other"/></key>', "<keyfield xlink=\"other\"> needs a link of cardinality 1"),
])
def test_link_refusals_name_the_link(link, expected):
    source = f'<srcSchema namespace="cus" name="visit"><element name="visit" autopk="true">{link}</element></srcSchema>'

    assert expected in refusal(source, resolve=registry(SHOP))


def test_xml_fields_live_in_the_mdata_memo_column():
    description = parse_srcschema("""<srcSchema namespace="cus" name="note">
      <element name="note" autopk="true">
        <attribute name="title"/>
        <attribute name="remark" type="memo" xml="true"/>
        <element name="body" type="html" label="Body"/>
        <element name="comment" xml="true" type="memo"/>
        <element name="extra" xml="true"><attribute name="flag" type="boolean"/></element>
        <element name="summary" type="memo"/>
      </element></srcSchema>""")

    assert [(f.name, f.xpath, f.sql_name) for f in description.xml_fields] == [
        ("remark", "@remark", "mData"), ("body", "body", "mData"), ("comment", "comment", "mData"),
        ("extra/flag", "extra/@flag", "mData"),
    ]
    assert all(f.xml for f in description.xml_fields)
    data = description.attribute(XML_DATA_ATTR)
    assert (data.sql_name, data.type, data.xml_data) == ("mData", "memo", True)
    assert description.attribute("summary").sql_name == "mSummary"  # a typed element without xml is a column
    assert description.attribute("remark") is None and description.field("remark").xml


def test_without_xml_fields_there_is_no_mdata_column():
    description = parse_srcschema(SHOP)

    assert description.attribute(XML_DATA_ATTR) is None


def test_keyless_schema_loads_but_staging_on_it_says_what_it_needs():
    description = parse_srcschema('<srcSchema namespace="cus" name="log"><element name="log">'
                                  '<attribute name="at" type="datetime"/></element></srcSchema>')
    assert description.primary_key == ()

    detail = refusal('<srcSchema namespace="cus" name="log"><element name="log" autoStg="true">'
                     '<attribute name="at" type="datetime"/></element></srcSchema>')
    assert 'staging needs autopk="true" autouuid="true"' in detail


def test_a_view_maps_an_existing_schema_qualified_table():
    description = parse_srcschema('<srcSchema namespace="cus" name="sales"><element name="sales" view="true" '
                                  'sqltable="reporting.MonthlySales"><attribute name="total" type="double"/>'
                                  '</element></srcSchema>')

    assert description.view and description.sql_table == "reporting.MonthlySales"
    assert "add view=\"true\"" in refusal('<srcSchema namespace="cus" name="sales"><element name="sales" '
                                          'sqltable="reporting.MonthlySales"/></srcSchema>')
    assert "staging cannot be enabled on it" in refusal(
        '<srcSchema namespace="cus" name="sales"><element name="sales" view="true" autoStg="true" autopk="true" '
        'autouuid="true"/></srcSchema>')


def test_qualified_enumerations_resolve_or_are_kept_with_a_warning():
    resolve = registry(LEGACY)
    description = parse_srcschema("""<srcSchema namespace="cus" name="deal">
      <element name="deal" autopk="true">
        <attribute name="grade" type="byte" enum="cus:legacy:grade"/>
        <attribute name="kind" type="string" enum="cus:contracts:typeContract"/>
      </element></srcSchema>""", resolve=resolve)

    grade = description.attribute("grade")
    assert description.enumerations_by_name[grade.enum].accepts("high") == "1"
    kind = description.attribute("kind")
    assert (kind.enum, kind.enum_ref) == (None, "cus:contracts:typeContract")
    assert any("cus:contracts:typeContract" in w.message and "not loaded" in w.message for w in description.warnings)


def test_presentation_constructs_and_length_on_numbers_are_warnings_not_refusals():
    description = parse_srcschema("""<srcSchema namespace="cus" name="thing">
      <element name="thing" autopk="true" displayHint="wide">
        <compute-string expr="@name"/>
        <sysFilter><condition expr="1=1"/></sysFilter>
        <help>Text</help>
        <attribute name="name" colour="red"/>
        <attribute name="rank" type="long" length="4"/>
        <dbindex name="lowerName"><keyfield xpath="Lower(@name)"/></dbindex>
      </element>
      <methods><method name="Do"/></methods>
    </srcSchema>""")

    messages = "\n".join(str(w) for w in description.warnings)
    for expected in ("<compute-string> is kept in the source and ignored", "<sysFilter>", "<help>",
                     "'colour' is not an attribute", "'displayHint'", "length has no effect on 'rank'",
                     "index 'lowerName' uses the expression"):
        assert expected in messages
    assert description.attribute("rank").length is None and description.indexes == ()


def test_templates_and_references_pull_in_attributes():
    resolve = registry(SHOP, """<srcSchema namespace="cus" name="common">
      <element name="address"><attribute name="street" length="80"/><attribute name="zip" length="10"/></element>
      <element name="common"><attribute name="created" type="datetime"/></element></srcSchema>""")
    description = parse_srcschema("""<srcSchema namespace="cus" name="store" template="cus:common">
      <element name="postal"><attribute name="box" length="8"/></element>
      <element name="store" autopk="true">
        <element name="home" ref="cus:common:address"/>
        <element name="mailing" aggregate="postal"/>
      </element></srcSchema>""", resolve=resolve)

    names = [a.name for a in description.attributes]
    assert names == ["id", "created", "home/street", "home/zip", "mailing/box"]
    assert description.attribute("created").belongs_to == "cus:common"


@pytest.mark.parametrize("source, expected", [
    ('<srcSchema namespace="cus" name="s" template="ncm:content"><element name="s" autopk="true"/></srcSchema>',
     "template 'ncm:content' is not available"),
    ('<srcSchema namespace="cus" name="s"><element name="s" autopk="true"><element name="a" ref="nope"/></element>'
     '</srcSchema>', 'this schema has no top-level <element name="nope">'),
    ('<srcSchema namespace="cus" name="s"><element name="s" autopk="true"><element name="a" ref="cus:gone:x"/>'
     '</element></srcSchema>', "schema cus:gone is not loaded"),
])
def test_missing_templates_and_references_are_named(source, expected):
    assert expected in refusal(source, resolve=registry(SHOP))


# --- extension schemas ---------------------------------------------------------------------------

EXTENSION = """<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient" label="Our recipients">
  <enumeration name="tier" basetype="byte"><value name="silver" value="1"/><value name="gold" value="2"/></enumeration>
  <element name="recipient" autoStg="true">
    <dbindex name="branch"><keyfield xpath="@branch"/></dbindex>
    <attribute name="branch" type="long" label="Branch code"/>
    <attribute name="email" length="320" label="E-mail address"/>
    <attribute name="tier" type="byte" enum="tier"/>
    <attribute name="phone" _operation="delete"/>
    <element name="location"><attribute name="district" length="40"/></element>
  </element>
</srcSchema>"""


def test_an_extension_adds_overrides_and_removes_attributes_of_the_schema_it_extends():
    merged = parse_srcschema(RECIPIENT, builtin=True, extensions=[EXTENSION])

    assert merged.id == "nms:recipient" and merged.sql_table == "NmsRecipient"
    assert merged.extensions == ("cus:recipient",)
    branch = merged.attribute("branch")
    assert (branch.sql_name, branch.belongs_to) == ("iBranch", "cus:recipient")
    email = merged.attribute("email")
    assert (email.length, email.label, email.sql_name) == (320, "E-mail address", "sEmail")
    assert merged.attribute("phone") is None
    assert merged.attribute("location/district").sql_name == "sDistrict"
    assert merged.enumerations_by_name["tier"].accepts("gold") == "2"
    assert ("branch", ("branch",)) in [(i.name, i.fields) for i in merged.indexes]


def test_an_extension_alone_describes_only_its_additions():
    own = parse_srcschema(EXTENSION)

    assert own.extends == "nms:recipient" and own.primary_key == ()
    assert "phone" not in [a.name for a in own.attributes]


def test_several_extensions_merge_in_the_order_given():
    second = EXTENSION.replace('namespace="cus"', 'namespace="acme"').replace(
        '<attribute name="branch" type="long" label="Branch code"/>', "").replace(
        'length="320" label="E-mail address"', 'length="400"').replace(
        '<dbindex name="branch"><keyfield xpath="@branch"/></dbindex>', "").replace(
        '<attribute name="phone" _operation="delete"/>', "").replace("district", "area")

    merged = parse_srcschema(RECIPIENT, builtin=True, extensions=[EXTENSION, second])

    assert merged.extensions == ("cus:recipient", "acme:recipient")
    assert merged.attribute("email").length == 400 and merged.attribute("email").label == "E-mail address"


@pytest.mark.parametrize("body, expected", [
    ('<attribute name="email" type="long"/>', "cannot change the type of 'email'"),
    ('<attribute name="email" sqlname="sMail"/>', "cannot rename the column of 'email'"),
    ('<attribute name="mail2" sqlname="sEmail"/>', "column 'sEmail' of 'mail2' clashes with 'email'"),
])
def test_extension_refusals_name_the_extension(body, expected):
    extension = ('<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient">'
                 f'<element name="recipient">{body}</element></srcSchema>')

    detail = refusal(RECIPIENT, builtin=True, extensions=[extension])

    assert expected in detail


def test_an_extension_cannot_change_the_table_of_the_schema_it_extends():
    extension = ('<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient">'
                 '<element name="recipient" sqltable="Other"/></srcSchema>')

    assert "extension cus:recipient: an extension cannot change sqltable" in refusal(
        RECIPIENT, builtin=True, extensions=[extension])


def test_an_extension_of_another_schema_is_refused_when_merged():
    extension = ('<srcSchema namespace="cus" name="shop" extendedSchema="cus:shop">'
                 '<element name="shop"/></srcSchema>')

    assert "extends 'cus:shop', not nms:recipient" in refusal(RECIPIENT, builtin=True, extensions=[extension])


# --- Constructs found while loading the srcSchema examples of Adobe's public pages ------------------

# A key may name a link declared further down (xlink before the <element type="link">), as in the
# "Example: relationship table" and "overflow table" schemas of
# https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/schema-reference/examples-of-schemas-edition.html
# Parsed alone (the registry's first look at a document), the link target is not at hand yet: the
# key is not refused for it; parsed with the registry, the key holds the link's foreign key.
BASKET_LINE = """<srcSchema namespace="cus" name="basketLine">
  <element name="basketLine">
    <key name="line" internal="true"><keyfield xlink="shop"/><keyfield xpath="@position"/></key>
    <attribute name="position" type="short"/>
    <element name="shop" type="link" target="cus:shop"/>
  </element>
</srcSchema>"""


def test_a_key_on_a_link_declared_later_loads_alone_and_with_its_target():
    alone = parse_srcschema(BASKET_LINE, local_only=True)
    assert alone.id == "cus:basketLine"

    described = parse_srcschema(BASKET_LINE, resolve=registry(SHOP))
    assert described.primary_key == ("shop-id", "position")

    detail = refusal(BASKET_LINE, resolve=registry())
    assert "link 'shop' targets cus:shop, which is not loaded" in detail
    assert "xlink" not in detail  # the missing target is the one problem to fix


# view="true" written on <srcSchema> rather than on the main element, as in
# https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/schema-reference/schema-of-an-existing-table.html
def test_view_on_the_srcschema_element_maps_an_existing_table():
    description = parse_srcschema('<srcSchema namespace="cus" name="sales" view="true"><element name="sales" '
                                  'sqltable="reporting.MonthlySales"><attribute name="total" type="double"/>'
                                  '</element></srcSchema>')

    assert description.view and description.sql_table == "reporting.MonthlySales"


# An extension that shortens a built-in string, as the recipient extension example of
# https://experienceleague.adobe.com/docs/campaign/campaign-v8/developer/shemas-forms/extend-schema.html
# does: the rest of the override applies, the column keeps its length, and a warning says so.
def test_an_extension_shortening_a_string_keeps_the_column_and_warns():
    extension = ('<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient">'
                 '<element name="recipient"><attribute name="email" length="20" label="Mail"/></element></srcSchema>')
    base = parse_srcschema(RECIPIENT, builtin=True).attribute("email")

    merged = parse_srcschema(RECIPIENT, builtin=True, extensions=[extension])

    assert merged.attribute("email").length == base.length and merged.attribute("email").label == "Mail"
    assert any("cannot shorten 'email'" in str(w) and "extension cus:recipient" in str(w) for w in merged.warnings)


def test_a_schema_without_its_main_element_says_which_one_to_add():
    detail = refusal('<srcSchema namespace="cus" name="subscription">'
                     '<element name="shop" type="link" target="cus:shop"/></srcSchema>')

    assert 'add the main element <element name="subscription">' in detail


# Re-keying a table so that none of its columns survive (a manual key replaced by autopk) rebuilds
# the SQLite table with nothing to copy; the statements must run on a real SQLite database.
def test_rekeying_a_table_so_no_column_survives_plans_runnable_sqlite():
    import sqlite3

    from staging import ddl

    keyed = ('<srcSchema namespace="cus" name="member"><element name="member"><key name="id" internal="true">'
             '<keyfield xpath="@id"/></key><attribute name="id" type="long"/></element></srcSchema>')
    autopk = '<srcSchema namespace="cus" name="member"><element name="member" autopk="true"/></srcSchema>'
    before = ddl.desired_tables(parse_srcschema(keyed))
    connection = sqlite3.connect(":memory:")
    for statement in ddl.plan_changes(before, {}, vendors={ddl.CLOUD: ddl.SQLITE, ddl.LOCAL: ddl.SQLITE}).statements:
        connection.execute(statement.sql)
    state = {t.name: ddl.TableState(frozenset(c.name.lower() for c in t.columns),
                                    frozenset(i.name.lower() for i in t.indexes)) for t in before}

    plan = ddl.plan_changes(ddl.desired_tables(parse_srcschema(autopk)), state,
                            vendors={ddl.CLOUD: ddl.SQLITE, ddl.LOCAL: ddl.SQLITE})
    for statement in plan.statements:
        connection.execute(statement.sql)

    assert [row[1] for row in connection.execute('PRAGMA table_info("CusMember")')] == ["uMemberId"]


# A nameless <element aggregate="..."/> copies a shared block of fields in place, as the seed-address
# extension of https://experienceleague.adobe.com/docs/campaign-classic/using/sending-messages/using-seed-addresses/seed-addresses.html does.
def test_a_nameless_aggregate_copies_the_shared_element_in_place():
    description = parse_srcschema("""<srcSchema namespace="cus" name="ticket">
      <element name="contact"><attribute name="phone" length="20"/><element name="postal">
        <attribute name="town" length="40"/></element></element>
      <element name="audit"><attribute name="openedBy" length="40"/></element>
      <element name="ticket" autopk="true"><element aggregate="cus:ticket:contact"/>
        <element name="owner"><element aggregate="audit"/></element></element>
    </srcSchema>""")

    assert [a.name for a in description.attributes if a.name != "id"] == [
        "phone", "postal/town", "owner/openedBy"]
    assert "not the main element" not in " ".join(str(w) for w in description.warnings)


# template="ns:schema:<main element>/@attr" (the path starting at the main element), as in the same page.
def test_an_attribute_template_path_may_start_at_the_main_element():
    resolve = registry(SHOP)
    described = parse_srcschema('<srcSchema namespace="cus" name="kiosk"><element name="kiosk" autopk="true">'
                                '<attribute name="signage" template="cus:shop:shop/@title"/></element></srcSchema>',
                                resolve=resolve)
    assert (described.attribute("signage").type, described.attribute("signage").length) == ("string", 60)

    detail = refusal('<srcSchema namespace="cus" name="kiosk"><element name="kiosk" autopk="true">'
                     '<attribute name="motto" template="cus:shop:shop/@motto"/></element></srcSchema>',
                     resolve=resolve)
    assert 'template="cus:shop:shop/@motto" does not name an attribute' in detail
