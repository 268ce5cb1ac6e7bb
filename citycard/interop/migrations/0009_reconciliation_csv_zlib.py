"""Reconciliation files' text kept zlib-compressed (``csv_zlib``), compressed where the text is written
(the settlement step's pool of writers), and stored by PostgreSQL as it is (``STORAGE EXTERNAL``: no
second compression attempt). Settling a 1M-record cycle stores 20 files of ~10 MB; pglz compressing them
inside the step's transaction took ~3.5 s (docs/benchmarks.md, "A clearing cycle")."""

import zlib

from django.db import migrations, models


def compress(apps, schema_editor):
    ReconciliationFile = apps.get_model("interop", "ReconciliationFile")
    for file in ReconciliationFile.objects.only("pk", "csv").iterator():
        ReconciliationFile.objects.filter(pk=file.pk).update(csv_zlib=zlib.compress(file.csv.encode(), 1))


def decompress(apps, schema_editor):
    ReconciliationFile = apps.get_model("interop", "ReconciliationFile")
    for file in ReconciliationFile.objects.only("pk", "csv_zlib").iterator():
        ReconciliationFile.objects.filter(pk=file.pk).update(csv=zlib.decompress(bytes(file.csv_zlib)).decode())


class Migration(migrations.Migration):
    dependencies = [("interop", "0008_issuer_validation")]

    operations = [
        migrations.AddField(
            model_name="reconciliationfile", name="csv_zlib", field=models.BinaryField(default=b"")
        ),
        migrations.AlterField(model_name="reconciliationfile", name="csv", field=models.TextField(default="")),
        migrations.RunPython(compress, decompress),
        migrations.RemoveField(model_name="reconciliationfile", name="csv"),
        migrations.AlterField(model_name="reconciliationfile", name="csv_zlib", field=models.BinaryField()),
        migrations.AlterField(
            model_name="reconciliationfile",
            name="sha256",
            field=models.CharField(help_text="SHA-256 of the CSV's UTF-8 (not of the compressed).", max_length=64),
        ),
        migrations.RunSQL(
            "ALTER TABLE interop_reconciliationfile ALTER COLUMN csv_zlib SET STORAGE EXTERNAL",
            "ALTER TABLE interop_reconciliationfile ALTER COLUMN csv_zlib SET STORAGE EXTENDED",
        ),
    ]
