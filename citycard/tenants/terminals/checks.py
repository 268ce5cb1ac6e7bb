"""What happens to the new taps of a batch after they are stored: checks that flag, and the roaming router.

Every check takes a context and *all* the taps it is given at once and returns review flags, so a check
costs a fixed number of queries whatever the number of taps (no per-row queries: query counts are
asserted in tests). A check that raises fails its whole transaction (nothing written), so a check must
flag, never raise, for a bad tap. Two lists run, in order (see docs/ingestion.md, "Verification"):

``BATCH_CHECKS`` — the batch's own data, no query; they run in the upload, before the acknowledgement:

* ``clock_skew_check``, ``terminal_seq_gap_check``.

``STORED_CHECKS`` — against what the tenant has stored (cards, hotlist, e-purse shadows, fare rules, card
histories); they run in the verification stage (``verify.batches_verify``: after the upload commits,
over many batches at once; or inside the upload itself when ``TERMINAL_VERIFY = "inline"``):

* ``card_counter_gap_check`` — the card's next lower counter stored (through the card-history index);
  chip taps only: a citizen-code ride has no chip counter;
* ``code_check`` — citizen-code rides: the code the terminal scanned checked again (``code_*`` flags);
* ``tac_check`` — own cards: the TAC recomputed with the issuer's card TAC master from the key vault,
  flag ``tac_invalid``; a torn tap the terminal could not prove (``torn_unproven``: the card's log record
  stands in the TAC field; ``torn_undecided``: nothing does) is flagged ``unproven`` for settlement instead;
* ``fare_recheck`` — ``citycard.tenants.fares`` replays each card's taps through the rules published at
  ``tap.tapped_at``; an amount that differs → flag ``fare_mismatch`` (the tap stays accepted);
* ``hotlist_check`` — own cards hotlisted at the tap (``terminal_kit.hotlist.hotlisted``: listed at least
  ``CITYCARD_HOTLIST_GRACE_MINUTES`` before it, not removed by it) → flag ``hotlisted`` with
  ``{"listed_at", "reason"}``;
* ``purse_shadow_follow`` — own cards: the e-purse shadow follows each card's taps in counter order;
  flag ``shadow_divergence`` when ``balance_before_fen`` differs from the shadow.

A ride paid by the electronic citizen code (fare medium ``04``, 电子市民码: ``paid_online``) wrote no chip:
it carries no card TAC, no card counter and moves no e-purse, so ``tac_check``, ``card_counter_gap_check``
and ``purse_shadow_follow`` leave it alone, and a chip tap's previous counter is never read from one. What
proves it is the code (``Tap.code``), which ``code_check`` verifies again with its issuer's published keys;
its nonce, not a card counter, makes it once. Its fare is charged to the cardholder's online account or
deferred onto their credit line afterwards (``citycard.tenants.credit.services.online_fares_book``), only
if no ``code_*`` flag holds it.

Roaming: ``ROAMING_SINK`` (below) is the one place the interop outbox is wired in.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from citycard.platform.keys import tenant_card_tac_master, tenant_public_keys
from citycard.platform.models import Tenant
from citycard.platform.selectors import networks_shared, tenant_by_division
from citycard.tenants.accounts.services import PurseMovement, purse_shadow_apply
from citycard.tenants.cards.selectors import taps_hotlisted
from citycard.tenants.terminals.journeys import journeys_record
from citycard.tenants.terminals.recheck import fare_check
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import issuer_purchase_tac_ok
from citycard.terminal_kit.ecode import CodeIssuer, CodeRefused, EcodeVerifier
from citycard.terminal_kit.hotlist import grace_minutes
from citycard.terminal_kit.recovery import LogEntry

# --- the data checks see --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchContext:
    tenant: Tenant  # the tenant whose schema and terminal took the taps
    acquirer: Tenant  # who clears them: the tenant, or its city for a county
    terminal_pk: int
    terminal_id: str
    terminal_last_seq: int | None  # highest sequence received before this batch
    batch_pk: int
    batch_id: str
    received_at: dt.datetime
    terminal_clock: dt.datetime  # the batch's created_at
    rule_version: int
    hotlist_version: int
    # Every sequence number of the batch's valid taps (duplicates too); a rejected tap's is not taken.
    all_terminal_seqs: tuple[int, ...] = ()
    card_tac_key: Any = None  # the acquirer's card TAC key row, when the upload read it already
    latest_tap: dt.datetime | None = None  # the latest tapped_at among the batch's valid taps, when known


@dataclass(slots=True)
class Tap:
    """One newly stored transaction (duplicates and rejected taps never reach the checks)."""

    index: int
    card_no: str
    issuer: str
    card_counter: int
    terminal_seq: int
    amount_fen: int
    balance_before_fen: int
    balance_after_fen: int
    tapped_at: dt.datetime
    service: str
    route: str
    tac: str
    terminal_no: str
    algorithm: int
    kind: str
    status: str
    card_scheme: str
    categories: list[str]
    fare_rule_id: str
    routing: str = ""
    issuer_tenant: str = ""
    network: str = ""
    tx_id: int = 0
    passes: list[str] = field(default_factory=list)  # transit passes the fare was priced with
    tapped_at_text: str = ""  # tapped_at in ISO 8601 (as sent, when already in that form)
    terminal_id: str = ""  # the registered terminal that uploaded it
    batch_pk: int = 0  # the stored batch it came in
    # The next lower card counter stored for the card (None: the card's first) once the counter-gap
    # check has looked it up; NOT_PROBED before.
    prev_counter: int | None = -1
    card_trip: str = ""  # the transit record the card gave before the tap (hex), when the terminal sent it
    code: str = ""  # a ride paid by the citizen code: the code the terminal scanned (terminal_kit.ecode)


NOT_PROBED = -1  # Tap.prev_counter not looked up yet (counters are never negative)
ONLINE_MEDIA = frozenset({"04"})  # fare media paid online: the electronic citizen code (电子市民码)


def paid_online(tap: Tap) -> bool:
    """A ride paid by the citizen code: no chip was debited, the fare is owed from the online account."""
    return tap.card_scheme in ONLINE_MEDIA


@dataclass(frozen=True)
class Flag:
    tap: Tap
    code: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredContext:
    """What the stored-data checks need: whose schema, who clears, and the clearing tenant's card TAC key
    row when the caller read it already (else the check reads the key vault)."""

    tenant: Tenant
    acquirer: Tenant
    card_tac_key: Any = None


Check = Callable[[BatchContext, Sequence[Tap]], Iterable[Flag]]
StoredCheck = Callable[[StoredContext, Sequence[Tap]], Iterable[Flag]]


_CARD_AMOUNT_MAX = 0xFFFF_FFFF  # the amount field of a purchase on the card (4 bytes)

# --- built-in checks ---------------------------------------------------------------------------------


def max_clock_skew() -> dt.timedelta:
    return dt.timedelta(seconds=settings.TERMINAL_MAX_CLOCK_SKEW_S)


def clock_skew_check(ctx: BatchContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Terminal clock vs received time beyond the threshold: every tap of the batch is flagged (its
    tapped_at is suspect); a tap stamped after the batch was received is flagged on its own."""
    limit = max_clock_skew()
    skew = ctx.terminal_clock - ctx.received_at
    if abs(skew) > limit:
        detail = {"skew_s": int(skew.total_seconds()), "limit_s": int(limit.total_seconds())}
        return [Flag(tap, "clock_skew", detail) for tap in taps]
    latest = ctx.received_at + limit
    if ctx.latest_tap is not None and ctx.latest_tap <= latest:
        return []  # no tap of the batch is stamped beyond the limit
    return [
        Flag(tap, "clock_skew", {"future_s": int((tap.tapped_at - ctx.received_at).total_seconds())})
        for tap in taps
        if tap.tapped_at > latest
    ]


def terminal_seq_gap_check(ctx: BatchContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Sequence numbers the terminal skipped (after its previous high-water mark and inside the batch).

    A late tap below the high-water mark is not a gap (it fills one). A rejected tap counts as nothing:
    a number only it carried is missing (the tap is in the exceptions table), and a wild one (2**62) can
    silence no gap."""
    previous = ctx.terminal_last_seq
    # The usual batch: its sequence numbers run on without a hole from the high-water mark (or from below
    # it). Told in C, without a Python step per tap.
    carried = set(ctx.all_terminal_seqs)
    if (
        carried
        and (previous is None or min(carried) <= previous + 1)
        and max(carried) - min(carried) + 1 == len(carried)
        and carried.issuperset([t.terminal_seq for t in taps])
    ):
        return []
    by_seq = {tap.terminal_seq: tap for tap in taps}
    seqs = sorted(carried | by_seq.keys())
    flags = []
    for seq in seqs:
        if previous is not None and seq > previous + 1 and seq in by_seq:
            flags.append(Flag(by_seq[seq], "terminal_seq_gap", {"missing": [previous + 1, seq - 1]}))
        if previous is None or seq > previous:
            previous = seq
    return flags


# For each tap, its card's next lower counter stored, in one statement. The quick probe reads the card's
# tap just before it in time (the card-history index, newest partition first, stopping at the first row):
# counters rise with time, so that is almost always counter - 1, and then it is the answer. Otherwise
# (the card's first tap, a clock set back, a lost tap) the exact maximum below the counter is read. A
# citizen-code ride (fare medium 04, ONLINE_MEDIA) is no chip transaction: never a previous counter.
_PREVIOUS_COUNTER_SQL = """
SELECT s.i,
       CASE WHEN q.counter = s.counter - 1 THEN q.counter
            ELSE (SELECT max(t.card_counter) FROM terminals_transaction t
                   WHERE t.card_no = s.card_no AND t.card_counter < s.counter
                     AND t.card_scheme <> '04') END
  FROM unnest(%s::int[], %s::text[], %s::bigint[], %s::timestamptz[]) AS s(i, card_no, counter, at)
  LEFT JOIN LATERAL (
       SELECT t.card_counter AS counter FROM terminals_transaction t
        WHERE t.card_no = s.card_no AND t.tapped_at < s.at AND t.card_scheme <> '04'
        ORDER BY t.tapped_at DESC, t.id DESC LIMIT 1) q ON true"""


def card_counter_gap_check(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Card transaction counters skipped: the next lower counter stored for the card is not counter − 1.

    One query for all the taps (``_PREVIOUS_COUNTER_SQL``), over the taps stored when the check runs (a
    caller that knows ``Tap.prev_counter`` already saves it). The first tap ever seen of a card is not a
    gap; a counter that arrived late (from another terminal) before the check ran fills one."""
    taps = [t for t in taps if not paid_online(t)]  # no chip, no counter: code_check makes them once
    unprobed = [i for i, t in enumerate(taps) if t.prev_counter == NOT_PROBED]
    if unprobed:
        with connection.cursor() as cur:
            cur.execute(
                _PREVIOUS_COUNTER_SQL,
                [
                    unprobed,
                    [taps[i].card_no for i in unprobed],
                    [taps[i].card_counter for i in unprobed],
                    [taps[i].tapped_at for i in unprobed],
                ],
            )
            for i, prev in cur.fetchall():
                taps[i].prev_counter = prev
    return [
        Flag(tap, "card_counter_gap", {"missing": [tap.prev_counter + 1, tap.card_counter - 1]})
        for tap in taps
        if tap.prev_counter is not None and tap.prev_counter < tap.card_counter - 1
    ]


def tac_valid(*, master: bytes, tap: Tap) -> bool:
    """Whether ``tap``'s TAC is what the card computes, recomputed by the issuer, for a purchase or a
    composite purchase (``issuer_purchase_tac_ok``). Date and time are the terminal's Beijing-time clock,
    as the card saw them in DEBIT FOR PURCHASE."""
    local = tap.tapped_at.astimezone(BEIJING)
    tail = (
        bytes.fromhex(tap.terminal_no)
        + (tap.terminal_seq & 0xFFFFFFFF).to_bytes(4, "big")
        + bytes.fromhex(
            f"{local.year:04d}{local.month:02d}{local.day:02d}{local.hour:02d}{local.minute:02d}{local.second:02d}"
        )
    )
    try:
        tac, head = bytes.fromhex(tap.tac), tap.amount_fen.to_bytes(4, "big")
    except (ValueError, OverflowError):
        return False
    return issuer_purchase_tac_ok(master, tap.card_no, tap.algorithm, tac, amount_type_free=(head, tail))


UNPROVEN_STATUSES = frozenset({"torn_unproven", "torn_undecided"})


def unproven_detail(tap: Tap) -> dict[str, Any]:
    """What the terminal knew of a torn tap it could not prove: the card's log record of the debit
    (``torn_unproven``, 23 bytes where the TAC would be) or nothing (``torn_undecided``)."""
    detail: dict[str, Any] = {"status": tap.status, "card_log": None}
    if tap.status == "torn_unproven" and len(tap.tac) == 46:
        entry = LogEntry.parse(bytes.fromhex(tap.tac))
        detail["card_log"] = {
            "card_counter": entry.atc,
            "amount_fen": entry.amount,
            "type": entry.kind,
            "terminal_no": entry.terminal_no.hex(),
            "at": f"{entry.date.hex()}T{entry.time.hex()}",
        }
    return detail


def tac_check(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Own cards: the TAC must be what the card computes under the issuer's key (the tenant's, or its
    city's for a county). One key-vault query per batch; a mismatch is flagged ``tac_invalid`` for review,
    never dropped (the card was debited whatever the record says)."""
    own = [tap for tap in taps if tap.routing == "own" and not paid_online(tap)]
    if not own:
        return []
    master = tenant_card_tac_master(tenant=ctx.acquirer, key=ctx.card_tac_key)
    flags = []
    for tap in own:
        if tap.status in UNPROVEN_STATUSES:
            flags.append(Flag(tap, "unproven", unproven_detail(tap)))
            continue
        if tap.amount_fen > _CARD_AMOUNT_MAX:  # no card signed it: the TAC covers a 4-byte amount
            flags.append(Flag(tap, "tac_invalid", {"tac": tap.tac}))
            continue
        if not tac_valid(master=master, tap=tap):
            flags.append(Flag(tap, "tac_invalid", {"tac": tap.tac}))
    return flags


# What a clerk reads for a citizen-code ride whose code does not hold (platform.reasons.REVIEW_FLAGS); the
# code's own refusal (terminal_kit.ecode.CodeRefused.code) is kept in the flag's detail.
CODE_MISSING = "code_missing"
CODE_INVALID = "code_invalid"
CODE_EXPIRED = "code_expired"
CODE_OTHER_CARD = "code_other_card"
CODE_REPLAYED = "code_replayed"
CODE_FLAGS = frozenset({CODE_MISSING, CODE_INVALID, CODE_EXPIRED, CODE_OTHER_CARD, CODE_REPLAYED})
_CODE_REFUSALS = {"expired": CODE_EXPIRED, "not_yet_valid": CODE_EXPIRED}  # any other refusal: invalid


def code_issuers(*, tenant_codes: Iterable[str], moments: Iterable[dt.datetime]) -> list[CodeIssuer]:
    """The tenants named as citizen-code issuers, each with its signing keys that verify at any of
    ``moments`` (a key rotated between two rides verifies the rides of its time): what the tenant publishes
    to terminals (``tenants.entitlements.acceptance.code_issuer``). One query, and one per issuer and moment."""
    wanted, at = set(tenant_codes), sorted(set(moments))
    if not wanted or not at:
        return []
    issuers = []
    for tenant in Tenant.objects.filter(code__in=wanted).order_by("code"):
        keys: dict[str, bytes] = {}
        for moment in (at[0], at[-1]):
            keys.update(tenant_public_keys(tenant=tenant, at=moment))
        if keys:
            issuers.append(CodeIssuer(tenant.code, frozenset({tenant.division_code}), keys))
    return issuers


def code_verdicts(
    rides: Sequence[tuple[str, str, str, dt.datetime]], issuers: Iterable[CodeIssuer]
) -> list[tuple[str, dict[str, Any]] | dict[str, Any]]:
    """For each ride (code, card number, issuer tenant, tapped at): the code's payload when it proves the
    ride — signed by the card's issuer with a key it published, for this card, the ride within the code's
    validity (iat .. exp, ``ecode.CLOCK_ALLOWANCE_S`` either way) — else (flag code, detail). No query:
    nonces are claimed by the caller (``code_nonces_claim``)."""
    verifier = EcodeVerifier(issuers=issuers, store=None)
    out: list[tuple[str, dict[str, Any]] | dict[str, Any]] = []
    for code, card_no, issuer_tenant, tapped_at in rides:
        if not code:
            out.append((CODE_MISSING, {}))
            continue
        try:
            payload = verifier.check(code, at=tapped_at.timestamp())
        except CodeRefused as exc:
            out.append(
                (_CODE_REFUSALS.get(exc.code, CODE_INVALID), {"refusal": exc.code, "message": str(exc)})
            )
            continue
        if payload["tenant"] != issuer_tenant:
            out.append((CODE_INVALID, {"refusal": "foreign_signer", "signer": payload["tenant"]}))
        elif payload["card_no"] != card_no:
            out.append((CODE_OTHER_CARD, {"code_card_no": payload["card_no"]}))
        else:
            out.append(payload)
    return out


def code_nonces_claim(claims: Sequence[tuple[str, str, str, str]], *, at: dt.datetime) -> dict[int, str]:
    """Spend codes (issuer, nonce, claimant, card number) in this tenant's ``terminals_codenonce``: the
    index of each claim whose code another claimant spent first (the first claimant's name). A claim made
    again by the same claimant is no replay; of two claims of one nonce in one call, the first in order
    wins. Two statements at most, whatever the number."""
    if not claims:
        return {}
    issuers, nonces, claimants, cards = (list(col) for col in zip(*claims, strict=True))
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO terminals_codenonce (issuer, nonce, claimed_by, card_no, claimed_at)"
            " SELECT i, n, c, k, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
            " WITH ORDINALITY AS s(i, n, c, k, o) ORDER BY o ON CONFLICT (issuer, nonce) DO NOTHING",
            [at, issuers, nonces, claimants, cards],
        )
        cur.execute(
            "SELECT s.o - 1, k.claimed_by FROM unnest(%s::text[], %s::text[], %s::text[])"
            " WITH ORDINALITY AS s(i, n, c, o)"
            " JOIN terminals_codenonce k ON k.issuer = s.i AND k.nonce = s.n WHERE k.claimed_by <> s.c",
            [issuers, nonces, claimants],
        )
        return dict(cur.fetchall())


def code_check(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Citizen-code rides (fare medium 04): the code the terminal scanned must prove the ride, checked
    again here with the issuer's published keys (``code_verdicts``), and its nonce is spent once across
    every terminal (``code_nonces_claim``): the second ride on a code is ``code_replayed``, whichever
    terminal took it. A flagged ride is not charged (``credit.services.online_fares_book``). A roaming
    card's ride is checked with its home city's keys, and checked again by the home city when it
    validates the clearing record. A fixed number of queries per issuer."""
    rides = [t for t in taps if paid_online(t)]
    if not rides:
        return []
    issuers = code_issuers(
        tenant_codes={t.issuer_tenant for t in rides if t.issuer_tenant}, moments=[t.tapped_at for t in rides]
    )
    verdicts = code_verdicts([(t.code, t.card_no, t.issuer_tenant, t.tapped_at) for t in rides], issuers)
    flags, proven = [], []
    for tap, verdict in zip(rides, verdicts, strict=True):
        if isinstance(verdict, tuple):
            flags.append(Flag(tap, *verdict))
        else:
            proven.append((tap, verdict))
    replayed = code_nonces_claim(
        [(p["tenant"], p["nonce"], f"tap:{tap.tx_id}", tap.card_no) for tap, p in proven],
        at=timezone.now(),
    )
    for i, first in sorted(replayed.items()):
        tap, payload = proven[i]
        flags.append(Flag(tap, CODE_REPLAYED, {"nonce": payload["nonce"], "first": first}))
    return flags


def journey_pairing(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Not a check: metro entry and exit taps are paired into journeys here, in the same transaction as the
    checks (citycard.tenants.terminals.journeys). Flags nothing."""

    journeys_record(tenant=ctx.tenant, taps=taps)
    return []


def fare_recheck(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Amount differs from what the rules published for that time give: ``fare_mismatch`` (the tap
    stays accepted). Fixed queries whatever the number of taps; see citycard.tenants.terminals.recheck."""
    return [Flag(tap, "fare_mismatch", detail) for tap, detail in fare_check(tenant=ctx.tenant, taps=taps)]


# --- routing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where the taps of one issuer go: own (cleared at home), roaming (to the issuer through a network),
    or held (an exception with a reason)."""

    routing: str
    issuer_tenant: str = ""
    network: str = ""
    reason: str = ""
    message: str = ""


_route_cache: dict[tuple[int, str, dt.date], tuple[float, Route]] = {}
ROUTE_CACHE_SECONDS = 60.0


def route_cache_clear() -> None:
    _route_cache.clear()


def route_for(*, acquirer: Tenant, issuer: str, on: dt.date) -> Route:
    """Route the taps of cards issued by division ``issuer`` taken by ``acquirer`` (a city, or a county
    clearing as its city) on local date ``on``. Cached for a minute per (acquirer, issuer, day) so a batch
    costs no query for issuers seen recently."""
    key = (acquirer.pk, issuer, on)
    hit = _route_cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < ROUTE_CACHE_SECONDS:
        return hit[1]
    route = _route_uncached(acquirer=acquirer, issuer=issuer, on=on)
    _route_cache[key] = (now, route)
    return route


def _route_uncached(*, acquirer: Tenant, issuer: str, on: dt.date) -> Route:
    if issuer == acquirer.division_code:
        return Route("own", issuer_tenant=acquirer.code)
    owner = tenant_by_division(issuer)
    if owner is None or owner.is_platform:
        return Route("held", reason="unknown_issuer", message=f"no tenant issues cards with prefix {issuer}")
    issuer_tenant = owner.clearing_tenant
    if issuer_tenant.pk == acquirer.pk:
        return Route("own", issuer_tenant=acquirer.code)
    shared = list(networks_shared(a=acquirer, b=issuer_tenant, on=on).values_list("code", flat=True))
    if not shared:
        return Route(
            "held",
            issuer_tenant=issuer_tenant.code,
            reason="issuer_not_in_shared_network",
            message=f"{issuer_tenant.code} shares no roaming network with {acquirer.code} on {on}",
        )
    return Route("roaming", issuer_tenant=issuer_tenant.code, network=shared[0])


# --- the interop outbox -----------------------------------------------------------------------------

# ``ROAMING_SINK(records, actor, signing_key=…)`` puts clearing records into this tenant's interop outbox, inside the
# ingestion transaction: ``citycard.tenants.exchange`` wires ``outbox_put_clearing_records`` here when its
# app loads (one signed envelope per upload, a fixed number of queries). Taps stored while no sink was
# wired stay ``outbox_state = "pending"`` and ``services.roaming_pending_handoff`` delivers them.
RoamingSink = Callable[..., Any]  # (records, actor, *, signing_key: TenantKey | None = None)
ROAMING_SINK: RoamingSink | None = None


def clearing_record(*, ctx_acquirer: str, batch_id: str, terminal_id: str, tap: Tap) -> dict[str, Any]:
    """The clearing record of a roaming tap, as the acquirer sends it to the issuer (清算记录)."""
    return {
        "acquirer": ctx_acquirer,
        "issuer": tap.issuer_tenant,
        "network": tap.network,
        "source_tx_id": tap.tx_id,
        "batch_id": batch_id,
        "terminal_id": terminal_id,
        "terminal_seq": tap.terminal_seq,
        "card_no": tap.card_no,
        "card_counter": tap.card_counter,
        "amount_fen": tap.amount_fen,
        "balance_before_fen": tap.balance_before_fen,
        "balance_after_fen": tap.balance_after_fen,
        "tapped_at": tap.tapped_at.isoformat(),
        "service": tap.service,
        "route": tap.route,
        "tac": tap.tac,
        "terminal_no": tap.terminal_no,
        "algorithm": tap.algorithm,
        "kind": tap.kind,
        "status": tap.status,
        "card_scheme": tap.card_scheme,
        "passes": tap.passes,
        "fare_rule_id": tap.fare_rule_id,
        # a citizen-code ride: the code, which the issuer checks again before it books the fare
        **({"code": tap.code} if paid_online(tap) else {}),
    }


# --- checks against the tenant's cards and accounts (citycard.tenants.cards / .accounts) ---------------


def hotlist_grace() -> dt.timedelta:
    """How long after a card goes on the hotlist its taps are still accepted unflagged: the time a
    terminal may take to download the new list (``CITYCARD_HOTLIST_GRACE_MINUTES``, default 30)."""
    return grace_minutes(settings.HOTLIST_GRACE_MINUTES)


def hotlist_check(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Own cards hotlisted at the tap (the one rule, with ``hotlist_grace``) → ``hotlisted``. One query."""
    own = [t for t in taps if t.routing == "own"]
    grace = hotlist_grace()
    found = taps_hotlisted(taps=[(t.card_no, t.tapped_at, grace) for t in own])
    return [
        Flag(own[i], "hotlisted", {"listed_at": listed_at.isoformat(), "reason": reason})
        for i, (listed_at, reason) in sorted(found.items())
    ]


def purse_shadow_follow(ctx: StoredContext, taps: Sequence[Tap]) -> Iterable[Flag]:
    """Own cards: the e-purse shadow follows each card's taps in card-counter order; a tap whose
    balance_before differs from the shadow → ``shadow_divergence``. Two queries."""
    own = {(t.card_no, t.card_counter): t for t in taps if t.routing == "own" and not paid_online(t)}
    moves = [
        PurseMovement(t.card_no, t.card_counter, t.balance_before_fen, t.balance_after_fen, t.tapped_at)
        for t in own.values()
    ]
    return [
        Flag(
            own[(d.movement.card_no, d.movement.card_counter)],
            "shadow_divergence",
            {"shadow_fen": d.shadow_fen, "balance_before_fen": d.movement.balance_before_fen},
        )
        for d in purse_shadow_apply(movements=moves)
    ]


# The checks that run, in order: in the upload, then in the verification stage.
BATCH_CHECKS: list[Check] = [clock_skew_check, terminal_seq_gap_check]
STORED_CHECKS: list[StoredCheck] = [
    card_counter_gap_check,
    tac_check,
    code_check,
    fare_recheck,
    journey_pairing,
    hotlist_check,
    purse_shadow_follow,
]
