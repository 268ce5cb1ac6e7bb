"""WeChat Pay API v3 (微信支付 APIv3), direct merchant (直连商户).

- Requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",
  timestamp="..",serial_no=".."``; the signature is SHA256withRSA of ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``
  with the merchant's API certificate key.
- Responses and notifications are signed by the platform: headers ``Wechatpay-Timestamp``,
  ``Wechatpay-Nonce``, ``Wechatpay-Signature``, ``Wechatpay-Serial`` over ``TIMESTAMP\\nNONCE\\nBODY\\n``.
- A notification's ``resource`` is AEAD_AES_256_GCM with the APIv3 key (``ciphertext``, ``nonce``,
  ``associated_data``); it decrypts to the transaction (``out_trade_no``, ``transaction_id``,
  ``trade_state``, ``amount.total`` in fen, ``success_time``).
- Order: ``POST /v3/pay/transactions/app`` → ``prepay_id``; query ``GET
  /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``; refund ``POST /v3/refund/domestic/refunds``;
  statement ``GET /v3/bill/tradebill?bill_date=&bill_type=ALL`` → ``download_url``.
- The trade bill (交易账单) is CSV: a header row, every field of the detail rows prefixed with a backquote
  (`` ` ``), amounts in yuan, then the summary header (总交易单数,…) and its backquoted row.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from citycard.tenants.payments.protocols import (
    ChannelConfig,
    PaymentResult,
    ProtocolError,
    RefundResult,
    Reply,
    StatementLine,
    fen_of_yuan,
    http,
    json_dumps,
    rsa_sign,
    rsa_verify,
    yuan_text,
)
from citycard.terminal_kit.beijing import BEIJING

SCHEME = "WECHATPAY2-SHA256-RSA2048"
BILL_HEADER = [
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
    "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号",
    "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包",
    "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
]  # fmt: skip
SUMMARY_HEADER = [
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额", "申请退款总金额",
]  # fmt: skip


def authorization(config: ChannelConfig, method: str, url_path: str, body: bytes) -> str:
    """The request's ``Authorization`` header (请求签名)."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    message = f"{method}\n{url_path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = rsa_sign(config.private_key_pem, message)
    return (
        f'{SCHEME} mchid="{config.merchant_id}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{config.serial_no}"'
    )


def authorization_parse(header: str) -> dict[str, str]:
    if not header.startswith(SCHEME + " "):
        raise ProtocolError("not a WECHATPAY2-SHA256-RSA2048 authorization", code="bad_signature")
    fields = {}
    for part in header[len(SCHEME) + 1 :].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value.strip('"')
    return fields


def authorization_verify(header: str, public_pem: str, method: str, url_path: str, body: bytes) -> dict:
    """The sandbox's check of a merchant request; the parsed fields, or ProtocolError."""
    fields = authorization_parse(header)
    message = f"{method}\n{url_path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n".encode()
    if not rsa_verify(public_pem, message + body + b"\n", fields.get("signature", "")):
        raise ProtocolError("the request signature does not verify", code="bad_signature")
    return fields


def signed_headers(config: ChannelConfig, body: bytes) -> dict[str, str]:
    """The platform's signature headers on a response or notification (应答签名)."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(config.private_key_pem, message),
        "Wechatpay-Serial": config.serial_no,
        "Content-Type": "application/json",
    }


def _header(headers: dict[str, str], name: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get(name.lower(), "")


def signed_headers_verify(config: ChannelConfig, headers: dict[str, str], body: bytes) -> None:
    serial = _header(headers, "Wechatpay-Serial")
    if config.peer_serial_no and serial != config.peer_serial_no:
        raise ProtocolError(f"unknown platform certificate serial {serial!r}", code="bad_signature")
    timestamp = _header(headers, "Wechatpay-Timestamp")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        raise ProtocolError("the notification's timestamp is more than 5 minutes off", code="stale")
    message = f"{timestamp}\n{_header(headers, 'Wechatpay-Nonce')}\n".encode() + body + b"\n"
    if not rsa_verify(config.peer_public_key_pem, message, _header(headers, "Wechatpay-Signature")):
        raise ProtocolError("the WeChat Pay signature does not verify", code="bad_signature")


def resource_encrypt(api_v3_key: str, plaintext: dict[str, Any], associated_data: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 characters, as the platform sends
    ciphertext = AESGCM(api_v3_key.encode()).encrypt(
        nonce.encode(), json_dumps(plaintext), associated_data.encode()
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "original_type": "transaction",
        "nonce": nonce,
    }


def resource_decrypt(api_v3_key: str, resource: dict[str, str]) -> dict[str, Any]:
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise ProtocolError(f"unknown resource algorithm {resource.get('algorithm')!r}")
    try:
        plaintext = AESGCM(api_v3_key.encode()).decrypt(
            resource["nonce"].encode(),
            base64.b64decode(resource["ciphertext"]),
            resource.get("associated_data", "").encode(),
        )
    except (InvalidTag, KeyError, ValueError):
        raise ProtocolError("the notification resource does not decrypt", code="bad_signature") from None
    return json.loads(plaintext)


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


def transaction_result(tx: dict[str, Any], notify_id: str = "") -> PaymentResult:
    paid = tx.get("trade_state") == "SUCCESS"
    return PaymentResult(
        out_trade_no=tx["out_trade_no"],
        paid=paid,
        amount_fen=int(tx.get("amount", {}).get("total", 0)),
        provider_trade_no=tx.get("transaction_id", ""),
        paid_at=dt.datetime.fromisoformat(tx["success_time"]) if tx.get("success_time") else None,
        notify_id=notify_id,
        state=tx.get("trade_state", ""),
    )


class WeChatPay:
    """The city's side of WeChat Pay APIv3."""

    provider = "wechat"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        body = json_dumps(payload) if payload is not None else b""
        reply = http(
            method,
            self.config.gateway_url.rstrip("/") + path,
            body=body if payload is not None else None,
            headers={
                "Authorization": authorization(self.config, method, path, body),
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        if reply.status == 404:
            return {"code": "ORDER_NOT_EXIST"}
        signed_headers_verify(self.config, reply.headers, reply.body)
        answer = json.loads(reply.body or b"{}")
        if reply.status >= 300:
            raise ProtocolError(f"WeChat Pay refused: {answer.get('code')} {answer.get('message')}")
        return answer

    def order_create(self, *, out_trade_no: str, amount_fen: int, description: str) -> dict[str, Any]:
        """APP order (APP下单): the prepay id, and the parameters the app passes to the WeChat SDK, signed."""
        answer = self._call(
            "POST",
            "/v3/pay/transactions/app",
            {
                "appid": self.config.app_id,
                "mchid": self.config.merchant_id,
                "description": description,
                "out_trade_no": out_trade_no,
                "notify_url": self.config.notify_url,
                "amount": {"total": amount_fen, "currency": "CNY"},
            },
        )
        prepay_id = answer["prepay_id"]
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        message = f"{self.config.app_id}\n{timestamp}\n{nonce}\n{prepay_id}\n".encode()
        return {
            "appid": self.config.app_id,
            "partnerid": self.config.merchant_id,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": nonce,
            "timestamp": timestamp,
            "sign": rsa_sign(self.config.private_key_pem, message),
        }

    def collect(
        self, *, out_trade_no: str, amount_fen: int, agreement_no: str, description: str
    ) -> dict[str, Any]:
        """Withholding under the payer's contract (委托代扣, ``POST /v3/papay/pay/transactions/apply``): accepted
        now, the result notified like a payment (TRANSACTION.SUCCESS) or asked for with the order query."""
        answer = self._call(
            "POST",
            "/v3/papay/pay/transactions/apply",
            {
                "appid": self.config.app_id,
                "mchid": self.config.merchant_id,
                "description": description,
                "out_trade_no": out_trade_no,
                "notify_url": self.config.notify_url,
                "contract_id": agreement_no,
                "amount": {"total": amount_fen, "currency": "CNY"},
            },
        )
        return {
            "contract_id": agreement_no,
            "out_trade_no": out_trade_no,
            "accepted": answer.get("trade_state", "ACCEPT"),
        }

    def notification_parse(self, *, headers: dict[str, str], body: bytes) -> PaymentResult:
        signed_headers_verify(self.config, headers, body)
        notice = json.loads(body)
        if notice.get("event_type") != "TRANSACTION.SUCCESS":
            raise ProtocolError(f"not a payment notification: {notice.get('event_type')}", code="ignored")
        tx = resource_decrypt(self.config.secret, notice["resource"])
        if tx.get("mchid") != self.config.merchant_id:
            raise ProtocolError("the notification is for another merchant", code="bad_signature")
        return transaction_result(tx, notify_id=notice["id"])

    def notification_ack(self, *, ok: bool) -> Reply:
        if ok:
            return Reply(204)
        return Reply(
            500, json_dumps({"code": "FAIL", "message": "失败"}), {"Content-Type": "application/json"}
        )

    def order_query(self, *, out_trade_no: str) -> PaymentResult:
        path = f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(out_trade_no)}?mchid={self.config.merchant_id}"
        tx = self._call("GET", path)
        if tx.get("code") == "ORDER_NOT_EXIST":
            return PaymentResult(out_trade_no=out_trade_no, paid=False, state="ORDER_NOT_EXIST")
        return transaction_result(tx)

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
    ) -> RefundResult:
        answer = self._call(
            "POST",
            "/v3/refund/domestic/refunds",
            {
                "out_trade_no": out_trade_no,
                "out_refund_no": out_refund_no,
                "reason": "充值退款",
                "amount": {"refund": amount_fen, "total": total_fen, "currency": "CNY"},
            },
        )
        return RefundResult(
            out_refund_no=answer["out_refund_no"],
            succeeded=answer.get("status") in {"SUCCESS", "PROCESSING"},
            provider_refund_no=answer.get("refund_id", ""),
            state=answer.get("status", ""),
        )

    def statement_fetch(self, *, day: dt.date) -> bytes:
        answer = self._call("GET", f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL")
        reply = http(
            "GET",
            answer["download_url"],
            headers={"Authorization": authorization(self.config, "GET", answer["download_url"], b"")},
        )
        if reply.status != 200:
            raise ProtocolError(f"the trade bill of {day} could not be downloaded ({reply.status})")
        return reply.body

    def statement_parse(self, data: bytes) -> Iterator[StatementLine]:
        return bill_parse(data)


def _bq(value: str) -> str:
    return "`" + value


def bill_write(rows: Iterable[dict[str, Any]], *, app_id: str, merchant_id: str) -> bytes:
    """The trade bill (交易账单) as the platform writes it: ``rows`` are dicts with ``at``, ``transaction_id``,
    ``out_trade_no``, ``kind`` (pay/refund), ``amount_fen``, ``fee_fen``, and for refunds ``refund_id`` and
    ``out_refund_no``."""
    out = io.StringIO()
    out.write(",".join(BILL_HEADER) + "\r\n")
    count = paid = refunded = fees = 0
    for r in rows:
        refund = r["kind"] == "refund"
        fields = [
            r["at"].astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), app_id, merchant_id, "0", "",
            r["transaction_id"], r["out_trade_no"], r.get("openid", "oSandboxPayer"), "APP",
            "REFUND" if refund else "SUCCESS", "OTHERS", "CNY",
            yuan_text(0 if refund else r["amount_fen"]), "0.00",
            r.get("refund_id", "") if refund else "0", r.get("out_refund_no", "") if refund else "0",
            yuan_text(r["amount_fen"] if refund else 0), "0.00", "ORIGINAL" if refund else "",
            "SUCCESS" if refund else "", "市民卡账户充值", "",
            yuan_text(-r["fee_fen"] if refund else r["fee_fen"]), "0.60%",
            yuan_text(0 if refund else r["amount_fen"]), yuan_text(r["amount_fen"] if refund else 0), "",
        ]  # fmt: skip
        out.write(",".join(_bq(f) for f in fields) + "\r\n")
        count += 1
        if refund:
            refunded += r["amount_fen"]
            fees -= r["fee_fen"]
        else:
            paid += r["amount_fen"]
            fees += r["fee_fen"]
    out.write(",".join(SUMMARY_HEADER) + "\r\n")
    summary = [
        str(count), yuan_text(paid), yuan_text(refunded), "0.00", yuan_text(fees), yuan_text(paid), yuan_text(refunded),
    ]  # fmt: skip
    out.write(",".join(_bq(f) for f in summary) + "\r\n")
    return out.getvalue().encode("utf-8")


def bill_parse(data: bytes) -> Iterator[StatementLine]:
    """Read a trade bill: the detail rows between the header and the summary, backquotes stripped; the
    summary's count and totals are checked against the rows (a truncated file is refused)."""
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or header[:2] != BILL_HEADER[:2]:
        raise ProtocolError("not a WeChat Pay trade bill (its header row is missing)", code="bad_statement")
    col = {name: i for i, name in enumerate(header)}
    c_at, c_state, c_fee = col["交易时间"], col["交易状态"], col["手续费"]
    c_no, c_tx, c_refund_no = col["商户订单号"], col["微信订单号"], col["商户退款单号"]
    c_refund, c_amount = col["退款金额"], col["应结订单金额"]
    count = paid = refunded = 0
    summary: list[str] | None = None
    for row in reader:  # only the columns used are read (a statement has a million lines)
        if not row:
            continue
        if row[0] == SUMMARY_HEADER[0]:
            summary = [f.lstrip("`") for f in next(reader, [])]
            break
        at = dt.datetime.fromisoformat(row[c_at][1:] + "+08:00")
        fee = fen_of_yuan(row[c_fee][1:])
        if row[c_state] == "`REFUND":
            amount = fen_of_yuan(row[c_refund][1:])
            refunded += amount
            yield StatementLine("refund", row[c_no][1:], row[c_tx][1:], amount, fee, row[c_refund_no][1:], at)
        else:
            amount = fen_of_yuan(row[c_amount][1:])
            paid += amount
            yield StatementLine("pay", row[c_no][1:], row[c_tx][1:], amount, fee, "", at)
        count += 1
    if summary is None:
        raise ProtocolError("the trade bill has no summary rows: truncated?", code="bad_statement")
    if int(summary[0]) != count or fen_of_yuan(summary[1]) != paid or fen_of_yuan(summary[2]) != refunded:
        raise ProtocolError(
            f"the trade bill's summary ({summary[0]} rows, {summary[1]} paid, {summary[2]} refunded) does not "
            f"match its rows ({count}, {yuan_text(paid)}, {yuan_text(refunded)})",
            code="bad_statement",
        )


def bill_body(data: bytes) -> tuple[dict[str, int], bytes, list[str]]:
    """The trade bill split for a bulk load: its column positions by header name, the detail rows as plain
    CSV (backquotes removed), and the summary row's fields. The database then reads the rows itself (COPY),
    a million lines in seconds; the summary is checked against what was loaded."""
    text = data.decode("utf-8-sig")
    first_end = text.find("\n")
    header = next(csv.reader([text[:first_end]]), [])
    if header[:2] != BILL_HEADER[:2]:
        raise ProtocolError("not a WeChat Pay trade bill (its header row is missing)", code="bad_statement")
    at = text.rfind(SUMMARY_HEADER[0] + ",")
    if at < 0:
        raise ProtocolError("the trade bill has no summary rows: truncated?", code="bad_statement")
    summary_line = text[at:].splitlines()[1:2]
    if not summary_line:
        raise ProtocolError("the trade bill has no summary rows: truncated?", code="bad_statement")
    summary = [f.lstrip("`") for f in next(csv.reader(summary_line))]
    body = text[first_end + 1 : at].replace("`", "")
    return {name: i for i, name in enumerate(header)}, body.encode("utf-8"), summary
