"""manage.py ingest SCHEMA FILE: stream a file of records into staging, one committed batch at a time."""

import io
import os
import time
from itertools import islice
from typing import Iterator

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from campaignsite.errors import DomainError, InvalidInput, Problem
from campaignsite.permissions import SYSTEM
from staging import services
from staging.records import (
    RecordInput, check_record_schema, is_collection, record_from_element, records_from_csv, records_from_jsonl,
)
from staging.srcschema import STAGING_SUFFIX
from staging.xml import iterparse_xml

FORMATS = {".xml": "xml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class _ProgressReader(io.RawIOBase):
    """Counts the bytes the parsers pull from the file, for the progress bar."""

    def __init__(self, raw, bar: tqdm):
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        self.bar.update(count or 0)
        return count


def xml_records(source) -> Iterator[tuple[str | None, RecordInput]]:
    """(xtkschema, record) pairs of an XML document, streamed: each record of a `-collection` is
    dropped from the tree once read, so memory stays flat whatever the file size."""
    schema = None
    index = 0
    for _, element in iterparse_xml(source):
        parent = element.getparent()
        if parent is None:  # the root closed: it was the record itself, unless a collection
            if not is_collection(element):
                yield element.get("xtkschema"), record_from_element(element, 0)
            return
        if parent.getparent() is not None or not is_collection(parent):
            continue  # inside a record: record_from_element reports it when the record closes
        schema = check_record_schema(parent.get("xtkschema") or schema, element.get("xtkschema"), index,
                                     element.sourceline)
        yield schema, record_from_element(element, index)
        index += 1
        element.clear(keep_tail=False)
        while element.getprevious() is not None:
            del parent[0]


class Command(BaseCommand):
    help = (
        "Ingest a file of records into the staging table of SCHEMA (dem:sampleTable or dem:sampleTableStg), "
        "streaming it in bounded memory and committing every --batch-size records. Formats: an XML document "
        "or <xxx-collection>, JSON Lines (one object per line), or CSV with a header of attribute names "
        "(plus optional _key and _operation columns). On an error the command stops and exits non-zero, "
        "naming the line; the batches before it stay committed."
    )

    def add_arguments(self, parser):
        parser.add_argument("schema", help="Source or staging schema id, e.g. dem:sampleTable.")
        parser.add_argument("file", help="Path of the file to ingest.")
        parser.add_argument("--ext", action="store_true", help="Use IngestExt (insert/update/delete by key) "
                                                               "instead of Ingest (insert only).")
        parser.add_argument("--format", choices=sorted(set(FORMATS.values())),
                            help="File format; by default from the extension (.xml, .jsonl/.ndjson, .csv).")
        parser.add_argument("--batch-size", type=int, default=5000,
                            help="Records validated and committed together (default 5000).")
        parser.add_argument("--user", help="Check this user's permissions (staging.ingest), as SOAP and REST do. "
                                           "Without it the command acts as the system (no permission check).")

    def handle(self, *args, schema, file, ext, format, batch_size, user, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        fmt = format or FORMATS.get(os.path.splitext(file)[1].lower())
        if fmt is None:
            raise CommandError(f"Cannot tell the format of {file}; pass --format xml, jsonl or csv.")
        try:
            actor = get_user_model().objects.get(username=user) if user else SYSTEM
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named '{user}'.") from None
        try:
            staging_id = schema if schema.endswith(STAGING_SUFFIX) else (
                services.schema_get(schema_id=schema).schema_id + STAGING_SUFFIX)
            services.staging_schema_get(schema_id=staging_id)  # fail before reading a byte
        except DomainError as error:
            raise CommandError(error.detail) from None
        service = services.records_ingest_ext if ext else services.records_ingest
        try:
            size = os.path.getsize(file)
            raw = open(file, "rb", buffering=0)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None

        started = time.monotonic()
        done = batches = 0
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(file), disable=None,
                   file=self.stderr._out)
        with raw, bar:
            stream = io.BufferedReader(_ProgressReader(raw, bar), buffer_size=1 << 20)
            records = self._records(stream, fmt, staging_id)
            try:
                while batch := list(islice(records, batch_size)):
                    try:
                        service(schema_id=staging_id, records=batch, user=actor)
                    except DomainError as error:
                        raise _located(error, offset=done) from None
                    done += len(batch)
                    batches += 1
            except DomainError as error:
                kept = (f"{done} record(s) in {batches} earlier batch(es) were committed and stay staged."
                        if done else "Nothing was committed.")
                raise CommandError(f"{error.detail}\n{kept}") from None
        seconds = time.monotonic() - started
        rate = done / seconds if seconds else float(done)
        self.stdout.write(f"Ingested {done} record(s) into {staging_id} in {batches} batch(es), "
                          f"{seconds:.1f} s ({rate:,.0f} rows/s).")

    def _records(self, stream, fmt: str, staging_id: str) -> Iterator[RecordInput]:
        accepted = {None, staging_id, staging_id[: -len(STAGING_SUFFIX)]}
        if fmt == "xml":
            for schema, record in xml_records(stream):
                if schema not in accepted:
                    raise InvalidInput(f"The file names xtkschema '{schema}', not {staging_id}.",
                                       [Problem("ingest it with its own schema id, or fix the document",
                                                attribute="xtkschema", value=schema, line=record.line)])
                yield record
            return
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        try:
            yield from (records_from_jsonl(text) if fmt == "jsonl" else records_from_csv(text))
        except UnicodeDecodeError as exc:
            raise InvalidInput("The file is not UTF-8.", [Problem(str(exc))]) from None


def _located(error: DomainError, *, offset: int) -> DomainError:
    """`error` with record numbers counted from the start of the file instead of the batch."""
    problems = [Problem(p.message, record=None if p.record is None else p.record + offset, attribute=p.attribute,
                        value=p.value, line=p.line) for p in error.problems]
    return type(error)(error.message, problems)
