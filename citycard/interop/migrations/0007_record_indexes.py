"""Two indexes fewer to maintain on every record inserted: the ``varchar_pattern_ops`` index Django adds
beside a unique ``CharField`` (nothing searches record ids by prefix) and the single-column ``cycle_id``
index, which ``record_cycle_idx`` (cycle, issuer, acquirer) already covers. The unique constraint on
``record_id`` stays (collection's ``ON CONFLICT (record_id)``), renamed to the model's constraint name, so
its index is not rebuilt."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("interop", "0006_record_fillfactor")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS interop_clearingrecord_record_id_e1377fee_like;"
                    " DROP INDEX IF EXISTS interop_clearingrecord_cycle_id_1b10cd07;"
                    " ALTER TABLE interop_clearingrecord"
                    " RENAME CONSTRAINT interop_clearingrecord_record_id_key TO record_id_unique",
                    "ALTER TABLE interop_clearingrecord"
                    " RENAME CONSTRAINT record_id_unique TO interop_clearingrecord_record_id_key;"
                    " CREATE INDEX interop_clearingrecord_record_id_e1377fee_like"
                    " ON interop_clearingrecord (record_id varchar_pattern_ops);"
                    " CREATE INDEX interop_clearingrecord_cycle_id_1b10cd07 ON interop_clearingrecord (cycle_id)",
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="clearingrecord",
                    name="cycle",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="records",
                        to="interop.clearingcycle",
                    ),
                ),
                migrations.AlterField(
                    model_name="clearingrecord",
                    name="record_id",
                    field=models.CharField(max_length=60),
                ),
                migrations.AddConstraint(
                    model_name="clearingrecord",
                    constraint=models.UniqueConstraint(fields=("record_id",), name="record_id_unique"),
                ),
            ],
        )
    ]
