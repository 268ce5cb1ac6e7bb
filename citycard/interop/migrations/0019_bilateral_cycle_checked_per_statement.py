# The matrix cells' cycle checked once per statement rather than per cell (issue 23: a national cycle
# inserts ~90,000 cells, and the foreign key's check per row was half of the insert).

import django.db.models.deletion
from django.db import migrations, models

FORWARD = r"""
CREATE FUNCTION interop_bilateral_cycle_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE missing bigint;
BEGIN
    SELECT n.cycle_id INTO missing FROM new_cells n
    WHERE NOT EXISTS (SELECT 1 FROM interop_clearingcycle c WHERE c.id = n.cycle_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'bilateral positions name cycle %, which does not exist', missing
            USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER interop_bilateral_cycle_exists AFTER INSERT ON interop_bilateralposition
    REFERENCING NEW TABLE AS new_cells FOR EACH STATEMENT EXECUTE FUNCTION interop_bilateral_cycle_exists();

CREATE FUNCTION interop_cycle_keeps_its_cells() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM interop_bilateralposition WHERE cycle_id = OLD.id) THEN
        RAISE EXCEPTION 'cycle % has bilateral positions', OLD.id USING ERRCODE = '23503';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER interop_cycle_keeps_its_cells BEFORE DELETE ON interop_clearingcycle
    FOR EACH ROW EXECUTE FUNCTION interop_cycle_keeps_its_cells();
"""

REVERSE = r"""
DROP TRIGGER interop_cycle_keeps_its_cells ON interop_clearingcycle;
DROP FUNCTION interop_cycle_keeps_its_cells();
DROP TRIGGER interop_bilateral_cycle_exists ON interop_bilateralposition;
DROP FUNCTION interop_bilateral_cycle_exists();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('interop', '0018_alter_roamingagreement_service'),
    ]

    operations = [
        migrations.AlterField(
            model_name='bilateralposition',
            name='cycle',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='bilateral', to='interop.clearingcycle', verbose_name='cycle'),
        ),
        migrations.RunSQL(FORWARD, REVERSE),
    ]
