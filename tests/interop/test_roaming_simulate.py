"""`citycard roaming simulate`: a network's day through real terminals, uploads, verification and clearing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

DAY = dt.date(2026, 11, 21)


def simulate(*extra: str) -> str:
    out = io.StringIO()
    call_command("roaming", "simulate", "--network", "yrd", "--date", DAY.isoformat(), *extra, stdout=out)
    return out.getvalue()


def stored(code: str) -> list[tuple[str, str, int]]:
    from citycard.platform.models import Tenant
    from citycard.tenants.terminals.models import Transaction

    with tenant_context(Tenant.objects.get(code=code)):
        return list(
            Transaction.objects.filter(terminal_id=f"SIM-YRD-{code.upper()}").values_list(
                "issuer", "routing", "amount_fen"
            )
        )


@pytest.fixture
def simulator_dir(settings, tmp_path):
    settings.SIMULATOR_DIR = tmp_path / "simulator"  # its terminal keys, PSAMs, queues and card wallet
    return settings.SIMULATOR_DIR


@pytest.mark.django_db
def test_a_day_of_roaming_is_stored_by_the_acquirers_and_clears_with_every_record_valid(
    yrd_transit, simulator_dir
):
    from citycard.interop.models import ClearingRecord, CycleState
    from citycard.interop.services.cycles import cycle_get_or_create

    out = simulate("--taps", "45", "--cards", "4", "--seed", "7")
    taps = {code: stored(code) for code in ("shanghai", "hangzhou", "jiaxing")}
    assert all(taps.values()), taps  # every member city's bus took visitors
    # Visitors only: a card never rides in its own city; each stored tap was routed to its issuer.
    divisions = {"shanghai": "310000", "hangzhou": "330100", "jiaxing": "330400"}
    for code, rows in taps.items():
        assert {issuer for issuer, _, _ in rows} <= set(divisions.values()) - {divisions[code]}
        assert {routing for _, routing, _ in rows} == {"roaming"}
    total = sum(len(rows) for rows in taps.values())
    assert 0 < total <= 45
    fen = sum(amount for rows in taps.values() for _, _, amount in rows)
    assert f"¥{fen / 100:,.2f}" in out and "hangzhou" in out and "jiaxing" in out
    assert "金额（元）" in out  # the headers read in Chinese first
    # The terminals' keys, PSAMs and queues, and the cards' counters, are kept for the next run.
    assert {p.name for p in simulator_dir.iterdir()} >= {"cards-yrd.json", "SIM-YRD-JIAXING.key.json"}

    # Clearing the day: every record reached the cycle and passes the issuers' validation (TAC, card known).
    call_command("clearing", "collect", stdout=io.StringIO())
    call_command(
        "clearing",
        "run",
        "--network",
        "yrd",
        "--service",
        "transit",
        "--date",
        DAY.isoformat(),
        stdout=io.StringIO(),
    )
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    records = ClearingRecord.objects.filter(cycle=cycle)
    assert records.count() == total
    # Validation writes only rejections: none, so every record is valid and the cycle settled.
    assert list(records.filter(status="rejected").values_list("reason", "reason_message")) == []
    cycle.refresh_from_db()
    assert cycle.state == CycleState.SETTLED


@pytest.mark.django_db
@pytest.mark.usefixtures("english")
def test_running_a_day_again_is_refused_unless_again_which_adds_new_rides(yrd_transit, simulator_dir):
    simulate("--taps", "12", "--cards", "3", "--seed", "1")
    first = {code: stored(code) for code in ("shanghai", "hangzhou", "jiaxing")}
    count = sum(map(len, first.values()))
    with pytest.raises(CommandError, match=rf"already has {count} simulated taps on {DAY}: nothing done"):
        simulate("--taps", "12", "--cards", "3", "--seed", "1")
    assert {code: stored(code) for code in first} == first
    out = simulate("--taps", "12", "--cards", "3", "--seed", "1", "--again")
    assert f"added to the {count} taps earlier runs stored" in out
    again = sum(len(stored(code)) for code in first)
    assert count < again <= count + 12  # new taps: the cards' counters and terminal sequences carried on


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "xyz", "--date", "2026-11-21"], "network xyz does not exist"),
        (["--network", "yrd", "--date", "21/11/2026"], "--date '21/11/2026' is not a date: give YYYY-MM-DD"),
        (["--network", "yrd", "--date", "2099-01-01"], "2099-01-01 is in the future"),
        (["--network", "yrd", "--date", "2026-11-21", "--taps", "0"], "--taps must be between 1 and 100000"),
    ],
)
@pytest.mark.usefixtures("english")
def test_refusals_are_one_line_and_write_nothing(args, message, simulator_dir):
    with pytest.raises(CommandError, match=message):
        call_command("roaming", "simulate", *args, stdout=io.StringIO())
    assert stored("jiaxing") == []


@pytest.mark.django_db
def test_an_issuers_card_list_and_test_keys_ride_citycard_terminal_simulate_and_clear_valid(
    yrd_transit, tmp_path, capsys
):
    """Jiaxing imports cards and exports its test-card keys; a Hangzhou bus (citycard-terminal simulate) takes
    their rides of the day; the batch goes through Hangzhou's ingestion; Jiaxing validates every record."""
    import json
    import stat

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from citycard.interop.models import ClearingRecord
    from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
    from citycard.interop.services.messages import outboxes_collect
    from citycard.platform.audit.models import AuditEntry
    from citycard.platform.models import Tenant
    from citycard.tenants.cards.pii import id_number_build
    from citycard.tenants.cards.services import schemes_seed
    from citycard.tenants.terminals.ingest import batch_ingest
    from citycard.tenants.terminals.services import terminal_register
    from citycard.tenants.terminals.tasks import batches_verify_all
    from citycard.terminal_kit.__main__ import main
    from citycard.terminal_kit.signing import public_key_bytes
    from citycard.terminal_kit.store import TapStore

    jiaxing, hangzhou = Tenant.objects.get(code="jiaxing"), Tenant.objects.get(code="hangzhou")
    with tenant_context(jiaxing):
        schemes_seed(actor="test")
    people = tmp_path / "people.csv"
    people.write_text(
        "name,id_number,scheme,local_hukou\n"
        + "".join(
            f"乘客{n},{id_number_build(division='330402', birth_date=dt.date(1980, 1, n), sequence=900 + n)},01,1\n"
            for n in range(1, 6)
        ),
        encoding="utf-8",
    )
    cards = tmp_path / "people.cards.csv"
    call_command(
        "cards", "--tenant", "jiaxing", "import", str(people), "--state", "active", stdout=io.StringIO()
    )
    keys = tmp_path / "jiaxing-test-keys.json"
    call_command("cards", "--tenant", "jiaxing", "test-keys", "--out", str(keys), stdout=io.StringIO())
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert json.loads(keys.read_text())["divisions"][0] == "330400"
    with tenant_context(jiaxing):
        assert AuditEntry.objects.filter(action="card.test_keys_export").count() == 1

    queue = tmp_path / "bus"
    argv = [
        "--lang",
        "en",
        "--tenant",
        "hangzhou",
        "simulate",
        "--card-list",
        str(cards),
        "--issuer-keys",
        str(keys),
    ]
    assert main([*argv, "--date", DAY.isoformat(), "--taps", "12", "--queue", str(queue)]) == 0
    out = capsys.readouterr().out
    assert f"12 taps of 5 cards on {DAY} (Beijing time)" in out
    store = TapStore(queue / "taps.sqlite")
    complete = store.taps("complete")
    assert len(complete) == 12 and {t.record["tapped_at"][:10] for t in complete} == {DAY.isoformat()}

    key = Ed25519PrivateKey.generate()
    with tenant_context(hangzhou):
        terminal_register(
            terminal_id="HZ-SIM-0001",
            operator="杭州公交",
            department="transport",
            service="bus",
            route="151",
            public_key=public_key_bytes(key),
            actor="test",
        )
        document = store.batch_open(
            terminal_id="HZ-SIM-0001",
            tenant="hangzhou",
            key=key,
            key_id="HZ-SIM-0001:k1",
            rule_version=0,
            hotlist_version=0,
        )
        result = batch_ingest(tenant=hangzhou, body=json.dumps(document, ensure_ascii=False).encode())
    assert (result.accepted, result.rejected) == (12, 0)
    batches_verify_all()
    outboxes_collect()
    cycle = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY),
        now=dt.datetime.combine(
            DAY + dt.timedelta(days=1), dt.time(5), tzinfo=dt.timezone(dt.timedelta(hours=8))
        ),
    )
    records = ClearingRecord.objects.filter(cycle=cycle, issuer="jiaxing")
    assert records.count() == 12
    assert list(records.filter(status="rejected").values_list("reason", flat=True)) == []

    # A second day with the same cards: their counters carry on (kept next to the queue), none replayed.
    assert (
        main(
            [*argv, "--date", (DAY + dt.timedelta(days=1)).isoformat(), "--taps", "5", "--queue", str(queue)]
        )
        == 0
    )
    counters = [(t.record["card_no"], t.record["card_counter"]) for t in store.taps("complete")]
    assert len(counters) == len(set(counters)) == 17
