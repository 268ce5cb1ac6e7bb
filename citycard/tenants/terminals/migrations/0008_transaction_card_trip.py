from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("terminals", "0007_dedup_by_terminal_mark"),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="card_trip",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The transit record the card gave before the tap (hex): the journey the fare was priced from.",
                max_length=256,
            ),
        ),
    ]
