from django.db import migrations

# The natural key's primary key in terminal order: a batch comes from one terminal with rising sequence
# numbers, so its keys land together at the end of that terminal's range (a few index pages) instead of
# at 500 random places of a card-ordered index. The same columns, so the same uniqueness; the card-ordered
# reads (previous card counter) go through the transaction table's card-history index.
FORWARD = """
ALTER TABLE terminals_tapkey DROP CONSTRAINT terminals_tapkey_pkey,
    ADD CONSTRAINT terminals_tapkey_pkey PRIMARY KEY (terminal_id, terminal_seq, card_no, card_counter)
"""
BACKWARD = """
ALTER TABLE terminals_tapkey DROP CONSTRAINT terminals_tapkey_pkey,
    ADD CONSTRAINT terminals_tapkey_pkey PRIMARY KEY (card_no, card_counter, terminal_id, terminal_seq)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("terminals", "0004_batch_verification"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
