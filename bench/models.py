"""The throwaway model django-import-export imports into: the staging table's business columns and
the bookkeeping a staged row carries, as a Django model. Installed only by bench.benchsite."""

import uuid

from django.db import models


def new_id() -> str:
    return str(uuid.uuid4())


class ImportedSampleRow(models.Model):
    id = models.CharField(primary_key=True, max_length=36, default=new_id)
    testcol1 = models.CharField(max_length=255, blank=True)
    testcol2 = models.CharField(max_length=255, blank=True)
    last_modified = models.DateTimeField(auto_now=True)
    operation = models.CharField(max_length=16, default="insert")
    status = models.CharField(max_length=16, default="pending")

    class Meta:
        app_label = "bench"
