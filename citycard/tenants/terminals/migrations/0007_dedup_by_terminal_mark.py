from django.db import migrations, models

# Resent taps are recognised under the terminal's row lock: a tap whose sequence number is above the
# terminal's high-water mark cannot have been stored before; one at or below it is looked up among the
# stored taps through (terminal, sequence). The natural-key table, one more heap and index written per
# tap and never purged with the month partitions, goes. The mark is first raised to every stored key.
FORWARD = """
UPDATE terminals_terminal t SET last_seq = GREATEST(COALESCE(t.last_seq, k.top), k.top)
  FROM (SELECT terminal_id, max(terminal_seq) AS top FROM terminals_tapkey GROUP BY terminal_id) k
 WHERE t.terminal_id = k.terminal_id;
DROP TABLE terminals_tapkey;
CREATE INDEX transaction_terminal_seq ON terminals_transaction (terminal_id, terminal_seq);
"""
BACKWARD = """
DROP INDEX transaction_terminal_seq;
CREATE TABLE terminals_tapkey (
    card_no varchar(19) NOT NULL,
    card_counter bigint NOT NULL,
    terminal_id varchar(40) NOT NULL,
    terminal_seq bigint NOT NULL,
    PRIMARY KEY (terminal_id, terminal_seq, card_no, card_counter)
);
INSERT INTO terminals_tapkey SELECT card_no, card_counter, terminal_id, terminal_seq FROM terminals_transaction
    ON CONFLICT DO NOTHING;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("terminals", "0006_batch_ack_parts"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.AlterField(
            model_name="terminal",
            name="last_seq",
            field=models.BigIntegerField(
                blank=True,
                help_text="Highest terminal sequence received (gap detection; a tap above it cannot be a resend).",
                null=True,
            ),
        ),
    ]
