"""The record table back to full pages (fillfactor 100): 0006 left 40% of each page free for validation's
status update of every record, but validation now writes only the rejections (~2% of a cycle), so the
free room only made the table — and every insert and scan of it — 1.7× larger."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("interop", "0009_reconciliation_csv_zlib")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE interop_clearingrecord RESET (fillfactor)",
            "ALTER TABLE interop_clearingrecord SET (fillfactor = 60)",
        )
    ]
