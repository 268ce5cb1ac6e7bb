"""Payment channels (支付渠道): configure them, take top-ups through them end to end, reconcile the
providers' daily statements (对账) and resolve the differences.

Idempotent end to end: a request key always finds the same order and the same ``out_trade_no`` (derived
from the key, so a retry after a crash asks the provider for the same order); a notification, replayed or
not, and a query credit an order at most once (the posting's key is the order number); a refund's key
finds the same refund. Every movement is a balanced posting in the ledger (citycard.tenants.accounts):
the channel's clearing account (``topup:channel-<code>``) against the cardholder's online account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import AccountKind, LedgerAccount, Posting, PostingKind
from citycard.tenants.accounts.selectors import account_of_card
from citycard.tenants.cards.pii import Sealer
from citycard.tenants.payments import statements
from citycard.tenants.payments.models import (
    ChannelBinding,
    ChannelNotice,
    ChannelPayout,
    ChannelRefund,
    DifferenceAction,
    DifferenceKind,
    NoticeOutcome,
    OrderPurpose,
    OrderState,
    PaymentChannel,
    Provider,
    ReconException,
    RefundState,
    StatementRun,
    SuspenseItem,
    SuspenseState,
    TopupOrder,
)
from citycard.tenants.payments.protocols import (
    PaymentResult,
    ProtocolError,
    RefundResult,
    Reply,
    key_serial,
)
from citycard.tenants.payments.selectors import channel_adapter, channel_by_code, sealed_field
from citycard.terminal_kit.beijing import BEIJING

# --- channels ---------------------------------------------------------------------------------------


def _pem_check(pem: str, *, private: bool, field: str) -> None:
    try:
        if private:
            serialization.load_pem_private_key(pem.encode(), password=None)
        else:
            serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        kind = "private" if private else "public"
        raise DomainError(f"{field} is not a PEM {kind} key", code="bad_key", field=field) from None


@transaction.atomic
def channel_configure(
    *,
    code: str,
    provider: str,
    name: str,
    merchant_id: str,
    gateway_url: str,
    notify_url: str,
    private_key_pem: str,
    provider_public_key_pem: str,
    app_id: str = "",
    secret: str = "",
    query_after_seconds: int = 300,
    actor: str,
) -> PaymentChannel:
    """Create or change a channel (配置支付渠道) with its keys; the private key and the symmetric key are
    sealed with the tenant's data key, never stored or shown in clear."""
    if provider not in Provider.values:
        raise DomainError(f"unknown provider {provider!r}", field="provider")
    if not code or not merchant_id:
        raise DomainError("a channel needs a code and a merchant id", field="code")
    _pem_check(private_key_pem, private=True, field="private_key")
    _pem_check(provider_public_key_pem, private=False, field="provider_public_key")
    if provider == Provider.WECHAT and len(secret.encode()) != 32:
        raise DomainError("WeChat Pay's APIv3 key is 32 characters", code="bad_key", field="secret")
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    own_public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    sealer = Sealer()
    sealed = sealer.seal(
        sealed_field(code), json.dumps({"private_key_pem": private_key_pem, "secret": secret})
    )
    channel, created = PaymentChannel.objects.update_or_create(
        code=code,
        defaults={
            "provider": provider,
            "name": name or code,
            "merchant_id": merchant_id,
            "app_id": app_id,
            "gateway_url": gateway_url,
            "notify_url": notify_url,
            "provider_public_key_pem": provider_public_key_pem,
            "provider_serial": key_serial(provider_public_key_pem),
            "serial_no": key_serial(own_public),
            "secrets_sealed": sealed,
            "secrets_key_id": sealer.key_id,
            "query_after_seconds": query_after_seconds,
            "active": True,
            "configured_at": timezone.now(),
        },
    )
    audit_record(
        action="payments.channel_configure",
        actor=actor,
        object_type="payment_channel",
        object_id=code,
        data={
            "provider": provider,
            "merchant_id": merchant_id,
            "gateway_url": gateway_url,
            "created": created,
        },
    )
    return channel


# --- orders -----------------------------------------------------------------------------------------


def _number(prefix: str, key: str) -> str:
    """A provider-safe number (32 characters, letters and digits) derived from the request key."""
    tenant = getattr(connection, "tenant", None)
    digest = hashlib.sha256(f"{getattr(tenant, 'code', '')}|{prefix}|{key}".encode()).hexdigest()
    return (prefix + digest)[:32].upper()


def _fen(value: Any, field: str = "amount_fen") -> int:
    if type(value) is not int or value <= 0:
        raise DomainError(f"{field} must be a positive whole number of fen", field=field)
    return value


def _protocol(exc: ProtocolError) -> DomainError:
    return DomainError(f"the payment channel failed: {exc}", code=f"channel_{exc.code}")


@transaction.atomic
def topup_order_create(
    *,
    channel_code: str,
    card_no: str,
    amount_fen: int,
    request_key: str,
    actor: str,
    description: str = "市民卡账户充值",
    purpose: str = OrderPurpose.TOPUP,
    agreement_no: str = "",
) -> TopupOrder:
    """Open a top-up order through a channel (渠道充值下单) and return it with the provider's payment
    parameters for the payer's app. The same request key returns the same order (and asks nothing again)."""
    amount = _fen(amount_fen)
    if not request_key or len(request_key) > 120:
        raise DomainError("a request key of 1–120 characters is required", field="request_key")
    existing = TopupOrder.objects.select_related("channel").filter(request_key=request_key).first()
    if existing is not None:
        if (existing.channel.code, existing.card_no, existing.amount_fen) != (channel_code, card_no, amount):
            raise Conflict(f"request key {request_key!r} was used for another order", field="request_key")
        return existing
    channel = channel_by_code(code=channel_code)
    if account_of_card(card_no=card_no) is None:
        raise NotFound(f"card {card_no} has no online account", code="no_account", field="card_no")
    order = TopupOrder.objects.create(
        channel=channel,
        out_trade_no=_number("CC", request_key),
        request_key=request_key,
        purpose=purpose,
        card_no=card_no,
        amount_fen=amount,
        created_at=timezone.now(),
        actor=actor,
    )
    try:
        adapter = channel_adapter(channel)
        if agreement_no:  # a collection under the payer's standing agreement (代扣): no payer in the loop
            order.payment_params = adapter.collect(
                out_trade_no=order.out_trade_no, amount_fen=amount, agreement_no=agreement_no,
                description=description,
            )  # fmt: skip
        else:
            order.payment_params = adapter.order_create(
                out_trade_no=order.out_trade_no, amount_fen=amount, description=description
            )
    except ProtocolError as exc:
        raise _protocol(exc) from None
    order.save(update_fields=["payment_params"])
    audit_record(
        action="payments.order_create",
        actor=actor,
        object_type="topup_order",
        object_id=order.out_trade_no,
        data={"channel": channel.code, "card_no": card_no, "amount_fen": amount},
    )
    return order


def _settle(order: TopupOrder, result: PaymentResult, *, via: str, actor: str) -> str:
    """Credit a paid order once (the caller holds the order's row lock); the outcome."""
    if order.state == OrderState.PAID:
        return NoticeOutcome.REPLAY
    if not result.paid:
        return NoticeOutcome.UNPAID
    order.provider_trade_no = result.provider_trade_no
    order.paid_fen = result.amount_fen
    order.paid_at = result.paid_at or timezone.now()
    order.settled_by = via
    if result.amount_fen != order.amount_fen:
        # The payer paid what the order did not say: nothing is credited; the statement shows the
        # difference and a clerk decides (对账差错).
        order.state = OrderState.MISMATCH
        order.save(update_fields=["provider_trade_no", "paid_fen", "paid_at", "settled_by", "state"])
        return NoticeOutcome.MISMATCH
    order.posting = accounts.account_topup(
        card_no=order.card_no,
        amount_fen=order.amount_fen,
        idempotency_key=f"channel:{order.out_trade_no}",
        channel=f"channel-{order.channel.code}",
        actor=actor,
        at=order.paid_at,
    )
    order.state, order.credited_at = OrderState.PAID, timezone.now()
    order.save(
        update_fields=[
            "provider_trade_no",
            "paid_fen",
            "paid_at",
            "settled_by",
            "state",
            "posting",
            "credited_at",
        ]
    )
    return NoticeOutcome.CREDITED


def topup_notification_receive(*, channel_code: str, headers: dict[str, str], body: bytes) -> Reply:
    """A provider's asynchronous notification (异步通知): verified, logged, the order credited once; the
    acknowledgement in the provider's own form. A notification that cannot be trusted credits nothing and
    is answered as a failure (the provider sends it again)."""
    channel = channel_by_code(code=channel_code)
    adapter = channel_adapter(channel)
    now = timezone.now()
    try:
        result = adapter.notification_parse(headers=headers, body=body)
    except (ProtocolError, ValueError, KeyError) as exc:
        ChannelNotice.objects.create(
            channel=channel, received_at=now, outcome=NoticeOutcome.REJECTED, detail=str(exc)[:200]
        )
        return adapter.notification_ack(ok=False)
    with transaction.atomic():
        order = (
            TopupOrder.objects.select_for_update()
            .filter(channel=channel, out_trade_no=result.out_trade_no)
            .first()
        )
        outcome = (
            NoticeOutcome.UNKNOWN
            if order is None
            else _settle(order, result, via="notification", actor="channel")
        )
        ChannelNotice.objects.create(
            channel=channel,
            received_at=now,
            notify_id=result.notify_id[:80],
            out_trade_no=result.out_trade_no[:32],
            amount_fen=result.amount_fen,
            outcome=outcome,
        )
    return adapter.notification_ack(ok=True)


def topup_order_query(*, out_trade_no: str, actor: str) -> TopupOrder:
    """Ask the provider about an order (查单) and credit it if paid: what settles an order whose
    notification never came."""
    order = TopupOrder.objects.select_related("channel").filter(out_trade_no=out_trade_no).first()
    if order is None:
        raise NotFound(f"no top-up order {out_trade_no!r}", code="no_order", field="out_trade_no")
    if order.state != OrderState.CREATED:
        return order
    try:
        result = channel_adapter(order.channel).order_query(out_trade_no=out_trade_no)
    except ProtocolError as exc:
        raise _protocol(exc) from None
    with transaction.atomic():
        order = TopupOrder.objects.select_for_update().select_related("channel").get(pk=order.pk)
        _settle(order, result, via="query", actor=actor)
    return order


@dataclass
class SweepResult:
    """What a sweep of overdue orders (超时查单) did: orders asked about, found paid and credited, closed
    unpaid past their channel's close time, and those whose provider did not answer (asked again next
    time)."""

    queried: int = 0
    credited: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def topup_orders_sweep(*, actor: str, now: dt.datetime | None = None) -> SweepResult:
    """Ask the provider about every order still awaiting payment longer than its channel's
    ``query_after_seconds`` (超时查单): one found paid is credited (once, as a notification would); one
    still unpaid past ``close_after_seconds`` is closed (关单): a late payment of a closed order is still
    credited by its notification or the statement. Idempotent: a paid or closed order is not asked again; a
    provider that does not answer leaves the order for the next sweep."""
    now = now or timezone.now()
    result = SweepResult()
    waiting = TopupOrder.objects.filter(state=OrderState.CREATED).select_related("channel").order_by("id")
    for order in waiting.iterator():
        if order.created_at > now - dt.timedelta(seconds=order.channel.query_after_seconds):
            continue
        result.queried += 1
        try:
            found = topup_order_query(out_trade_no=order.out_trade_no, actor=actor)
        except DomainError:
            result.failed.append(order.out_trade_no)
            continue
        if found.state == OrderState.PAID:
            result.credited.append(order.out_trade_no)
        elif found.state == OrderState.CREATED and order.created_at <= now - dt.timedelta(
            seconds=order.channel.close_after_seconds
        ):
            with transaction.atomic():
                closed = TopupOrder.objects.filter(pk=order.pk, state=OrderState.CREATED).update(
                    state=OrderState.CLOSED, settled_by="sweep"
                )
                if closed:
                    audit_record(
                        action="payments.order_close", actor=actor, object_type="topup_order",
                        object_id=order.out_trade_no, data={"reason": "unpaid past the channel's close time"},
                    )  # fmt: skip
                    result.closed.append(order.out_trade_no)
    return result


def _provider_refund(
    channel: PaymentChannel, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
) -> RefundResult:
    """Ask the provider to refund (part of) the payment it took under ``out_trade_no``; its refusal or
    silence is a DomainError (the caller's transaction then writes nothing)."""
    try:
        result = channel_adapter(channel).refund(
            out_trade_no=out_trade_no, out_refund_no=out_refund_no, amount_fen=amount_fen, total_fen=total_fen
        )
    except ProtocolError as exc:
        raise _protocol(exc) from None
    if not result.succeeded:
        raise DomainError(f"the provider refused the refund ({result.state})", code="refund_refused")
    return result


@transaction.atomic
def topup_order_refund(
    *, out_trade_no: str, amount_fen: int, request_key: str, actor: str, reason: str = ""
) -> ChannelRefund:
    """Refund (part of) a credited top-up back through its channel (充值退款): the online account is debited
    first (refused beyond its balance), then the provider asked; a provider refusal leaves nothing written.
    The same request key finds the same refund."""
    amount = _fen(amount_fen)
    existing = ChannelRefund.objects.filter(request_key=request_key).first()
    if existing is not None:
        if existing.order.out_trade_no != out_trade_no or existing.amount_fen != amount:
            raise Conflict(f"request key {request_key!r} was used for another refund", field="request_key")
        return existing
    order = (
        TopupOrder.objects.select_for_update()
        .select_related("channel")
        .filter(out_trade_no=out_trade_no)
        .first()
    )
    if order is None:
        raise NotFound(f"no top-up order {out_trade_no!r}", code="no_order", field="out_trade_no")
    if order.state != OrderState.PAID or order.posting_id is None:
        raise DomainError(f"order {out_trade_no} is not credited: nothing to refund", code="not_paid")
    out_refund_no = _number("RF", request_key)
    # An order paid from suspense (a 长款 matched to it): the provider took the money under the 长款's number.
    held = (
        SuspenseItem.objects.filter(order=order).only("out_trade_no").first()
        if order.settled_by == "suspense"
        else None
    )
    posting = accounts.account_topup_reverse(
        topup_id=order.posting_id,
        amount_fen=amount,
        idempotency_key=f"channel-refund:{out_refund_no}",
        memo=f"refund of order {out_trade_no}",
        actor=actor,
    )
    result = _provider_refund(
        order.channel,
        out_trade_no=held.out_trade_no if held else out_trade_no,
        out_refund_no=out_refund_no,
        amount_fen=amount,
        total_fen=order.amount_fen,
    )
    refund = ChannelRefund.objects.create(
        order=order,
        out_refund_no=out_refund_no,
        request_key=request_key,
        amount_fen=amount,
        state=RefundState.SUCCEEDED,
        provider_refund_no=result.provider_refund_no,
        reason=reason,
        at=timezone.now(),
        posting=posting,
        actor=actor,
    )
    audit_record(
        action="payments.refund",
        actor=actor,
        object_type="topup_order",
        object_id=out_trade_no,
        data={"out_refund_no": out_refund_no, "amount_fen": amount},
    )
    return refund


# --- bindings (what credit repayment collects through) --------------------------------------------------


@transaction.atomic
def binding_create(*, channel_code: str, card_no: str, agreement_no: str, actor: str) -> ChannelBinding:
    """Record a cardholder's standing authority on a channel (绑定代扣渠道); one active binding a card."""
    channel = channel_by_code(code=channel_code)
    if account_of_card(card_no=card_no) is None:
        raise NotFound(f"card {card_no} has no online account", code="no_account", field="card_no")
    ChannelBinding.objects.filter(card_no=card_no, active=True).update(active=False)
    binding = ChannelBinding.objects.create(
        channel=channel, card_no=card_no, agreement_no=agreement_no, bound_at=timezone.now()
    )
    audit_record(
        action="payments.binding_create",
        actor=actor,
        object_type="channel_binding",
        object_id=binding.pk,
        data={"channel": channel.code, "card_no": card_no},
    )
    return binding


def channel_collect(
    *, card_no: str, amount_fen: int, request_key: str, actor: str, description: str
) -> TopupOrder:
    """Collect into the cardholder's online account through their bound channel (代扣), e.g. a credit
    repayment: an order like a top-up, settled by the provider's notification or a query, idempotent on
    ``request_key``. The provider is asked to collect under the binding's agreement (委托代扣) and pays
    without the payer in the loop; its notification (or a query, or the sweep) credits the online account.
    The caller then moves the money on from the online account."""
    binding = ChannelBinding.objects.select_related("channel").filter(card_no=card_no, active=True).first()
    if binding is None:
        raise NotFound(f"card {card_no} has no bound channel", code="no_binding", field="card_no")
    return topup_order_create(
        channel_code=binding.channel.code,
        card_no=card_no,
        amount_fen=amount_fen,
        request_key=request_key,
        actor=actor,
        description=description,
        purpose=OrderPurpose.COLLECTION,
        agreement_no=binding.agreement_no,
    )


# --- reconciliation ---------------------------------------------------------------------------------

_DIFFERENCES_SQL = """
INSERT INTO payments_reconexception
    (run_id, kind, out_trade_no, out_refund_no, statement_fen, ledger_fen, reason, action, note, resolved_by)
SELECT %(run)s,
       CASE WHEN o.id IS NULL THEN 'long' WHEN o.state = 'created' OR o.state = 'closed' THEN 'missing'
            ELSE 'amount' END,
       s.out_trade_no, '', s.amount_fen,
       CASE WHEN o.state = 'paid' THEN o.amount_fen ELSE 0 END,
       CASE WHEN o.id IS NULL THEN 'the provider took a payment for an order this city never opened'
            WHEN o.state IN ('created', 'closed')
                 THEN 'paid at the provider, no notification or query credited it'
            WHEN o.state = 'mismatch' THEN 'the payer paid ' || s.amount_fen || ' fen against an order of '
                 || o.amount_fen || ' fen: nothing was credited'
            ELSE 'the statement says ' || s.amount_fen || ' fen, the ledger credited ' || o.amount_fen || ' fen'
       END,
       '', '', ''
  FROM payments_stage_line s
  LEFT JOIN payments_topuporder o ON o.out_trade_no = s.out_trade_no AND o.channel_id = %(channel)s
 WHERE s.kind = 'pay'
   AND (o.id IS NULL OR o.state <> 'paid' OR o.amount_fen <> s.amount_fen)
   -- a 长款 an earlier file of the channel put in suspense is not a new difference (nor posted again)
   AND (o.id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM payments_suspenseitem si
                                          WHERE si.channel_id = %(channel)s AND si.out_trade_no = s.out_trade_no))
UNION ALL
SELECT %(run)s, 'short', o.out_trade_no, '', NULL, o.amount_fen,
       'credited in the ledger, not in the provider''s statement of the day', '', '', ''
  FROM payments_topuporder o
 WHERE o.channel_id = %(channel)s AND o.state = 'paid'
   AND o.paid_at >= %(start)s AND o.paid_at < %(end)s
   AND NOT EXISTS (SELECT 1 FROM payments_stage_line s WHERE s.kind = 'pay' AND s.out_trade_no = o.out_trade_no)
UNION ALL
SELECT %(run)s, CASE WHEN r.id IS NULL THEN 'long' ELSE 'amount' END, COALESCE(o.out_trade_no, s.out_trade_no),
       s.out_refund_no, s.amount_fen, r.amount_fen,
       CASE WHEN r.id IS NULL THEN 'the provider refunded money this city''s ledger never gave back'
            ELSE 'the statement refunds ' || s.amount_fen || ' fen, the ledger ' || r.amount_fen || ' fen' END,
       '', '', ''
  FROM payments_stage_line s
  LEFT JOIN payments_channelrefund r ON r.out_refund_no = s.out_refund_no
  LEFT JOIN payments_topuporder o ON o.id = r.order_id
  LEFT JOIN payments_suspenseitem si ON si.refund_no = s.out_refund_no AND si.channel_id = %(channel)s
 WHERE s.kind = 'refund' AND (r.id IS NULL OR r.amount_fen <> s.amount_fen)
   AND (si.id IS NULL OR si.amount_fen <> s.amount_fen)
UNION ALL
SELECT %(run)s, 'short', o.out_trade_no, r.out_refund_no, NULL, r.amount_fen,
       'refunded in the ledger, not in the provider''s statement of the day', '', '', ''
  FROM payments_channelrefund r JOIN payments_topuporder o ON o.id = r.order_id
 WHERE o.channel_id = %(channel)s AND r.state = 'succeeded' AND r.at >= %(start)s AND r.at < %(end)s
   AND NOT EXISTS (SELECT 1 FROM payments_stage_line s
                    WHERE s.kind = 'refund' AND s.out_refund_no = r.out_refund_no)
"""


@transaction.atomic
def statement_reconcile(
    *, channel_code: str, day: dt.date, data: bytes, actor: str, file_name: str = ""
) -> StatementRun:
    """Reconcile a provider's daily statement (对账) against the ledger: every line matched to the order or
    refund it settles, every difference an exception with its reason (长款, 短款, missing notification,
    amount). The same file reconciled again finds the first run; a file that does not read, or whose
    totals disagree with its lines, is refused whole."""
    channel = channel_by_code(code=channel_code, active_only=False)
    digest = hashlib.sha256(data).hexdigest()
    existing = StatementRun.objects.filter(channel=channel, statement_date=day, file_sha256=digest).first()
    if existing is not None:
        return existing
    run = StatementRun.objects.create(
        channel=channel, statement_date=day, file_name=file_name[:200], file_sha256=digest,
        at=timezone.now(), actor=actor,
    )  # fmt: skip
    statements.stage_create()
    try:
        statements.load(channel.provider, data, year=day.year)
    except ProtocolError as exc:
        raise DomainError(
            f"the statement cannot be read: {exc}", code="bad_statement", field="file"
        ) from None
    except (UnicodeDecodeError, ValueError, IndexError, KeyError, DatabaseError) as exc:
        raise DomainError(
            f"the statement cannot be read: {exc}", code="bad_statement", field="file"
        ) from None
    start = dt.datetime.combine(day, dt.time(), tzinfo=BEIJING)
    count, paid, refunded, fees = statements.stage_totals()
    with connection.cursor() as cur:
        cur.execute("ANALYZE payments_stage_line")  # a scratch table is never analysed by itself
        cur.execute(
            _DIFFERENCES_SQL,
            {"run": run.pk, "channel": channel.pk, "start": start, "end": start + dt.timedelta(days=1)},
        )
        differences = cur.rowcount
        cur.execute(_SUSPENSE_SQL, {"run": run.pk, "channel": channel.pk})
        cur.execute("DROP TABLE payments_stage_line")
    lines_differing = ReconException.objects.filter(run=run, statement_fen__isnull=False).count()
    run.lines, run.paid_fen, run.refunded_fen, run.fee_fen = count, paid, refunded, fees
    run.exceptions, run.matched = differences, count - lines_differing
    run.suspense_posting = _suspense_post(run, actor=actor)
    run.fee_posting, run.fees_posted_fen = _fees_post(run, actor=actor)
    run.save(
        update_fields=[
            "lines", "paid_fen", "refunded_fen", "fee_fen", "exceptions", "matched", "suspense_posting",
            "fee_posting", "fees_posted_fen",
        ]
    )  # fmt: skip
    audit_record(
        action="payments.reconcile",
        actor=actor,
        object_type="statement_run",
        object_id=run.pk,
        data={
            "channel": channel.code, "date": day.isoformat(), "lines": count, "differences": differences,
            "fees_posted_fen": run.fees_posted_fen,
        },
    )  # fmt: skip
    return run


# The day's 长款 (payments the provider took for no order of the city) each become a suspense item; the
# provider's trade number is read from the statement's lines (a hash semi-join: only the 长款's lines).
_SUSPENSE_SQL = """
WITH longs AS (
    SELECT id, out_trade_no, statement_fen FROM payments_reconexception
     WHERE run_id = %(run)s AND kind = 'long' AND out_refund_no = '' AND statement_fen > 0
)
INSERT INTO payments_suspenseitem
    (channel_id, difference_id, out_trade_no, provider_trade_no, amount_fen, state, card_no, refund_no, note,
     resolved_by)
SELECT %(channel)s, l.id, l.out_trade_no, COALESCE(p.provider_trade_no, ''), l.statement_fen, 'open', '', '', '',
       ''
  FROM longs l
  LEFT JOIN (SELECT DISTINCT ON (s.out_trade_no) s.out_trade_no, s.provider_trade_no
               FROM payments_stage_line s
              WHERE s.kind = 'pay' AND s.out_trade_no IN (SELECT out_trade_no FROM longs)
              ORDER BY s.out_trade_no) p ON p.out_trade_no = l.out_trade_no
"""


def _clearing(channel: PaymentChannel) -> LedgerAccount:
    return accounts.ledger_account_external(
        code=channel.clearing_account_code, kind=AccountKind.TOPUP_CLEARING
    )


def _suspense_account(channel: PaymentChannel) -> LedgerAccount:
    return accounts.ledger_account_external(
        code=f"suspense:channel-{channel.code}", kind=AccountKind.SUSPENSE
    )


def _suspense_post(run: StatementRun, *, actor: str) -> Posting | None:
    """The run's 长款 into suspense (挂账), one posting: the channel's float holds the money, the suspense
    account owes it to whoever it turns out to be."""
    total = SuspenseItem.objects.filter(difference__run=run).aggregate(t=Sum("amount_fen"))["t"] or 0
    if not total:
        return None
    return accounts.posting_write(
        kind=PostingKind.SUSPENSE,
        key=f"suspense-in:{run.pk}",
        legs=[(_clearing(run.channel), -total), (_suspense_account(run.channel), total)],
        memo=f"长款 of {run.channel.code} {run.statement_date} into suspense",
        actor=actor,
    )[0]


def _fees_post(run: StatementRun, *, actor: str) -> tuple[Posting | None, int]:
    """The statement's net fees (手续费: the payments' less those returned with refunds) to the channel's fee
    expense account, out of its float: once a statement day — a corrected file of the same day posts only
    what differs from the fees already posted."""
    posted = (
        StatementRun.objects.filter(channel=run.channel, statement_date=run.statement_date)
        .exclude(pk=run.pk)
        .aggregate(t=Sum("fees_posted_fen"))["t"]
        or 0
    )
    delta = run.fee_fen - posted
    if not delta:
        return None, 0
    expense = accounts.ledger_account_external(
        code=f"fee-expense:channel-{run.channel.code}", kind=AccountKind.FEE_EXPENSE
    )
    posting = accounts.posting_write(
        kind=PostingKind.CHANNEL_FEE,
        key=f"channel-fee:{run.pk}",
        legs=[(_clearing(run.channel), delta), (expense, -delta)],
        memo=f"fees of {run.channel.code} {run.statement_date}",
        actor=actor,
    )[0]
    return posting, delta


def statement_fetch_and_reconcile(*, channel_code: str, day: dt.date, actor: str) -> StatementRun:
    """Download the day's statement from the provider and reconcile it."""
    channel = channel_by_code(code=channel_code)
    try:
        data = channel_adapter(channel).statement_fetch(day=day)
    except ProtocolError as exc:
        raise _protocol(exc) from None
    return statement_reconcile(
        channel_code=channel_code, day=day, data=data, actor=actor, file_name=f"{day} (API)"
    )


def channel_adapter_statement(*, channel_code: str, day: dt.date) -> bytes:
    """The provider's statement file of ``day`` as it sends it (to keep, or reconcile later)."""
    try:
        return channel_adapter(channel_by_code(code=channel_code)).statement_fetch(day=day)
    except ProtocolError as exc:
        raise _protocol(exc) from None


ALLOWED_ACTIONS = {
    DifferenceKind.MISSING_NOTICE: {DifferenceAction.CREDIT, DifferenceAction.ACCEPT},
    DifferenceKind.LONG: {DifferenceAction.ACCEPT},
    DifferenceKind.SHORT: {DifferenceAction.REVERSE, DifferenceAction.ACCEPT},
    DifferenceKind.AMOUNT: {DifferenceAction.CREDIT, DifferenceAction.ADJUST, DifferenceAction.ACCEPT},
    DifferenceKind.PAYOUT: {DifferenceAction.ACCEPT},
}


@transaction.atomic
def difference_resolve(*, difference_id: int, action: str, note: str, actor: str) -> ReconException:
    """A clerk resolves a reconciliation difference (差错处理) with an action: ``credit`` the cardholder the
    amount the statement shows (missing notification; paid a different amount), ``reverse`` a credit the
    statement does not carry (短款), ``adjust`` a credited amount to the statement's, or ``accept`` with a
    note (a timing difference, a 长款 refunded at the provider). Each posting is keyed by the difference:
    resolving twice posts nothing twice."""
    diff = (
        ReconException.objects.select_for_update()
        .select_related("run__channel")
        .filter(pk=difference_id)
        .first()
    )
    if diff is None:
        raise NotFound(f"no reconciliation difference {difference_id}", field="difference_id")
    if diff.resolved_at is not None:
        raise Conflict(f"difference {difference_id} was resolved ({diff.action})", code="resolved")
    item = SuspenseItem.objects.filter(difference=diff).first()
    if item is not None:
        raise DomainError(
            f"difference {difference_id} is in suspense (item {item.pk}): match it to an order or a cardholder, "
            "or refund it through the channel",
            code="in_suspense",
            field="action",
        )
    if action not in ALLOWED_ACTIONS[diff.kind]:
        allowed = ", ".join(sorted(ALLOWED_ACTIONS[diff.kind]))
        raise DomainError(
            f"a {diff.kind} difference is resolved by: {allowed}", code="bad_action", field="action"
        )
    if not note.strip():
        raise DomainError("say why (a note is required)", field="note")
    key = f"recon:{diff.pk}"
    posting: Posting | None = None
    order = TopupOrder.objects.select_for_update().filter(out_trade_no=diff.out_trade_no).first()
    if action == DifferenceAction.CREDIT:
        if order is None or order.state == OrderState.PAID:
            raise DomainError("only an order not credited can be credited", code="bad_action", field="action")
        posting = accounts.account_topup(
            card_no=order.card_no, amount_fen=diff.statement_fen, idempotency_key=key,
            channel=f"channel-{order.channel.code}", actor=actor,
        )  # fmt: skip
        order.state, order.posting, order.paid_fen = OrderState.PAID, posting, diff.statement_fen
        order.credited_at, order.settled_by = timezone.now(), "reconcile"
        order.paid_at = order.paid_at or timezone.now()
        order.save(update_fields=["state", "posting", "paid_fen", "credited_at", "settled_by", "paid_at"])
    elif action == DifferenceAction.REVERSE:
        if diff.out_refund_no:
            raise DomainError(
                "a refund the statement lacks is accepted or taken up with the provider", code="bad_action"
            )
        if order is None or order.posting_id is None:
            raise DomainError("no credit to reverse", code="bad_action", field="action")
        posting = accounts.account_topup_reverse(
            topup_id=order.posting_id, amount_fen=diff.ledger_fen, idempotency_key=key,
            memo=f"reconciliation {diff.run.statement_date}: {order.out_trade_no} not in the statement", actor=actor,
        )  # fmt: skip
        order.state = OrderState.CLOSED
        order.save(update_fields=["state"])
    elif action == DifferenceAction.ADJUST:
        if order is None or order.posting_id is None or diff.out_refund_no:
            raise DomainError(
                "only a credited order's amount can be adjusted", code="bad_action", field="action"
            )
        delta = diff.statement_fen - diff.ledger_fen
        if delta > 0:
            posting = accounts.account_topup(
                card_no=order.card_no, amount_fen=delta, idempotency_key=key,
                channel=f"channel-{order.channel.code}", actor=actor,
            )  # fmt: skip
        elif delta < 0:
            posting = accounts.account_topup_reverse(
                topup_id=order.posting_id, amount_fen=-delta, idempotency_key=key, actor=actor,
                memo=f"reconciliation {diff.run.statement_date}: {order.out_trade_no} adjusted",
            )  # fmt: skip
    diff.action, diff.note, diff.resolved_by, diff.resolved_at = (
        action,
        note.strip()[:300],
        actor,
        timezone.now(),
    )
    diff.posting = posting
    diff.save(update_fields=["action", "note", "resolved_by", "resolved_at", "posting"])
    audit_record(
        action="payments.difference_resolve",
        actor=actor,
        object_type="recon_exception",
        object_id=diff.pk,
        data={"kind": diff.kind, "action": action, "posting": posting.pk if posting else None},
    )
    return diff


# --- suspense (挂账): 长款 matched or refunded ---------------------------------------------------------------


def _suspense_locked(item_id: int) -> SuspenseItem:
    item = (
        SuspenseItem.objects.select_for_update()
        .select_related("channel", "difference")
        .filter(pk=item_id)
        .first()
    )
    if item is None:
        raise NotFound(f"no suspense item {item_id}", code="no_suspense_item", field="item_id")
    return item


def _suspense_open(item_id: int) -> SuspenseItem:
    item = _suspense_locked(item_id)
    if item.state != SuspenseState.OPEN:
        raise Conflict(f"suspense item {item_id} was {item.state}", code="resolved")
    return item


def _suspense_release(item: SuspenseItem, *, actor: str, memo: str) -> Posting:
    """Suspense back to the channel's float: what a match then credits, or a refund pays back."""
    return accounts.posting_write(
        kind=PostingKind.SUSPENSE,
        key=f"suspense-out:{item.pk}",
        legs=[
            (_suspense_account(item.channel), -item.amount_fen),
            (_clearing(item.channel), item.amount_fen),
        ],
        memo=memo,
        actor=actor,
    )[0]


def _suspense_close(item: SuspenseItem, *, state: str, action: str, note: str, actor: str) -> None:
    now = timezone.now()
    item.state, item.note, item.resolved_at, item.resolved_by = state, note.strip()[:300], now, actor
    item.save()
    diff = item.difference
    diff.action, diff.note, diff.resolved_by, diff.resolved_at, diff.posting = (
        action, note.strip()[:300], actor, now, item.posting,
    )  # fmt: skip
    diff.save(update_fields=["action", "note", "resolved_by", "resolved_at", "posting"])


@transaction.atomic
def suspense_match(
    *, item_id: int, note: str, actor: str, out_trade_no: str = "", card_no: str = ""
) -> SuspenseItem:
    """Match money held in suspense (挂账核销) to the order it was meant for (the order is then paid and
    credited, refundable like any top-up) or, with no order, to a cardholder's online account. The amount
    must be the order's. Done once: a matched item is not matched again."""
    if not note.strip():
        raise DomainError("say why (a note is required)", field="note")
    if bool(out_trade_no) == bool(card_no):
        raise DomainError(
            "match to an order or to a card, one of them", code="bad_match", field="out_trade_no"
        )
    item = _suspense_open(item_id)
    order = None
    if out_trade_no:
        order = TopupOrder.objects.select_for_update().filter(out_trade_no=out_trade_no).first()
        if order is None or order.channel_id != item.channel_id:
            raise NotFound(
                f"no order {out_trade_no!r} on channel {item.channel.code}",
                code="no_order",
                field="out_trade_no",
            )
        if order.state == OrderState.PAID:
            raise DomainError(
                f"order {out_trade_no} is credited already", code="bad_match", field="out_trade_no"
            )
        if order.amount_fen != item.amount_fen:
            raise DomainError(
                f"order {out_trade_no} is for {order.amount_fen} fen, the suspense item {item.amount_fen} fen",
                code="bad_match",
                field="out_trade_no",
            )
        card_no = order.card_no
    elif account_of_card(card_no=card_no) is None:
        raise NotFound(f"card {card_no} has no online account", code="no_account", field="card_no")
    item.posting = _suspense_release(item, actor=actor, memo=f"suspense {item.out_trade_no} matched")
    credit = accounts.account_topup(
        card_no=card_no, amount_fen=item.amount_fen, idempotency_key=f"suspense-match:{item.pk}",
        channel=f"channel-{item.channel.code}", actor=actor,
    )  # fmt: skip
    if order is not None:
        order.state, order.posting, order.paid_fen, order.settled_by = (
            OrderState.PAID,
            credit,
            item.amount_fen,
            "suspense",
        )
        order.provider_trade_no = order.provider_trade_no or item.provider_trade_no
        order.credited_at = timezone.now()
        order.paid_at = order.paid_at or order.credited_at
        order.save(
            update_fields=[
                "state",
                "posting",
                "paid_fen",
                "settled_by",
                "provider_trade_no",
                "credited_at",
                "paid_at",
            ]
        )
    item.order, item.card_no = order, card_no
    _suspense_close(item, state=SuspenseState.MATCHED, action=DifferenceAction.MATCH, note=note, actor=actor)
    audit_record(
        action="payments.suspense_match",
        actor=actor,
        object_type="suspense_item",
        object_id=item.pk,
        data={"out_trade_no": out_trade_no, "card_no": card_no, "amount_fen": item.amount_fen},
    )
    return item


@transaction.atomic
def suspense_refund(*, item_id: int, note: str, actor: str) -> SuspenseItem:
    """Give money held in suspense back to the payer through the channel (挂账退款): the provider refunds
    the payment it took, then the suspense account is cleared against the float. The refund number is the
    item's own, so a retry asks the provider for the same refund; a provider refusal writes nothing."""
    if not note.strip():
        raise DomainError("say why (a note is required)", field="note")
    item = _suspense_open(item_id)
    refund_no = _suspense_refund_no(item)
    _provider_refund(
        item.channel, out_trade_no=item.out_trade_no, out_refund_no=refund_no, amount_fen=item.amount_fen,
        total_fen=item.amount_fen,
    )  # fmt: skip
    item.refund_no = refund_no
    item.posting = _suspense_release(item, actor=actor, memo=f"suspense {item.out_trade_no} refunded")
    _suspense_close(
        item, state=SuspenseState.REFUNDED, action=DifferenceAction.REFUND, note=note, actor=actor
    )
    audit_record(
        action="payments.suspense_refund",
        actor=actor,
        object_type="suspense_item",
        object_id=item.pk,
        data={"out_trade_no": item.out_trade_no, "refund_no": refund_no, "amount_fen": item.amount_fen},
    )
    return item


def _suspense_refund_no(item: SuspenseItem) -> str:
    """The item's own refund number: a refund of it, from suspense or after a match, is one refund."""
    return _number("SR", f"suspense:{item.pk}")


@transaction.atomic
def suspense_matched_refund(*, item_id: int, note: str, actor: str) -> SuspenseItem:
    """Give back through the channel a 长款 a clerk matched to a cardholder or an order (认领后退款), when the
    payer wants the money back after all: the card's online account gives back what the match credited
    (refused beyond its balance), then the provider refunds the payment it took under the 长款's own order
    number (the only trade it knows of: a matched order's number is the city's) and the item is
    ``refunded``. Idempotent: the refund number is the item's, so a retry after a timeout asks the provider
    for the same refund, and an item refunded after its match is returned as it is; a provider refusal
    writes nothing."""
    if not note.strip():
        raise DomainError("say why (a note is required)", field="note")
    item = _suspense_locked(item_id)
    if item.state == SuspenseState.REFUNDED and item.card_no:
        return item  # matched, then refunded: a retry
    if item.state != SuspenseState.MATCHED:
        raise DomainError(
            f"suspense item {item_id} is {item.state}: only a matched item is refunded from the card",
            code="not_matched",
            field="item_id",
        )
    credit = Posting.objects.get(idempotency_key=f"suspense-match:{item.pk}")
    refund_no = _suspense_refund_no(item)
    posting = accounts.account_topup_reverse(
        topup_id=credit.pk,
        amount_fen=item.amount_fen,
        idempotency_key=f"suspense-refund:{item.pk}",
        memo=f"suspense {item.out_trade_no} refunded after its match",
        actor=actor,
    )
    _provider_refund(
        item.channel, out_trade_no=item.out_trade_no, out_refund_no=refund_no, amount_fen=item.amount_fen,
        total_fen=item.amount_fen,
    )  # fmt: skip
    item.state, item.refund_no = SuspenseState.REFUNDED, refund_no
    item.note = f"{item.note}; {note.strip()}"[:300]
    item.resolved_at, item.resolved_by = timezone.now(), actor
    item.save(update_fields=["state", "refund_no", "note", "resolved_at", "resolved_by"])
    audit_record(
        action="payments.suspense_matched_refund",
        actor=actor,
        object_type="suspense_item",
        object_id=item.pk,
        data={
            "out_trade_no": item.out_trade_no, "card_no": item.card_no, "refund_no": refund_no,
            "amount_fen": item.amount_fen, "posting": posting.pk,
        },
    )  # fmt: skip
    return item


# --- payouts (结算划款) ----------------------------------------------------------------------------------


def _bank_account() -> LedgerAccount:
    return accounts.ledger_account_external(code="bank:collections", kind=AccountKind.BANK)


@transaction.atomic
def payout_record(
    *,
    channel_code: str,
    statement_date: dt.date,
    amount_fen: int,
    bank_reference: str,
    actor: str,
    received_on: dt.date | None = None,
) -> ChannelPayout:
    """Record the provider's payout of a statement day (渠道结算划款) as the bank shows it: the channel's
    float moves to the city's bank account, one balanced posting. It is reconciled against the day's
    statement (paid less refunded less fees, less what earlier payouts of the day brought): any other
    amount is a difference for a clerk. The same bank reference again finds the same payout."""
    amount = _fen(amount_fen)
    reference = bank_reference.strip()
    if not reference or len(reference) > 64:
        raise DomainError("a bank reference of 1–64 characters is required", field="bank_reference")
    channel = channel_by_code(code=channel_code, active_only=False)
    existing = ChannelPayout.objects.filter(channel=channel, bank_reference=reference).first()
    if existing is not None:
        if (existing.statement_date, existing.amount_fen) != (statement_date, amount):
            raise Conflict(
                f"bank reference {reference!r} was recorded for another payout", field="bank_reference"
            )
        return existing
    run = (
        StatementRun.objects.filter(channel=channel, statement_date=statement_date)
        .order_by("-at", "-id")
        .first()
    )
    if run is None:
        raise DomainError(
            f"reconcile {channel.code}'s statement of {statement_date} first: the payout is checked against it",
            code="no_statement",
            field="statement_date",
        )
    earlier = (
        ChannelPayout.objects.filter(channel=channel, statement_date=statement_date).aggregate(
            t=Sum("amount_fen")
        )["t"]
        or 0
    )
    expected = run.paid_fen - run.refunded_fen - run.fee_fen - earlier
    posting = accounts.posting_write(
        kind=PostingKind.PAYOUT,
        key=f"payout:{channel.code}:{reference}",
        legs=[(_clearing(channel), amount), (_bank_account(), -amount)],
        memo=f"payout of {channel.code} {statement_date} ({reference})",
        actor=actor,
    )[0]
    difference = None
    if amount != expected:
        difference = ReconException.objects.create(
            run=run,
            kind=DifferenceKind.PAYOUT,
            out_trade_no=reference[:64],
            statement_fen=expected,
            ledger_fen=amount,
            reason=(
                f"the bank received {amount} fen, the statement of {statement_date} nets {expected} fen "
                "(paid less refunded less fees)"
            )[:300],
        )
        StatementRun.objects.filter(pk=run.pk).update(exceptions=run.exceptions + 1)
    payout = ChannelPayout.objects.create(
        channel=channel,
        statement_date=statement_date,
        bank_reference=reference,
        amount_fen=amount,
        expected_fen=expected,
        received_on=received_on or dt.datetime.now(BEIJING).date(),
        posting=posting,
        difference=difference,
        at=timezone.now(),
        actor=actor,
    )
    audit_record(
        action="payments.payout_record",
        actor=actor,
        object_type="channel_payout",
        object_id=payout.pk,
        data={
            "channel": channel.code, "date": statement_date.isoformat(), "amount_fen": amount,
            "expected_fen": expected, "reference": reference,
        },
    )  # fmt: skip
    return payout
