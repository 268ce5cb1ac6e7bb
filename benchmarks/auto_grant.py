"""Granting an automatic entitlement to every eligible cardholder, and rebuilding the offline list, at
scale: set-based SQL against the one-by-one loop it replaced, in the same run and database.

    .venv/bin/python benchmarks/auto_grant.py [--holders 100000] [--naive 3000]

``--holders`` cardholders with a live card (a quarter of the older ones elderly, 敬老) are written in bulk.
Approving an automatic elderly-free-entry type grants the eligible in one ``INSERT … SELECT``, writes one
audit entry per grant in another (the hash chain computed in order) and adds their rows to the offline
list in SQL (``entitlement_type_approve``); the baseline runs the former loop
(per cardholder: the eligibility checks, the grant, its audit entry and its list rows) over ``--naive``
cardholders for a second, identical type, and its rate is extrapolated to all of them. The whole list is
then rebuilt from nothing and refreshed with nothing changed, in SQL and by the former Python diff, and
the full signed-list payload is built (one query).
"""

from __future__ import annotations

import argparse

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_auto_grant"


def former_full_rebuild(at) -> int:
    """The whole-list rebuild as it was before the SQL one: the wanted rows and the live rows read into
    Python sets, diffed, the changes written (kept here as the baseline)."""
    from citycard.tenants.entitlements.models import EntitlementListEntry, EntitlementListHead
    from citycard.tenants.entitlements.services import _wanted_rows

    EntitlementListHead.objects.get_or_create(pk=1)
    head = EntitlementListHead.objects.select_for_update().get(pk=1)
    wanted = _wanted_rows(None)
    live = EntitlementListEntry.objects.filter(version_removed__isnull=True, home_tenant="")
    have = {(e.card_no, e.type_code, e.valid_from, e.valid_to): e.pk for e in live}
    gone, new = set(have) - wanted, wanted - set(have)
    if not gone and not new:
        return head.version
    head.version += 1
    head.changed_at = at
    head.save(update_fields=["version", "changed_at"])
    EntitlementListEntry.objects.filter(pk__in=[have[row] for row in gone]).update(
        version_removed=head.version
    )
    EntitlementListEntry.objects.bulk_create(
        EntitlementListEntry(card_no=c, type_code=t, valid_from=f, valid_to=u, version_added=head.version)
        for c, t, f, u in sorted(new, key=lambda r: (r[0], r[1]))
    )
    return head.version


def child(args) -> None:
    import datetime as dt
    import random
    import time

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.audit.models import AuditEntry
    from citycard.platform.audit.services import audit_record_many
    from citycard.platform.models import Tenant
    from citycard.tenants.cards.models import Card, Cardholder, CardholderCategory, CardScheme
    from citycard.tenants.cards.services import schemes_seed
    from citycard.tenants.departments import services as d
    from citycard.tenants.entitlements import services as s
    from citycard.tenants.entitlements.models import Entitlement, EntitlementListEntry
    from citycard.tenants.entitlements.selectors import entitlement_list_payload
    from citycard.terminal_kit.cardno import card_number_build

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    if not Tenant.objects.filter(code="hangzhou").exists():
        services.tenant_create(code="hangzhou", division_code="330100", actor="bench")
    rng = random.Random(22)
    at = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    n = args.holders
    with tenant_context(Tenant.objects.get(code="hangzhou")):
        schemes_seed(actor="bench")
        scheme = CardScheme.objects.get(code="01")
        d.department_create(code="hz-parks", kind="culture_tourism", name="杭州市园文局", actor="bench")
        d.service_point_create(
            department="hz-parks",
            code="west-lake-gate",
            name="西湖",
            address="北山街",
            hours="6-22",
            services=["entry"],
            actor="bench",
        )
        started = time.perf_counter()
        now = timezone.now()
        holders = Cardholder.objects.bulk_create(
            Cardholder(
                name="王小明",
                id_cipher=b"bench",
                id_blind=f"bench-{i}",
                id_masked="3****************4",
                key_id="bench",
                birth_decade=rng.choice(range(1930, 2020, 10)),
                sex="F",
                local_hukou=rng.random() < 0.9,
                created_at=now,
                created_by="bench",
            )
            for i in range(n)
        )
        CardholderCategory.objects.bulk_create(
            CardholderCategory(cardholder=h, code="elderly", valid_from=dt.date(2020, 1, 1))
            for h in holders
            if h.birth_decade <= 1960 and rng.random() < 0.6
        )
        Card.objects.bulk_create(
            Card(
                card_no=card_number_build(division="330100", scheme="01", serial=i + 1),
                scheme=scheme,
                cardholder=h,
                is_main=True,
                state="active",
                applied_at=now,
                issued_at=now,
                activated_at=now,
            )
            for i, h in enumerate(holders)
        )
        eligible = CardholderCategory.objects.count()
        print(
            f"{n:,} cardholders with a live card, {eligible:,} elderly, written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for code in ("elderly-free-entry", "elderly-free-entry-loop"):
            s.entitlement_type_create(
                role="city_admin",
                code=code,
                name="老年人免费入园",
                department="hz-parks",
                categories=["elderly"],
                service_points=["west-lake-gate"],
                auto_grant=True,
                actor="bench",
                at=at,
            )

        t0 = time.perf_counter()
        s.entitlement_type_approve(code="elderly-free-entry", actor="bench", role="city_admin", at=at)
        sql_s = time.perf_counter() - t0
        granted = Entitlement.objects.filter(type__code="elderly-free-entry").count()
        rows = EntitlementListEntry.objects.filter(version_removed__isnull=True).count()
        audited = AuditEntry.objects.filter(action="entitlement.grant").count()
        print(
            f"auto-grant, set-based (INSERT … SELECT + one audit entry a grant + list rows in SQL): "
            f"{granted:,} granted, {audited:,} audit entries, {rows:,} list rows in {sql_s:.2f} s "
            f"({granted / sql_s:,.0f} grants/s)"
        )

        # What the per-grant audit entries cost alone: as many again, in a transaction rolled back.
        with transaction.atomic():
            t0 = time.perf_counter()
            audit_record_many(
                action="bench.audit",
                actor="bench",
                object_type="cardholder",
                entries=[(i, {"type": "elderly-free-entry", "source": "auto"}) for i in range(granted)],
            )
            audit_s = time.perf_counter() - t0
            transaction.set_rollback(True)
        print(
            f"  of which the audit entries (hash chain + one INSERT … SELECT), measured alone: {audit_s:.2f} s "
            f"for {granted:,}"
        )

        # The former loop, on the second type, over the first --naive cardholders.
        kind = s._type("elderly-free-entry-loop")
        with transaction.atomic():
            kind.status = "approved"
            kind.save(update_fields=["status"])
            sample = list(Cardholder.objects.order_by("pk")[: args.naive])
            t0 = time.perf_counter()
            looped = sum(bool(s._auto_grant_one(kind, h, actor="bench", at=at)) for h in sample)
            loop_s = time.perf_counter() - t0
        rate = len(sample) / loop_s
        print(
            f"auto-grant, former loop: {len(sample):,} cardholders ({looped:,} granted) in {loop_s:.2f} s = "
            f"{rate:,.0f} cardholders/s; extrapolated to {n:,}: {n / rate:.0f} s "
            f"(set-based {n / rate / sql_s:.0f}x faster)"
        )

        def rebuild(label, apply):
            with transaction.atomic():
                EntitlementListEntry.objects.all().delete()
                t0 = time.perf_counter()
                apply()
                built = time.perf_counter() - t0
                live = EntitlementListEntry.objects.filter(version_removed__isnull=True).count()
                t0 = time.perf_counter()
                apply()
                same = time.perf_counter() - t0
            print(
                f"list rebuild, {label}: from nothing {built:.2f} s ({live:,} rows); nothing changed {same:.2f} s"
            )

        rebuild("SQL (two statements)", lambda: s._list_apply(holder_ids=None, at=at))
        rebuild("former Python diff", lambda: former_full_rebuild(at))
        connection.queries_log.clear()
        t0 = time.perf_counter()
        payload = entitlement_list_payload()
        print(
            f"full list payload (one query): {len(payload['entries']):,} rows in {time.perf_counter() - t0:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--holders", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=3000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
