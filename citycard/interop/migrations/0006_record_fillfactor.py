"""Room in every page of the record table for the new row version of validation's status update, so it
is a heap-only (HOT) update: no index entries to write, dead versions pruned in the page."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("interop", "0005_record_index_without_status")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE interop_clearingrecord SET (fillfactor = 60)",
            "ALTER TABLE interop_clearingrecord RESET (fillfactor)",
        )
    ]
