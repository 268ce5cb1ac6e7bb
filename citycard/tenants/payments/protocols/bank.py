"""The card's bank (合作银行, the social-security card's financial account, 社保卡金融账户): a host-to-host
JSON message, signed.

Every message is ``{"head": {"msg_type", "msg_id", "mer_no", "send_time"}, "body": {...}}``, sent as the
HTTP body with ``X-Bank-Signature``: SHA256withRSA over the body bytes, base64, and ``X-Bank-Serial``
naming the key. Types: ``PAY_ORDER`` (the bank's payment page token), ``PAY_RESULT`` (the bank's
notification, ``result`` ``S`` success), ``PAY_QUERY``, ``REFUND``, ``WITHHOLD`` (代扣 under an agreement),
``STATEMENT`` (the day's file).

The statement is text, one record a line, fields separated by ``|``: ``H|mer_no|yyyymmdd|count``, then
``D|seq|bank_serial|out_trade_no|PAY or RFD|amount_fen|fee_fen|yyyymmddhhmmss|out_refund_no``, then
``T|count|pay_total_fen|refund_total_fen``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
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
    json_dumps,
    rsa_sign,
    rsa_verify,
)
from citycard.terminal_kit.beijing import BEIJING

TIME = "%Y%m%d%H%M%S"


def message(config: ChannelConfig, msg_type: str, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    payload = json_dumps(
        {
            "head": {
                "msg_type": msg_type,
                "msg_id": secrets.token_hex(12),
                "mer_no": config.merchant_id,
                "send_time": beijing_now().strftime(TIME),
            },
            "body": body,
        }
    )
    return payload, {
        "Content-Type": "application/json",
        "X-Bank-Signature": rsa_sign(config.private_key_pem, payload),
        "X-Bank-Serial": config.serial_no,
    }


def message_read(public_pem: str, headers: dict[str, str], payload: bytes) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in headers.items()}
    if not rsa_verify(public_pem, payload, lowered.get("x-bank-signature", "")):
        raise ProtocolError("the bank message's signature does not verify", code="bad_signature")
    return json.loads(payload)


class CardBank:
    """The city's side of the card bank's host-to-host link."""

    provider = "bank"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def _call(self, msg_type: str, body: dict[str, Any]) -> dict[str, Any]:
        payload, headers = message(self.config, msg_type, body)
        reply = http("POST", self.config.gateway_url.rstrip("/") + "/h2h", body=payload, headers=headers)
        if reply.status != 200:
            raise ProtocolError(f"the bank answered HTTP {reply.status}", code="unreachable")
        return message_read(self.config.peer_public_key_pem, reply.headers, reply.body)["body"]

    def order_create(self, *, out_trade_no: str, amount_fen: int, description: str) -> dict[str, Any]:
        answer = self._call(
            "PAY_ORDER",
            {
                "out_trade_no": out_trade_no,
                "amount_fen": amount_fen,
                "summary": description,
                "notify_url": self.config.notify_url,
            },
        )
        return {"pay_token": answer["pay_token"], "pay_url": answer["pay_url"]}

    def collect(
        self, *, out_trade_no: str, amount_fen: int, agreement_no: str, description: str
    ) -> dict[str, Any]:
        """Withholding from the card's financial account under the cardholder's agreement (``WITHHOLD``):
        accepted now (``result`` ``P``), the result sent as a ``PAY_RESULT``."""
        answer = self._call(
            "WITHHOLD",
            {
                "out_trade_no": out_trade_no,
                "amount_fen": amount_fen,
                "agreement_no": agreement_no,
                "summary": description,
                "notify_url": self.config.notify_url,
            },
        )
        if answer.get("result") not in {"P", "S"}:
            raise ProtocolError(
                f"the bank refused the withholding: {answer.get('reason', answer.get('result'))}"
            )
        return {
            "agreement_no": agreement_no,
            "out_trade_no": out_trade_no,
            "result": answer.get("result", ""),
        }

    def notification_parse(self, *, headers: dict[str, str], body: bytes) -> PaymentResult:
        msg = message_read(self.config.peer_public_key_pem, headers, body)
        head, b = msg["head"], msg["body"]
        if head.get("msg_type") != "PAY_RESULT" or head.get("mer_no") != self.config.merchant_id:
            raise ProtocolError("not a payment result for this merchant", code="bad_signature")
        return _result(b, notify_id=head["msg_id"])

    def notification_ack(self, *, ok: bool) -> Reply:
        return Reply(200 if ok else 500, json_dumps({"ret": "0000" if ok else "9999"}))

    def order_query(self, *, out_trade_no: str) -> PaymentResult:
        return _result(
            self._call("PAY_QUERY", {"out_trade_no": out_trade_no}) | {"out_trade_no": out_trade_no}
        )

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
    ) -> RefundResult:
        answer = self._call(
            "REFUND", {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "amount_fen": amount_fen}
        )
        return RefundResult(
            out_refund_no=out_refund_no,
            succeeded=answer.get("result") == "S",
            provider_refund_no=answer.get("bank_serial", ""),
            state=answer.get("result", ""),
        )

    def statement_fetch(self, *, day: dt.date) -> bytes:
        answer = self._call("STATEMENT", {"date": day.strftime("%Y%m%d")})
        return answer["file"].encode("utf-8")

    def statement_parse(self, data: bytes) -> Iterator[StatementLine]:
        return file_parse(data)


def _result(b: dict[str, Any], notify_id: str = "") -> PaymentResult:
    return PaymentResult(
        out_trade_no=b["out_trade_no"],
        paid=b.get("result") == "S",
        amount_fen=int(b.get("amount_fen", 0)),
        provider_trade_no=b.get("bank_serial", ""),
        paid_at=dt.datetime.strptime(b["paid_time"], TIME).replace(tzinfo=BEIJING)
        if b.get("paid_time")
        else None,
        notify_id=notify_id,
        state=b.get("result", ""),
    )


def file_write(rows: Iterable[dict[str, Any]], *, merchant_id: str, day: dt.date) -> bytes:
    rows = list(rows)
    lines = [f"H|{merchant_id}|{day:%Y%m%d}|{len(rows)}"]
    paid = refunded = 0
    for seq, r in enumerate(rows, 1):
        refund = r["kind"] == "refund"
        serial = r.get("refund_id", "") if refund else r["transaction_id"]
        at = r["at"].astimezone(BEIJING).strftime(TIME)
        lines.append(
            f"D|{seq}|{serial}|{r['out_trade_no']}|{'RFD' if refund else 'PAY'}|{r['amount_fen']}|"
            f"{-r['fee_fen'] if refund else r['fee_fen']}|{at}|{r.get('out_refund_no', '') if refund else ''}"
        )
        if refund:
            refunded += r["amount_fen"]
        else:
            paid += r["amount_fen"]
    lines.append(f"T|{len(rows)}|{paid}|{refunded}")
    return ("\n".join(lines) + "\n").encode()


def file_parse(data: bytes) -> Iterator[StatementLine]:
    lines = data.decode("utf-8").splitlines()
    if not lines or not lines[0].startswith("H|") or not lines[-1].startswith("T|"):
        raise ProtocolError("not a bank statement (header or trailer record missing)", code="bad_statement")
    count = paid = refunded = 0
    for line in lines[1:-1]:
        f = line.split("|")
        if f[0] != "D" or len(f) != 9:
            raise ProtocolError(f"bad statement record: {line[:40]!r}", code="bad_statement")
        at = dt.datetime.strptime(f[7], TIME).replace(tzinfo=BEIJING)
        amount, fee = int(f[5]), int(f[6])
        count += 1
        if f[4] == "RFD":
            refunded += amount
            yield StatementLine("refund", f[3], f[2], amount, fee, f[8], at)
        else:
            paid += amount
            yield StatementLine("pay", f[3], f[2], amount, fee, "", at)
    trailer = lines[-1].split("|")
    if trailer[1:] != [str(count), str(paid), str(refunded)]:
        raise ProtocolError(
            f"the statement's trailer {lines[-1]!r} does not match its records", code="bad_statement"
        )
