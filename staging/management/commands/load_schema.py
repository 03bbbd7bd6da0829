"""manage.py load_schema FILE.xml... — create or update schemas from srcSchema files."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaignsite.errors import DomainError, TooLarge
from campaignsite.permissions import SYSTEM
from staging import services


def read_source(path: Path) -> str:
    """The file's text, refused past SCHEMA_MAX_BYTES without reading the rest."""
    limit = settings.SCHEMA_MAX_BYTES
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The file is larger than SCHEMA_MAX_BYTES ({limit} bytes).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason}).") from None


class Command(BaseCommand):
    help = (
        "Create or update schemas from srcSchema XML files: a file whose namespace:name is new creates a "
        "schema, one that exists replaces its source (unchanged files are left alone). Built-in namespaces "
        "(nms, xtk, ...) are refused; use load_builtin_schemas. Every file is tried; the exit status is "
        "non-zero when any failed. Constructs that are kept but ignored are printed as warnings (stderr) and do "
        "not fail the file. For an extension schema, --update-structure updates the schema it extends."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE.xml", type=Path, help="srcSchema XML documents.")
        parser.add_argument(
            "--update-structure", action="store_true",
            help="Also apply each schema's database structure and print the DDL that ran.",
        )
        parser.add_argument(
            "--confirm-destructive", action="store_true",
            help="With --update-structure: allow dropping columns and changing column types. Without it a "
            "refused update still leaves the new source saved; run again with this flag to apply.",
        )

    def handle(self, *args, files, update_structure, confirm_destructive, **options):
        failures = []
        for path in files:
            try:
                self._load(path, update_structure=update_structure, confirm_destructive=confirm_destructive)
            except (DomainError, OSError, CommandError) as exc:
                detail = exc.detail if isinstance(exc, DomainError) else str(exc)
                message = detail if detail.startswith(str(path)) else f"{path}: {detail}"
                self.stderr.write(self.style.ERROR(message))
                failures.append(str(path))
        if failures:
            raise CommandError(f"{len(failures)} of {len(files)} file(s) failed: {', '.join(failures)}")

    def _load(self, path: Path, *, update_structure: bool, confirm_destructive: bool) -> None:
        source = read_source(path)
        schema, outcome = services.schema_load(source=source, user=SYSTEM)
        self.stdout.write(f"{path}: {outcome} {schema.schema_id}"
                          + (f" (extends {schema.extends})" if schema.extends else ""))
        # Constructs kept in the source but ignored do not fail the load; say which they are.
        for problem in schema.description.warnings:
            self.stderr.write(self.style.WARNING(f"WARNING: {problem} ({path})"))
        if update_structure:
            plan = services.structure_update(schema=schema, confirm_destructive=confirm_destructive, user=SYSTEM)
            self.stdout.write(plan.as_text())
