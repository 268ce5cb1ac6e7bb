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
import io
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import Posting
from citycard.tenants.accounts.selectors import account_of_card
from citycard.tenants.cards.pii import Sealer
from citycard.tenants.payments.models import (
    ChannelBinding,
    ChannelNotice,
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
    TopupOrder,
)
from citycard.tenants.payments.protocols import (
    PaymentResult,
    ProtocolError,
    Reply,
    fen_of_yuan,
    key_serial,
    wechat,
    yuan_text,
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
        order.payment_params = channel_adapter(channel).order_create(
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


def topup_orders_sweep(*, actor: str, now: dt.datetime | None = None) -> list[TopupOrder]:
    """Query every order still awaiting payment longer than its channel's ``query_after_seconds``
    (超时查单); the orders found paid (credited now)."""
    now = now or timezone.now()
    settled = []
    for order in TopupOrder.objects.filter(state=OrderState.CREATED).select_related("channel").order_by("id"):
        overdue = order.created_at <= now - dt.timedelta(seconds=order.channel.query_after_seconds)
        if (
            overdue
            and topup_order_query(out_trade_no=order.out_trade_no, actor=actor).state == OrderState.PAID
        ):
            settled.append(order)
    return settled


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
    posting = accounts.account_topup_reverse(
        topup_id=order.posting_id,
        amount_fen=amount,
        idempotency_key=f"channel-refund:{out_refund_no}",
        memo=f"refund of order {out_trade_no}",
        actor=actor,
    )
    try:
        result = channel_adapter(order.channel).refund(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            amount_fen=amount,
            total_fen=order.amount_fen,
        )
    except ProtocolError as exc:
        raise _protocol(exc) from None
    if not result.succeeded:
        raise DomainError(f"the provider refused the refund ({result.state})", code="refund_refused")
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
    ``request_key``. The caller then moves the money on from the online account."""
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
 WHERE s.kind = 'refund' AND (r.id IS NULL OR r.amount_fen <> s.amount_fen)
UNION ALL
SELECT %(run)s, 'short', o.out_trade_no, r.out_refund_no, NULL, r.amount_fen,
       'refunded in the ledger, not in the provider''s statement of the day', '', '', ''
  FROM payments_channelrefund r JOIN payments_topuporder o ON o.id = r.order_id
 WHERE o.channel_id = %(channel)s AND r.state = 'succeeded' AND r.at >= %(start)s AND r.at < %(end)s
   AND NOT EXISTS (SELECT 1 FROM payments_stage_line s
                    WHERE s.kind = 'refund' AND s.out_refund_no = r.out_refund_no)
"""


STAGE = (
    "CREATE TEMP TABLE payments_stage_line (kind text, out_trade_no text, provider_trade_no text,"
    " out_refund_no text, amount_fen bigint, fee_fen bigint, at timestamptz) ON COMMIT DROP"
)


def _copy_lines(lines) -> None:
    """COPY the parsed lines into the scratch table the reconciliation joins (fast for a million lines)."""
    buffer = io.StringIO()
    for line in lines:
        at = line.at.isoformat() if line.at else r"\N"
        buffer.write(
            f"{line.kind}\t{line.out_trade_no}\t{line.provider_trade_no}\t{line.out_refund_no}\t"
            f"{line.amount_fen}\t{line.fee_fen}\t{at}\n"
        )
    buffer.seek(0)
    with connection.cursor() as cur:
        cur.cursor.copy_expert(
            "COPY payments_stage_line (kind, out_trade_no, provider_trade_no, out_refund_no, amount_fen, fee_fen,"
            " at) FROM STDIN",
            buffer,
        )


def _stage_totals() -> tuple[int, int, int, int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), COALESCE(sum(amount_fen) FILTER (WHERE kind = 'pay'), 0),"
            " COALESCE(sum(amount_fen) FILTER (WHERE kind = 'refund'), 0), COALESCE(sum(fee_fen), 0)"
            " FROM payments_stage_line"
        )
        return cur.fetchone()


def _copy_wechat_bill(data: bytes) -> None:
    """WeChat Pay's trade bill loaded by the database itself: its rows COPYed as CSV into a scratch table,
    converted to fen there (``numeric``, exact) into the scratch table of lines; the summary row checked
    against what was loaded. The same lines as ``wechat.bill_parse`` reads, a million in seconds."""
    col, body, summary = wechat.bill_body(data)
    width = len(col)
    c = {name: f"c{i + 1}" for name, i in col.items()}
    with connection.cursor() as cur:
        columns = ", ".join(f"c{i + 1} text" for i in range(width))
        cur.execute(f"CREATE TEMP TABLE payments_bill_stage ({columns}) ON COMMIT DROP")
        cur.cursor.copy_expert("COPY payments_bill_stage FROM STDIN WITH (FORMAT csv)", io.BytesIO(body))
        refund = f"{c['交易状态']} = 'REFUND'"
        cur.execute(
            "INSERT INTO payments_stage_line (kind, out_trade_no, provider_trade_no, out_refund_no,"
            " amount_fen, fee_fen, at)"
            f" SELECT CASE WHEN {refund} THEN 'refund' ELSE 'pay' END, {c['商户订单号']}, {c['微信订单号']},"
            f" CASE WHEN {refund} THEN {c['商户退款单号']} ELSE '' END,"
            f" (CASE WHEN {refund} THEN {c['退款金额']} ELSE {c['应结订单金额']} END)::numeric * 100,"
            f" {c['手续费']}::numeric * 100, ({c['交易时间']} || '+08')::timestamptz"
            " FROM payments_bill_stage"
        )
        cur.execute("DROP TABLE payments_bill_stage")
    count, paid, refunded, _ = _stage_totals()
    if (str(count), fen_of_yuan(summary[1]), fen_of_yuan(summary[2])) != (summary[0], paid, refunded):
        raise ProtocolError(
            f"the trade bill's summary ({summary[0]} rows, {summary[1]} paid, {summary[2]} refunded) does not "
            f"match its rows ({count}, {yuan_text(paid)}, {yuan_text(refunded)})",
            code="bad_statement",
        )


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
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS payments_stage_line")
        cur.execute(STAGE)
    try:
        if channel.provider == Provider.WECHAT:
            _copy_wechat_bill(data)
        else:
            _copy_lines(channel_adapter(channel).statement_parse(data))
    except ProtocolError as exc:
        raise DomainError(
            f"the statement cannot be read: {exc}", code="bad_statement", field="file"
        ) from None
    except (UnicodeDecodeError, ValueError, IndexError, KeyError, DatabaseError) as exc:
        raise DomainError(
            f"the statement cannot be read: {exc}", code="bad_statement", field="file"
        ) from None
    start = dt.datetime.combine(day, dt.time(), tzinfo=BEIJING)
    count, paid, refunded, fees = _stage_totals()
    with connection.cursor() as cur:
        cur.execute("ANALYZE payments_stage_line")  # a scratch table is never analysed by itself
        cur.execute(
            _DIFFERENCES_SQL,
            {"run": run.pk, "channel": channel.pk, "start": start, "end": start + dt.timedelta(days=1)},
        )
        differences = cur.rowcount
        cur.execute("DROP TABLE payments_stage_line")
    lines_differing = ReconException.objects.filter(run=run, statement_fen__isnull=False).count()
    run.lines, run.paid_fen, run.refunded_fen, run.fee_fen = count, paid, refunded, fees
    run.exceptions, run.matched = differences, count - lines_differing
    run.save(update_fields=["lines", "paid_fen", "refunded_fen", "fee_fen", "exceptions", "matched"])
    audit_record(
        action="payments.reconcile",
        actor=actor,
        object_type="statement_run",
        object_id=run.pk,
        data={"channel": channel.code, "date": day.isoformat(), "lines": count, "differences": differences},
    )
    return run


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
