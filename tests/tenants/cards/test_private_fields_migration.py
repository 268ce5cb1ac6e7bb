"""Migration cards 0003 on a schema that holds cardholders of the earlier shape: the birth date leaves (its
decade stays), the address is sealed under the row's data key and masked, and the ID mask shrinks to its
first and last characters."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import Tenant
from citycard.tenants.cards.models import Cardholder
from citycard.tenants.cards.pii import Sealer, id_number_build
from citycard.tenants.cards.selectors import cardholder_pii, cardholder_search

BEFORE = [("cards", "0002_card_request_key")]
AFTER = [("cards", "0003_cardholder_private_fields")]


def test_0003_moves_existing_cardholders_to_the_private_shape(committed_db):
    tenant = Tenant.objects.filter(code="ningbo").first() or services.tenant_create(
        code="ningbo", division_code="330200", actor="test"
    )
    number = id_number_build(division="330203", birth_date=dt.date(1952, 7, 8), sequence=31)
    with tenant_context(tenant):
        Cardholder.objects.all().delete()
        MigrationExecutor(connection).migrate(BEFORE)
        sealer = Sealer(tenant)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO cards_cardholder (name, id_cipher, id_blind, id_masked, phone_blind, phone_masked,"
                " key_id, birth_date, sex, address, photo_ref, local_hukou, local_social_insurance,"
                " residence_permit, employer, community, created_at, created_by) VALUES (%s, %s, %s, %s, '', '',"
                " %s, %s, 'M', %s, '', true, false, false, '', '', now(), 'test')",
                [
                    "宁波人",
                    sealer.seal("id", number),
                    sealer.blind("id", number),
                    f"{number[:6]}********{number[-4:]}",
                    sealer.key_id,
                    dt.date(1952, 7, 8),
                    "浙江省宁波市海曙区中山西路 2 号",
                ],
            )
        MigrationExecutor(connection).migrate(AFTER)
        holder = cardholder_search(query=number).get()
        assert holder.id_masked == f"{number[0]}{'*' * 16}{number[-1]}"
        assert holder.birth_decade == 1950 and holder.address_masked == "浙江省宁波市****"
        assert cardholder_pii(cardholder=holder)["address"] == "浙江省宁波市海曙区中山西路 2 号"
        assert cardholder_pii(cardholder=holder)["birth_date"] == "1952-07-08"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name ="
                " 'cards_cardholder'",
                [tenant.schema_name],
            )
            columns = {row[0] for row in cursor.fetchall()}
        assert "birth_date" not in columns and "address" not in columns
        Cardholder.objects.all().delete()
