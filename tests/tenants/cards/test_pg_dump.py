"""A dump of a tenant's schema holds no plaintext ID number or phone number (only ciphertext, blind
indexes and masked forms)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import Tenant
from citycard.tenants.cards import batch
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.pii import id_number_build


def pg_dump_binary() -> str:
    """The embedded server's pg_dump (the pgserver wheel ships one), else the one on PATH."""
    try:
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("pg_dump")
    if found is None:
        pytest.skip("no pg_dump binary")
    return found


def test_pg_dump_of_a_tenant_schema_has_no_plaintext_personal_data(committed_db, tmp_path):
    tenant = Tenant.objects.filter(code="wenzhou").first() or services.tenant_create(
        code="wenzhou", division_code="330300", actor="test"
    )
    people = [
        (
            id_number_build(division="330302", birth_date=dt.date(1951, 2, 3), sequence=100 + i),
            f"1391234{i:04d}",
        )
        for i in range(5)
    ]
    with tenant_context(tenant):
        cards.schemes_seed(actor="test")
        for n, (number, phone) in enumerate(people):
            holder = cards.cardholder_register(
                name=f"温州人{n}", id_number=number, phone=phone, local_hukou=True, actor="test"
            )
            cards.card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="test")
        csv_path = tmp_path / "batch.csv"
        extra = id_number_build(division="330302", birth_date=dt.date(1990, 6, 7), sequence=7)
        csv_path.write_text(
            f"name,id_number,phone,local_hukou\n批量人,{extra},13700001234,1\n", encoding="utf-8"
        )
        assert batch.cards_import(path=csv_path, actor="test").cards_created == 1
        people.append((extra, "13700001234"))
    settings = connection.settings_dict
    params = connection.get_connection_params()
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = params["password"]
    command = [pg_dump_binary(), "--schema", tenant.schema_name, "--no-owner", "--dbname", settings["NAME"]]
    if params.get("host"):
        command += ["--host", str(params["host"])]
    if params.get("port"):
        command += ["--port", str(params["port"])]
    if params.get("user"):
        command += ["--username", params["user"]]
    dump = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert "cards_cardholder" in dump and "温州人0" in dump  # the dump does hold the cardholders
    for number, phone in people:
        assert number not in dump
        assert number[6:14] + number[14:] not in dump
        assert phone not in dump
        assert number[6:14] not in dump and f"{number[6:10]}-{number[10:12]}-{number[12:14]}" not in dump
        assert f"{number[0]}{'*' * 16}{number[-1]}" in dump  # the masked form is what is readable
