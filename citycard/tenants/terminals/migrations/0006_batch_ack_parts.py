import json

from django.db import migrations, models


def parts_of_ack(ack: str) -> str:
    """A stored acknowledgement → what it is made of (its received_at text, its signature's JSON text as
    sent, its non-accepted outcomes): ingest.ack_rebuild gives the same bytes back."""
    document = json.loads(ack)
    payload = document["payload"]
    others = [[r["index"], r["outcome"], r.get("reason", "")] for r in payload["results"] if r["outcome"] != "accepted"]
    return json.dumps(
        {"received_at": payload["received_at"], "signature": json.dumps(document["signature"]), "outcomes": others},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def ack_to_parts(apps, schema_editor):
    Batch = apps.get_model("terminals", "Batch")
    for batch in Batch.objects.only("id", "ack").iterator():
        batch.ack_parts = parts_of_ack(batch.ack)
        batch.save(update_fields=["ack_parts"])


class Migration(migrations.Migration):
    dependencies = [
        ("terminals", "0005_tapkey_terminal_order"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="ack_parts",
            field=models.TextField(
                default="",
                help_text="The acknowledgement's received_at text, signature JSON and non-accepted outcomes (JSON).",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(ack_to_parts, migrations.RunPython.noop),
        migrations.RemoveField(model_name="batch", name="ack"),
    ]
