"""Personal data that cannot be pieced together: no birth date column (only the decade of birth), the
address encrypted like the ID number and phone, and the ID mask reduced to its first and last characters
(6+4 hid only the birth date)."""

from django.db import connection, migrations, models


def seal_addresses(apps, schema_editor):
    Cardholder = apps.get_model("cards", "Cardholder")
    rows = list(Cardholder.objects.exclude(address=""))
    if not rows:  # the template schema and every tenant without addresses: no key needed
        return
    from citycard.platform.models import Tenant
    from citycard.tenants.cards.pii import Sealer, address_mask

    previous, with_public = connection.tenant, connection.include_public_schema
    connection.set_tenant(previous, include_public=True)  # the key vault lives in the public schema
    try:
        sealer = Sealer(Tenant.objects.get(schema_name=previous.schema_name))
        for holder in rows:
            # One key per row: a row under a retired key moves to the current one whole.
            holder.id_cipher = sealer.seal("id", sealer.open("id", holder.id_cipher, holder.key_id))
            if holder.phone_cipher is not None:
                holder.phone_cipher = sealer.seal("phone", sealer.open("phone", holder.phone_cipher, holder.key_id))
            holder.key_id = sealer.key_id
            holder.address_cipher = sealer.seal("address", holder.address)
            holder.address_masked = address_mask(holder.address)
            holder.save(update_fields=["id_cipher", "phone_cipher", "key_id", "address_cipher", "address_masked"])
    finally:
        connection.set_tenant(previous, include_public=with_public)


class Migration(migrations.Migration):
    dependencies = [("cards", "0002_card_request_key")]

    operations = [
        migrations.AddField(
            model_name="cardholder",
            name="birth_decade",
            field=models.PositiveSmallIntegerField(
                null=True, help_text="Decade of birth (出生年代), e.g. 1950 for 50后."
            ),
        ),
        migrations.RunSQL(
            "UPDATE cards_cardholder SET birth_decade = (extract(year FROM birth_date)::int / 10) * 10",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="cardholder",
            name="birth_decade",
            field=models.PositiveSmallIntegerField(help_text="Decade of birth (出生年代), e.g. 1950 for 50后."),
        ),
        migrations.RemoveField(model_name="cardholder", name="birth_date"),
        migrations.AddField(
            model_name="cardholder", name="address_cipher", field=models.BinaryField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="cardholder",
            name="address_masked",
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.RunPython(seal_addresses, migrations.RunPython.noop),
        migrations.RemoveField(model_name="cardholder", name="address"),
        migrations.RunSQL(
            "UPDATE cards_cardholder SET id_masked = left(id_masked, 1) || repeat('*', 16) || right(id_masked, 1)"
            " WHERE length(id_masked) = 18",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="cardholder",
            name="id_masked",
            field=models.CharField(help_text="First and last characters: 3****************4.", max_length=18),
        ),
        migrations.AlterField(
            model_name="cardholder",
            name="key_id",
            field=models.CharField(help_text="The data key every cipher of the row is under.", max_length=60),
        ),
    ]
