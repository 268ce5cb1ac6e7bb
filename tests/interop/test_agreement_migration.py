"""Migration 0012: an agreement that existed before versions becomes its version 1, effective 2000-01-01, with
the terms it had (the test's transaction rolls the migrations back with it)."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db


def test_existing_agreements_become_version_1_from_2000():
    executor = MigrationExecutor(connection)
    before = [("interop", "0011_cycle_resume")]
    after = [("interop", "0012_agreement_versions")]
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    Network = old_apps.get_model("platform", "RoamingNetwork")
    Agreement = old_apps.get_model("interop", "RoamingAgreement")
    network = Network.objects.get(code="yrd")
    Agreement.objects.create(
        network=network,
        service="transit",
        operator="yrd-operator",
        valid_from=dt.date(2024, 5, 1),
        issuer_fee_bps=45,
        network_fee_bps=7,
        visitor_policy="home_categories",
        cut_off=dt.time(3, 0),
        hotlist_grace_minutes=30,
    )
    with connection.cursor() as cur:  # the test's transaction: fire the deferred checks before ALTER TABLE
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new_apps = executor.loader.project_state(after).apps
    Version = new_apps.get_model("interop", "AgreementVersion")
    (v1,) = Version.objects.all()
    assert (
        v1.number,
        v1.effective_from,
        v1.issuer_fee_bps,
        v1.network_fee_bps,
        v1.visitor_policy,
        v1.cut_off,
        v1.hotlist_grace_minutes,
        v1.created_by,
    ) == (1, dt.date(2000, 1, 1), 45, 7, "home_categories", dt.time(3, 0), 30, "migration")
