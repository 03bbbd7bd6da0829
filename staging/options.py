"""Campaign options (`xtk:option`): the model, its schema document, and the services that read and write it.

An option is a named, typed value: clients read one with `xtk:session#GetOption` (value as text plus
its type code) and write with `Write` of an `xtk:option` document, which is what the SDK's
`client.setOption` sends. The type codes and the attribute each type is stored in (`stringValue`,
`longValue`, ...) are Campaign's, so a client casts the value back exactly as it would against Campaign.
"""

import math
import secrets
from datetime import datetime, timezone as dt_timezone
from typing import Sequence

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.dateparse import parse_date, parse_datetime

from campaignsite.errors import Forbidden, InvalidInput, Problem, Unauthenticated
from staging import records as rec

OPTION_SCHEMA_ID = "xtk:option"
WRITE_PERMISSION = "staging.change_option"


class DataType(models.IntegerChoices):
    # Campaign's variant type codes (what GetOption answers as its second output).
    BYTE = 1, "byte"
    SHORT = 2, "short"
    LONG = 3, "long"
    FLOAT = 4, "float"
    DOUBLE = 5, "double"
    STRING = 6, "string"
    DATETIME = 7, "datetime"
    DATE = 10, "date"
    MEMO = 12, "memo"
    BOOLEAN = 15, "boolean"


_INTEGER_TYPES = (DataType.BYTE, DataType.SHORT, DataType.LONG, DataType.BOOLEAN)
# The document attribute (and model field) each type keeps its value in, as Campaign's xtk:option does.
VALUE_ATTRIBUTES = {
    **{t: ("longValue", "long_value") for t in _INTEGER_TYPES},
    DataType.FLOAT: ("doubleValue", "double_value"),
    DataType.DOUBLE: ("doubleValue", "double_value"),
    DataType.STRING: ("stringValue", "string_value"),
    DataType.DATETIME: ("timeStampValue", "timestamp_value"),
    DataType.DATE: ("timeStampValue", "timestamp_value"),
    DataType.MEMO: ("memoValue", "memo_value"),
}
_FIELD_OF_ATTRIBUTE = {attribute: field_name for attribute, field_name in VALUE_ATTRIBUTES.values()}
WRITABLE_ATTRIBUTES = ("name", "dataType", "description", *_FIELD_OF_ATTRIBUTE)
OPERATIONS = ("insertOrUpdate", "insert", "update", "delete")


class Option(models.Model):
    """One option: its name, its type and its value in the field of that type."""

    name = models.CharField(max_length=64, unique=True)
    data_type = models.PositiveSmallIntegerField("type", choices=DataType.choices, default=DataType.STRING)
    string_value = models.CharField(max_length=255, blank=True)
    long_value = models.BigIntegerField(null=True, blank=True)
    double_value = models.FloatField(null=True, blank=True)
    timestamp_value = models.DateTimeField(null=True, blank=True)
    memo_value = models.TextField(blank=True)
    description = models.CharField(max_length=255, blank=True)
    modified_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def value_field(self) -> str:
        return VALUE_ATTRIBUTES[DataType(self.data_type)][1]

    def clean(self):
        if self.value_field not in ("string_value", "memo_value") and getattr(self, self.value_field) is None:
            label = self._meta.get_field(self.value_field).verbose_name
            raise ValidationError({self.value_field: f"An option of type {DataType(self.data_type).label} "
                                                     f"keeps its value in '{label}': fill it in."})

    @property
    def raw_value(self) -> str:
        """The value as GetOption writes it: text a client casts back with the type code."""
        value = getattr(self, self.value_field)
        if value is None:
            return ""
        if self.data_type == DataType.DATE:
            return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d")
        if isinstance(value, datetime):
            value = value.astimezone(dt_timezone.utc)
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        if isinstance(value, float):
            return repr(value)
        return str(value)


def _database_id() -> str:
    # Campaign's shape: "u" and 40 upper-case hex digits, drawn once per database.
    return "u" + secrets.token_hex(20).upper()


# Options every instance has: name -> (type, value factory, description). Documented in docs/soap.md.
SEEDED_OPTIONS = {
    "XtkDatabaseId": (DataType.STRING, _database_id, "Identifier of this instance's database, drawn at install."),
    "WdbcTimeZone": (DataType.STRING, lambda: "UTC", "Time zone the database stores dates and times in."),
}


def options_seed(*, model=Option) -> list[str]:
    """Create the seeded options that are missing (never changes one that exists); returns their names.

    `model` lets the data migration pass its historical model.
    """
    created = []
    for name, (data_type, value, description) in SEEDED_OPTIONS.items():
        field = VALUE_ATTRIBUTES[data_type][1]
        _, was_created = model.objects.get_or_create(
            name=name, defaults={"data_type": data_type.value, field: value(), "description": description})
        if was_created:
            created.append(name)
    return created


# --- Reading ---------------------------------------------------------------------------------

def option_get(*, name: str) -> tuple[str, int]:
    """(value as text, type code) of an option; ("", 0) when there is none, as Campaign answers."""
    option = Option.objects.filter(name=name).first()
    return ("", 0) if option is None else (option.raw_value, option.data_type)


# --- Writing ---------------------------------------------------------------------------------

def _parse_value(data_type: DataType, text: str, index: int, attribute: str):
    """The typed value of `text` for `data_type`, or InvalidInput naming the record and attribute."""
    def refuse(expected: str):
        raise InvalidInput(f"The value of option record {index} is not a {data_type.label}.",
                           [Problem(f"expected {expected}", record=index, attribute=attribute, value=text)])

    text = text.strip() if data_type not in (DataType.STRING, DataType.MEMO) else text
    if data_type in _INTEGER_TYPES:
        if data_type == DataType.BOOLEAN and text.lower() in ("true", "false"):
            return int(text.lower() == "true")
        try:
            return int(text)
        except ValueError:
            refuse("an integer, e.g. 42")
    if data_type in (DataType.FLOAT, DataType.DOUBLE):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            refuse("a finite number, e.g. 3.5")
        return value
    if data_type in (DataType.DATETIME, DataType.DATE):
        moment = parse_datetime(text.replace(" ", "T", 1)) if len(text) > 10 else None
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
        if moment is None:
            refuse("a date or date and time, e.g. 2026-11-30 or 2026-11-30T10:00:00Z")
        return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)
    if data_type == DataType.STRING and len(text) > Option._meta.get_field("string_value").max_length:
        raise InvalidInput(f"The value of option record {index} is too long for a string option.",
                           [Problem("at most 255 characters; use dataType 12 (memo) and memoValue for long text",
                                    record=index, attribute=attribute, value=text)])
    return text


def _checked(records: Sequence[rec.RecordInput]) -> list[tuple[str, str, dict, int]]:
    """(operation, name, field values, index) per record, after checking every record; nothing is written on error."""
    planned, problems = [], []
    for index, record in enumerate(records):
        values = {k: v for k, v in record.values.items() if k != rec.SCHEMA_ATTR}
        unknown = sorted(set(values) - set(WRITABLE_ATTRIBUTES))
        problems += [Problem(f"xtk:option has no attribute '{a}'; it has {', '.join(WRITABLE_ATTRIBUTES)}",
                             record=index, attribute=a, value=values[a]) for a in unknown]
        if record.key not in (None, ("name",)):
            problems.append(Problem("options are identified by their name: use _key=\"@name\"", record=index,
                                    attribute="_key", value=",".join(record.key)))
        operation = record.operation or "insertOrUpdate"
        if operation not in OPERATIONS:
            problems.append(Problem(f"use one of {', '.join(OPERATIONS)}", record=index, attribute="_operation",
                                    value=operation))
        name = (values.get("name") or "").strip()
        if not name or len(name) > Option._meta.get_field("name").max_length:
            problems.append(Problem("give the option's name (at most 64 characters), e.g. name=\"MyOption\"",
                                    record=index, attribute="name", value=name))
        fields = {}
        if values.get("dataType") is not None:
            try:
                fields["data_type"] = DataType(int(values["dataType"]))
            except ValueError:
                problems.append(Problem(f"use a type code: {', '.join(f'{t.value} ({t.label})' for t in DataType)}",
                                        record=index, attribute="dataType", value=values["dataType"]))
        if values.get("description") is not None:
            fields["description"] = values["description"][:255]
        for attribute, field_name in _FIELD_OF_ATTRIBUTE.items():
            if values.get(attribute) is not None:
                fields[field_name] = values[attribute]
        planned.append((operation, name, fields, index))
    if problems:
        raise InvalidInput(f"The {OPTION_SCHEMA_ID} document is invalid.", problems)
    return planned


@transaction.atomic(using="default")
def options_write(*, records: Sequence[rec.RecordInput], user) -> None:
    """Insert, update or delete options by name (Write of an xtk:option document); all or nothing.

    A record's type is its `dataType`, else the stored option's, else inferred from the one value
    attribute it carries; its value is read from the attribute of that type (stringValue for a string).
    """
    if user is None or not getattr(user, "is_authenticated", False):
        raise Unauthenticated("Authentication is required to write options.")
    if not user.has_perm(WRITE_PERMISSION):
        raise Forbidden(f"User '{user}' may not write options.",
                        [Problem(f"grant the permission '{WRITE_PERMISSION}' to this user or one of its groups "
                                 "(admin: Users)")])
    planned = _checked(records)
    existing = {o.name: o for o in Option.objects.select_for_update().filter(name__in=[p[1] for p in planned])}
    for operation, name, fields, index in planned:
        option = existing.get(name)
        if operation == "delete":
            if option is not None:
                option.delete()
                existing.pop(name)
            continue
        if option is None and operation == "update":
            raise InvalidInput(f"Option record {index} updates an option that does not exist.",
                               [Problem("use _operation=\"insertOrUpdate\" to create it", record=index,
                                        attribute="name", value=name)])
        if option is not None and operation == "insert":
            raise InvalidInput(f"Option record {index} inserts an option that exists already.",
                               [Problem("use _operation=\"insertOrUpdate\" to change it", record=index,
                                        attribute="name", value=name)])
        option = option or Option(name=name)
        data_type = fields.pop("data_type", None)
        if data_type is None and option.pk is None:
            # No type given for a new option: the type of the one value attribute sent, else string.
            sent = next((f for f in fields if f in _FIELD_OF_ATTRIBUTE.values()), "string_value")
            data_type = next(t for t, (_, f) in VALUE_ATTRIBUTES.items() if f == sent)
        if data_type is not None:
            option.data_type = data_type
        kind = DataType(option.data_type)
        value_attribute, value_field = VALUE_ATTRIBUTES[kind]
        if value_field in fields:
            setattr(option, value_field, _parse_value(kind, fields[value_field], index, value_attribute))
        elif getattr(option, value_field) is None:
            raise InvalidInput(f"Option record {index} has no value for its type.",
                               [Problem(f"an option of dataType {kind.value} ({kind.label}) keeps its value in "
                                        f"{value_attribute}: add it", record=index, attribute=value_attribute)])
        if "description" in fields:
            option.description = fields["description"]
        option.save()
        existing[name] = option


# The compiled xtk:option schema clients fetch (client.getSchema("xtk:option")); rendered by
# staging.soap.schema_document like any other schema. Column names are the model's.
OPTION_SRCSCHEMA = """\
<srcSchema namespace="xtk" name="option" label="Options" labelSingular="Option" mappingType="sql"
           xtkschema="xtk:srcSchema">
  <enumeration name="dataType" basetype="byte" default="string">
    <value name="byte" label="Byte" value="1"/>
    <value name="short" label="Short integer" value="2"/>
    <value name="long" label="Integer" value="3"/>
    <value name="float" label="Float" value="4"/>
    <value name="double" label="Double" value="5"/>
    <value name="string" label="String" value="6"/>
    <value name="datetime" label="Date and time" value="7"/>
    <value name="date" label="Date" value="10"/>
    <value name="memo" label="Memo" value="12"/>
    <value name="boolean" label="Boolean" value="15"/>
  </enumeration>
  <element name="option" label="Options" sqltable="staging_option">
    <key name="name" internal="true"><keyfield xpath="@name"/></key>
    <attribute name="name" label="Name" type="string" length="64" sqlname="name"/>
    <attribute name="dataType" label="Type" type="byte" enum="dataType" sqlname="data_type"/>
    <attribute name="stringValue" label="String value" type="string" length="255" sqlname="string_value"/>
    <attribute name="longValue" label="Integer value" type="int64" sqlname="long_value"/>
    <attribute name="doubleValue" label="Number value" type="double" sqlname="double_value"/>
    <attribute name="timeStampValue" label="Date value" type="datetime" sqlname="timestamp_value"/>
    <attribute name="memoValue" label="Memo value" type="memo" sqlname="memo_value"/>
    <attribute name="description" label="Description" type="string" length="255" sqlname="description"/>
  </element>
</srcSchema>
"""
