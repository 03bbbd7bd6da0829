"""django-import-export importing the batch-ingest rows into an equivalent Django model, through its
`Resource` API: the tool Django users reach for today, as the second baseline of the batch ingest.

Needs bench.benchsite settings (the `bench` app and `import_export` installed). The resource is set up
the way import-export's documentation advises for large imports, so the comparison is with the tool
at its fastest, not only at its defaults (measured too, on fewer rows: a query or two per row): bulk_create in batches (`use_bulk`), no lookup of existing rows
(`force_init_instance`: every row is new), no per-row diff or HTML report, one transaction.
"""

import time

from bench import ingest_bench


def _resource_class(*, tuned: bool):
    from import_export import resources

    from bench.models import ImportedSampleRow

    class DefaultResource(resources.ModelResource):
        class Meta:
            model = ImportedSampleRow
            fields = ("id", "testcol1", "testcol2")
            import_id_fields = ("id",)

    class TunedResource(resources.ModelResource):
        class Meta:
            model = ImportedSampleRow
            fields = ("id", "testcol1", "testcol2")
            import_id_fields = ("id",)
            use_bulk = True
            batch_size = 1000
            force_init_instance = True
            skip_diff = True
            skip_html_diff = True
            report_skipped = False
            use_transactions = True

    return TunedResource if tuned else DefaultResource


def dataset(n: int):
    """The same n records the ingest benchmarks send, as a tablib Dataset (import-export's input).
    Each row carries an empty id, which the model's default fills, as the staging table's is."""
    import tablib

    data = tablib.Dataset(headers=["id", "testcol1", "testcol2"])
    for i in range(n):
        v = ingest_bench.values(i)
        data.append(("", v["testcol1"], v["testcol2"]))
    return data


def clear() -> None:
    from bench.models import ImportedSampleRow

    ImportedSampleRow.objects.all().delete()


def import_rows(n: int, *, tuned: bool = True) -> float:
    """Seconds for `Resource.import_data` of n new rows (dataset built beforehand, not timed), with
    the tuned resource or with import-export's defaults (a lookup and a save() per row)."""
    from bench.models import ImportedSampleRow

    clear()
    data = dataset(n)
    resource = _resource_class(tuned=tuned)()
    started = time.perf_counter()
    result = resource.import_data(data, dry_run=False, raise_errors=True)
    elapsed = time.perf_counter() - started
    assert not result.has_errors() and ImportedSampleRow.objects.count() == n, "import-export did not import all rows"
    clear()
    return elapsed
