"""Reconciliation files' text stored without TOAST compression (``STORAGE EXTERNAL``): settling a
1M-record cycle stores ~200 MB of CSV, and pglz compressing it in the settlement step's transaction took
~3.5 s of the step (docs/benchmarks.md, "A clearing cycle"); the text is still kept out of line."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("interop", "0008_issuer_validation")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE interop_reconciliationfile ALTER COLUMN csv SET STORAGE EXTERNAL",
            "ALTER TABLE interop_reconciliationfile ALTER COLUMN csv SET STORAGE EXTENDED",
        )
    ]
