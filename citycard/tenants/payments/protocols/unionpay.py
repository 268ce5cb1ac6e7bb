"""UnionPay online payments (银联全渠道, ACP 5.1.0), ``signMethod=01``.

- Every message is a form of named fields (``version=5.1.0``, ``encoding=UTF-8``, ``txnType``,
  ``txnSubType``, ``bizType``, ``channelType``, ``accessType``, ``merId``, ``orderId``, ``txnTime``
  ``YYYYMMDDhhmmss``, ``txnAmt`` in fen, ``currencyCode=156``, ``backUrl``, ``certId``, ``signature``).
  The signature: the other fields sorted by name joined as ``k=v&k=v``, its SHA-256 in lower-case hex,
  that hex text signed SHA256withRSA with the signing certificate's key, base64.
- Consume (消费, ``txnType=01``) through ``appTransReq.do`` answers the ``tn`` the app hands to the
  UnionPay SDK; the result comes to ``backUrl`` (后台通知, ``respCode=00``, ``queryId``, ``settleDate``),
  answered with HTTP 200. Query (``txnType=00``, ``queryTrans.do``: ``origRespCode``); refund (退货,
  ``txnType=04``, ``origQryId``, ``backTransReq.do``); the statement through ``fileTransfer.do``
  (``txnType=76``, ``fileType=00``): a zip (base64 in ``fileContent``) holding the fixed-width
  transaction file (流水文件, ``INN<yymmdd>88ZM_<merId>``) in GBK, laid out by ``LAYOUT`` in bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import secrets
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from citycard.tenants.payments.protocols import (
    ChannelConfig,
    PaymentResult,
    ProtocolError,
    RefundResult,
    Reply,
    StatementLine,
    beijing_now,
    http,
    rsa_sign,
    rsa_verify,
)
from citycard.terminal_kit.beijing import BEIJING

VERSION = "5.1.0"
# The transaction file's fixed-width layout (name, width in bytes of its GBK text); fields are separated by
# one space. A field with Chinese text (the merchant's short name) holds two bytes a character, so a line is
# cut by byte, never by character.
LAYOUT = [
    ("txn_code", 3),  # S22 consume (消费), S30 refund (退货)
    ("acq_ins_code", 11),
    ("fwd_ins_code", 11),
    ("trace_no", 6),
    ("txn_time", 10),  # MMDDhhmmss
    ("pan", 19),
    ("txn_amt", 12),  # fen, zero-padded
    ("mcc", 4),
    ("term_type", 2),
    ("query_id", 21),
    ("pay_type", 2),
    ("order_id", 40),
    ("mer_abbr", 40),  # 商户简称: the (sub-)merchant's short name, GBK
    ("card_type", 2),
    ("orig_query_id", 21),
    ("fee", 13),  # C/D and 12 digits of fen
    ("settle_amt", 13),
]
TXN_PAY, TXN_REFUND = "S22", "S30"


def sign_text(params: dict[str, str]) -> bytes:
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "signature")
    return hashlib.sha256(text.encode()).hexdigest().encode()


def form_sign(private_pem: str, params: dict[str, str]) -> str:
    return rsa_sign(private_pem, sign_text(params))


def form_verify(public_pem: str, params: dict[str, str]) -> bool:
    return rsa_verify(public_pem, sign_text(params), params.get("signature", ""))


def form_parse(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}


def form_encode(params: dict[str, str]) -> bytes:
    return urllib.parse.urlencode(params).encode()


class UnionPay:
    """The city's side of UnionPay ACP (银联全渠道)."""

    provider = "unionpay"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def _base(self, txn_type: str, txn_sub_type: str, biz_type: str) -> dict[str, str]:
        return {
            "version": VERSION,
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": txn_type,
            "txnSubType": txn_sub_type,
            "bizType": biz_type,
            "channelType": "08",
            "accessType": "0",
            "merId": self.config.merchant_id,
            "certId": self.config.serial_no,
            "txnTime": beijing_now().strftime("%Y%m%d%H%M%S"),
        }

    def _call(self, endpoint: str, params: dict[str, str]) -> dict[str, str]:
        params["signature"] = form_sign(self.config.private_key_pem, params)
        reply = http(
            "POST",
            self.config.gateway_url.rstrip("/") + "/gateway/api/" + endpoint,
            body=form_encode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
        )
        if reply.status != 200:
            raise ProtocolError(f"the UnionPay gateway answered HTTP {reply.status}", code="unreachable")
        answer = form_parse(reply.body)
        if not form_verify(self.config.peer_public_key_pem, answer):
            raise ProtocolError("the UnionPay answer's signature does not verify", code="bad_signature")
        return answer

    def order_create(self, *, out_trade_no: str, amount_fen: int, description: str) -> dict[str, Any]:
        params = self._base("01", "01", "000201")
        params.update(
            orderId=out_trade_no,
            txnAmt=str(amount_fen),
            currencyCode="156",
            backUrl=self.config.notify_url,
            orderDesc=description,
        )
        answer = self._call("appTransReq.do", params)
        if answer.get("respCode") != "00":
            raise ProtocolError(
                f"UnionPay refused the order: {answer.get('respCode')} {answer.get('respMsg')}"
            )
        return {"tn": answer["tn"], "mode": "00"}

    def collect(
        self, *, out_trade_no: str, amount_fen: int, agreement_no: str, description: str
    ) -> dict[str, Any]:
        """Collection (代收, ``txnType=11``, ``bizType=000501``) with the payer's token (``tokenPayData``)
        through ``backTransReq.do``: accepted now, the result to ``backUrl`` like a consume."""
        params = self._base("11", "02", "000501")
        params.update(
            orderId=out_trade_no,
            txnAmt=str(amount_fen),
            currencyCode="156",
            backUrl=self.config.notify_url,
            orderDesc=description,
            tokenPayData="{token=" + agreement_no + "&trId=62000000001}",
        )
        answer = self._call("backTransReq.do", params)
        if answer.get("respCode") not in {"00", "03", "04", "05"}:  # 03–05: accepted, result to follow
            raise ProtocolError(
                f"UnionPay refused the collection: {answer.get('respCode')} {answer.get('respMsg')}"
            )
        return {"token": agreement_no, "out_trade_no": out_trade_no, "respCode": answer.get("respCode", "")}

    def notification_parse(self, *, headers: dict[str, str], body: bytes) -> PaymentResult:
        form = form_parse(body)
        if not form_verify(self.config.peer_public_key_pem, form):
            raise ProtocolError("the UnionPay notification signature does not verify", code="bad_signature")
        if form.get("merId") != self.config.merchant_id:
            raise ProtocolError("the notification is for another merchant", code="bad_signature")
        return PaymentResult(
            out_trade_no=form["orderId"],
            paid=form.get("respCode") == "00",
            amount_fen=int(form.get("txnAmt", "0")),
            provider_trade_no=form.get("queryId", ""),
            paid_at=_at(form.get("txnTime")),
            notify_id=f"{form.get('queryId', '')}:{form.get('traceTime', '')}",
            state=form.get("respCode", ""),
        )

    def notification_ack(self, *, ok: bool) -> Reply:
        return Reply(200 if ok else 500, b"ok" if ok else b"fail", {"Content-Type": "text/plain"})

    def order_query(self, *, out_trade_no: str) -> PaymentResult:
        params = self._base("00", "00", "000000")
        params["orderId"] = out_trade_no
        answer = self._call("queryTrans.do", params)
        if answer.get("respCode") != "00":
            return PaymentResult(out_trade_no=out_trade_no, paid=False, state=answer.get("respCode", ""))
        return PaymentResult(
            out_trade_no=out_trade_no,
            paid=answer.get("origRespCode") == "00",
            amount_fen=int(answer.get("txnAmt", "0")),
            provider_trade_no=answer.get("queryId", ""),
            paid_at=_at(answer.get("txnTime")),
            state=answer.get("origRespCode", ""),
        )

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
    ) -> RefundResult:
        original = self.order_query(out_trade_no=out_trade_no)
        params = self._base("04", "00", "000201")
        params.update(
            orderId=out_refund_no,
            origQryId=original.provider_trade_no,
            txnAmt=str(amount_fen),
            currencyCode="156",
            backUrl=self.config.notify_url,
        )
        answer = self._call("backTransReq.do", params)
        return RefundResult(
            out_refund_no=out_refund_no,
            succeeded=answer.get("respCode") == "00",
            provider_refund_no=answer.get("queryId", ""),
            state=answer.get("respCode", ""),
        )

    def statement_fetch(self, *, day: dt.date) -> bytes:
        params = self._base("76", "01", "000000")
        params.update(settleDate=day.strftime("%m%d"), fileType="00")
        answer = self._call("fileTransfer.do", params)
        if answer.get("respCode") != "00":
            raise ProtocolError(f"no UnionPay file for {day}: {answer.get('respMsg')}", code="bad_statement")
        return base64.b64decode(answer["fileContent"])

    def statement_parse(self, data: bytes) -> Iterator[StatementLine]:
        return file_parse(data)


def _at(text: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING) if text else None


def file_name(merchant_id: str, day: dt.date) -> str:
    return f"INN{day:%y%m%d}88ZM_{merchant_id}"


def _signed(fen: int) -> str:
    return ("D" if fen < 0 else "C") + f"{abs(fen):012d}"


def _cell(value: str, width: int) -> bytes:
    """A field of ``width`` bytes of GBK: cut at a character's boundary, padded with spaces."""
    data = value.encode("gbk")
    while len(data) > width:
        value = value[:-1]
        data = value.encode("gbk")
    return data.ljust(width)


def file_write(
    rows: Iterable[dict[str, Any]], *, merchant_id: str, day: dt.date, merchant_name: str = ""
) -> bytes:
    """The day's transaction file, fixed width in GBK bytes, zipped as fileTransfer delivers it; the
    short-name field holds a row's ``merchant_name``, else the file's ``merchant_name``."""
    lines = []
    for r in rows:
        refund = r["kind"] == "refund"
        values = {
            "txn_code": TXN_REFUND if refund else TXN_PAY,
            "acq_ins_code": "48020000",
            "fwd_ins_code": "00010000",
            "trace_no": r["transaction_id"][-6:],
            "txn_time": r["at"].astimezone(BEIJING).strftime("%m%d%H%M%S"),
            "pan": "6216********0018",
            "txn_amt": f"{r['amount_fen']:012d}",
            "mcc": "5399",
            "term_type": "08",
            "query_id": r["refund_id"] if refund else r["transaction_id"],
            "pay_type": "01",
            "order_id": r["out_refund_no"] if refund else r["out_trade_no"],
            "mer_abbr": r.get("merchant_name", merchant_name),
            "card_type": "01",
            "orig_query_id": r["transaction_id"] if refund else "",
            "fee": _signed(-r["fee_fen"] if refund else r["fee_fen"]),
            "settle_amt": _signed(-r["amount_fen"] if refund else r["amount_fen"]),
        }
        lines.append(b" ".join(_cell(values[name], width) for name, width in LAYOUT))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(file_name(merchant_id, day), b"\r\n".join(lines) + b"\r\n")
    return buffer.getvalue()


def file_parse(data: bytes) -> Iterator[StatementLine]:
    """Read the fixed-width transaction file (or its zip); a line of the wrong length is refused. A refund
    line names the refund's own order id; the refunded order is found by ``orig_query_id``, so the line
    carries the refund order id as ``out_refund_no`` and the original query id as ``provider_trade_no``."""
    year = None
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if "ZM_" in n]
            if not names:
                raise ProtocolError("the UnionPay zip has no ZM transaction file", code="bad_statement")
            data = z.read(names[0])
            if names[0].startswith("INN") and names[0][3:5].isdigit():
                year = 2000 + int(names[0][3:5])  # the file's settlement date names the year its lines lack
    width = sum(w for _, w in LAYOUT) + len(LAYOUT) - 1
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) != width:
            raise ProtocolError(f"line {number} is {len(line)} bytes, not {width}", code="bad_statement")
        values, pos = {}, 0
        for name, w in LAYOUT:
            try:
                values[name] = line[pos : pos + w].decode("gbk").strip()
            except UnicodeDecodeError:
                raise ProtocolError(
                    f"line {number}: {name} is not GBK text cut at a character", code="bad_statement"
                ) from None
            pos += w + 1
        year = year or beijing_now().year
        at = dt.datetime.strptime(f"{year}{values['txn_time']}", "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        fee = int(values["fee"][1:]) * (-1 if values["fee"][0] == "D" else 1)
        amount = int(values["txn_amt"])
        if values["txn_code"] == TXN_REFUND:
            yield StatementLine("refund", "", values["orig_query_id"], amount, fee, values["order_id"], at)
        else:
            yield StatementLine("pay", values["order_id"], values["query_id"], amount, fee, "", at)


def new_query_id() -> str:
    return beijing_now().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**7):07d}"
