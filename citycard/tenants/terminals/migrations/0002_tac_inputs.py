# What the issuer needs to recompute a tap's TAC: the SAM's terminal number and the card's algorithm id.
# Rows stored before carry '' / 4 (every card issued so far is an SM4 card).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("terminals", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="terminal_no",
            field=models.CharField(
                default="",
                help_text="The SAM's 6-byte terminal number (hex), part of what the TAC covers.",
                max_length=12,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="transaction",
            name="algorithm",
            field=models.PositiveSmallIntegerField(
                default=4, help_text="The card's algorithm id: 4 SM4, 0 3DES."
            ),
            preserve_default=False,
        ),
    ]
