"""Alipay open platform (支付宝开放平台), RSA2.

- Every request is a form to the gateway with the common parameters ``app_id``, ``method``, ``format=JSON``,
  ``charset=utf-8``, ``sign_type=RSA2``, ``timestamp`` (``yyyy-MM-dd HH:mm:ss``), ``version=1.0``,
  ``biz_content`` (JSON) and ``sign``: SHA256withRSA over the other parameters sorted by name, empty ones
  left out, joined as ``k=v&k=v``.
- A response is ``{"<method with _ for .>_response": {...}, "sign": ".."}``, the sign over the response
  node's JSON text exactly as sent; ``code`` ``10000`` is success.
- The asynchronous notification (异步通知) is a form POST (``notify_id``, ``notify_type=trade_status_sync``,
  ``out_trade_no``, ``trade_no``, ``trade_status``, ``total_amount`` in yuan, ``gmt_payment``, …); its sign
  leaves out ``sign`` and ``sign_type``; the answer is the bare text ``success``.
- Methods: ``alipay.trade.app.pay`` (the order string the app hands to the SDK), ``alipay.trade.query``,
  ``alipay.trade.refund`` (``out_request_no``), ``alipay.data.dataservice.bill.downloadurl.query``.
- The statement (账单) is a zip holding GBK CSVs: ``<pid>_<yyyymmdd>_业务明细.csv`` with ``#`` header lines,
  the column row, the detail rows, an end marker and ``#交易合计``/``#退款合计`` footers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
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
    fen_of_yuan,
    http,
    json_dumps,
    rsa_sign,
    rsa_verify,
    yuan_text,
)
from citycard.terminal_kit.beijing import BEIJING

BILL_COLUMNS = [
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称",
    "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）",
    "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）",
    "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注",
]  # fmt: skip
TIME = "%Y-%m-%d %H:%M:%S"


def sign_content(params: dict[str, str], *, exclude: Iterable[str] = ("sign",)) -> bytes:
    """The text that is signed: parameters sorted by name, empty ones and ``exclude`` left out."""
    skip = set(exclude)
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in skip and v != "").encode()


def params_sign(private_pem: str, params: dict[str, str], *, exclude: Iterable[str] = ("sign",)) -> str:
    return rsa_sign(private_pem, sign_content(params, exclude=exclude))


def params_verify(public_pem: str, params: dict[str, str], *, exclude: Iterable[str] = ("sign",)) -> bool:
    return rsa_verify(public_pem, sign_content(params, exclude=exclude), params.get("sign", ""))


def response_node(method: str) -> str:
    return method.replace(".", "_") + "_response"


def response_write(private_pem: str, method: str, node: dict[str, Any]) -> bytes:
    """The gateway's answer: the node's JSON text signed as it stands in the body."""
    text = json_dumps(node).decode()
    sign = rsa_sign(private_pem, text.encode())
    return f'{{"{response_node(method)}":{text},"sign":"{sign}"}}'.encode()


def response_read(public_pem: str, method: str, body: bytes) -> dict[str, Any]:
    """The response node, its sign verified over the node's text exactly as sent."""
    text = body.decode()
    name = response_node(method)
    match = re.match(r'^\{"' + re.escape(name) + r'":(\{.*\}),"sign":"([^"]+)"\}$', text, re.S)
    if match is None:
        raise ProtocolError(f"not an Alipay {method} response", code="bad_response")
    if not rsa_verify(public_pem, match.group(1).encode(), match.group(2)):
        raise ProtocolError("the Alipay response signature does not verify", code="bad_signature")
    return json.loads(match.group(1))


class Alipay:
    """The city's side of Alipay (支付宝)."""

    provider = "alipay"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def _params(self, method: str, biz: dict[str, Any], **extra: str) -> dict[str, str]:
        params = {
            "app_id": self.config.app_id or self.config.merchant_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_now().strftime(TIME),
            "version": "1.0",
            "biz_content": json_dumps(biz).decode(),
            **extra,
        }
        params["sign"] = params_sign(self.config.private_key_pem, params)
        return params

    def _call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        params = self._params(method, biz)
        reply = http(
            "POST",
            self.config.gateway_url,
            body=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if reply.status != 200:
            raise ProtocolError(f"the Alipay gateway answered HTTP {reply.status}", code="unreachable")
        return response_read(self.config.peer_public_key_pem, method, reply.body)

    def order_create(self, *, out_trade_no: str, amount_fen: int, description: str) -> dict[str, Any]:
        """App payment (APP支付): the signed order string the app hands to the Alipay SDK; nothing is sent
        to the gateway until the payer confirms in Alipay."""
        biz = {
            "out_trade_no": out_trade_no,
            "total_amount": yuan_text(amount_fen),
            "subject": description,
            "product_code": "QUICK_MSECURITY_PAY",
        }
        params = self._params("alipay.trade.app.pay", biz, notify_url=self.config.notify_url)
        return {"order_string": urllib.parse.urlencode(params), "gateway": self.config.gateway_url}

    def collect(
        self, *, out_trade_no: str, amount_fen: int, agreement_no: str, description: str
    ) -> dict[str, Any]:
        """Withholding under the payer's agreement (商户代扣, ``alipay.trade.pay`` with ``product_code``
        ``GENERAL_WITHHOLDING`` and ``agreement_params``): the gateway answers at once; the notification
        follows as for any payment."""
        params = self._params(
            "alipay.trade.pay",
            {
                "out_trade_no": out_trade_no,
                "total_amount": yuan_text(amount_fen),
                "subject": description,
                "product_code": "GENERAL_WITHHOLDING",
                "agreement_params": {"agreement_no": agreement_no},
            },
            notify_url=self.config.notify_url,
        )
        reply = http(
            "POST",
            self.config.gateway_url,
            body=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if reply.status != 200:
            raise ProtocolError(f"the Alipay gateway answered HTTP {reply.status}", code="unreachable")
        node = response_read(self.config.peer_public_key_pem, "alipay.trade.pay", reply.body)
        if node.get("code") not in {"10000", "10003"}:  # 10003: waiting for the payer's side
            raise ProtocolError(
                f"Alipay refused the withholding: {node.get('sub_code')} {node.get('sub_msg')}"
            )
        return {
            "agreement_no": agreement_no,
            "out_trade_no": out_trade_no,
            "trade_no": node.get("trade_no", ""),
        }

    def notification_parse(self, *, headers: dict[str, str], body: bytes) -> PaymentResult:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
        if not params_verify(self.config.peer_public_key_pem, form, exclude=("sign", "sign_type")):
            raise ProtocolError("the Alipay notification signature does not verify", code="bad_signature")
        if form.get("app_id") != (self.config.app_id or self.config.merchant_id):
            raise ProtocolError("the notification is for another app", code="bad_signature")
        status = form.get("trade_status", "")
        return PaymentResult(
            out_trade_no=form["out_trade_no"],
            paid=status in {"TRADE_SUCCESS", "TRADE_FINISHED"},
            amount_fen=fen_of_yuan(form.get("total_amount", "0")),
            provider_trade_no=form.get("trade_no", ""),
            paid_at=_at(form.get("gmt_payment")),
            notify_id=form.get("notify_id", ""),
            state=status,
        )

    def notification_ack(self, *, ok: bool) -> Reply:
        return Reply(200, b"success" if ok else b"failure", {"Content-Type": "text/plain"})

    def order_query(self, *, out_trade_no: str) -> PaymentResult:
        node = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        if node.get("code") != "10000":
            return PaymentResult(out_trade_no=out_trade_no, paid=False, state=node.get("sub_code", "unknown"))
        return PaymentResult(
            out_trade_no=out_trade_no,
            paid=node.get("trade_status") in {"TRADE_SUCCESS", "TRADE_FINISHED"},
            amount_fen=fen_of_yuan(node.get("total_amount", "0")),
            provider_trade_no=node.get("trade_no", ""),
            paid_at=_at(node.get("send_pay_date")),
            state=node.get("trade_status", ""),
        )

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
    ) -> RefundResult:
        node = self._call(
            "alipay.trade.refund",
            {
                "out_trade_no": out_trade_no,
                "refund_amount": yuan_text(amount_fen),
                "out_request_no": out_refund_no,
            },
        )
        ok = node.get("code") == "10000" and node.get("fund_change") == "Y"
        return RefundResult(
            out_refund_no=out_refund_no,
            succeeded=ok,
            provider_refund_no=node.get("trade_no", ""),
            state=node.get("sub_code", "") or ("SUCCESS" if ok else "FAIL"),
        )

    def statement_fetch(self, *, day: dt.date) -> bytes:
        node = self._call(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "trade", "bill_date": day.isoformat()},
        )
        if node.get("code") != "10000":
            raise ProtocolError(f"no Alipay bill for {day}: {node.get('sub_msg', node.get('msg'))}")
        reply = http("GET", node["bill_download_url"])
        if reply.status != 200:
            raise ProtocolError(f"the Alipay bill of {day} could not be downloaded ({reply.status})")
        return reply.body

    def statement_parse(self, data: bytes) -> Iterator[StatementLine]:
        return bill_parse(data)


def _at(text: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(text, TIME).replace(tzinfo=BEIJING) if text else None


def bill_write(rows: Iterable[dict[str, Any]], *, pid: str, day: dt.date) -> bytes:
    """The day's bill as Alipay packs it: a zip of the detail CSV and its summary, GBK."""
    out = io.StringIO()
    end = day + dt.timedelta(days=1)
    out.write("#支付宝业务明细查询\r\n")
    out.write(f"#账号：[{pid}]\r\n")
    out.write(f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{end:%Y年%m月%d日} 00:00:00]\r\n")
    out.write(
        "#-----------------------------------------业务明细列表----------------------------------------\r\n"
    )
    out.write(",".join(BILL_COLUMNS) + "\r\n")
    n_pay = n_refund = paid = refunded = 0
    for r in rows:
        refund = r["kind"] == "refund"
        amount = -r["amount_fen"] if refund else r["amount_fen"]
        at = r["at"].astimezone(BEIJING).strftime(TIME)
        fields = [
            r["transaction_id"], r["out_trade_no"], "退款" if refund else "交易", "市民卡账户充值", at, at,
            "", "", "", "", "sandbox***@alipay.com", yuan_text(amount), yuan_text(amount), "0.00", "0.00",
            "0.00", "0.00", "0.00", "", "0.00", "0.00", r.get("out_refund_no", "") if refund else "",
            yuan_text(-r["fee_fen"] if not refund else r["fee_fen"]), "0.00", "",
        ]  # fmt: skip
        out.write(",".join(f + "\t" if i in (0, 1) else f for i, f in enumerate(fields)) + "\r\n")
        if refund:
            n_refund, refunded = n_refund + 1, refunded + r["amount_fen"]
        else:
            n_pay, paid = n_pay + 1, paid + r["amount_fen"]
    out.write(
        "#-----------------------------------------业务明细列表结束------------------------------------\r\n"
    )
    out.write(f"#交易合计：{n_pay}笔，商家实收共{yuan_text(paid)}元\r\n")
    out.write(f"#退款合计：{n_refund}笔，商家实收共{yuan_text(-refunded)}元\r\n")
    out.write(f"#导出时间：[{beijing_now():%Y年%m月%d日 %H:%M:%S}]\r\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{pid}_{day:%Y%m%d}_业务明细.csv", out.getvalue().encode("gbk"))
        z.writestr(
            f"{pid}_{day:%Y%m%d}_业务明细(汇总).csv",
            f"#支付宝业务汇总查询\r\n交易笔数,退款笔数,订单金额（元）\r\n{n_pay},{n_refund},{yuan_text(paid)}\r\n".encode(
                "gbk"
            ),
        )
    return buffer.getvalue()


FOOTER = re.compile(r"^#(交易|退款)合计：(\d+)笔，商家实收共(-?[\d.]+)元")


def bill_parse(data: bytes) -> Iterator[StatementLine]:
    """Read the bill's detail CSV out of the zip (or the CSV itself); the footers' counts and totals are
    checked against the rows."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            name = next((n for n in z.namelist() if n.endswith("业务明细.csv")), None)
            if name is None:
                raise ProtocolError("the Alipay bill zip has no 业务明细.csv", code="bad_statement")
            data = z.read(name)
    text = data.decode("gbk")
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(BILL_COLUMNS[0]))
    except StopIteration:
        raise ProtocolError("not an Alipay bill (its column row is missing)", code="bad_statement") from None
    col = {name: i for i, name in enumerate(lines[start].split(","))}
    totals = {"交易": [0, 0], "退款": [0, 0]}
    footers: dict[str, tuple[int, int]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            m = FOOTER.match(line)
            if m:
                footers[m.group(1)] = (int(m.group(2)), fen_of_yuan(m.group(3)))
            continue
        if not line.strip():
            continue
        f = [v.strip() for v in next(csv.reader([line]))]
        kind = f[col["业务类型"]]
        amount = fen_of_yuan(f[col["商家实收（元）"]])
        at = dt.datetime.strptime(f[col["完成时间"]], TIME).replace(tzinfo=BEIJING)
        fee = -fen_of_yuan(f[col["服务费（元）"]])
        totals[kind][0] += 1
        totals[kind][1] += amount
        if kind == "退款":
            refund_no = f[col["退款批次号/请求号"]]
            yield StatementLine(
                "refund", f[col["商户订单号"]], f[col["支付宝交易号"]], -amount, fee, refund_no, at
            )
        else:
            yield StatementLine("pay", f[col["商户订单号"]], f[col["支付宝交易号"]], amount, fee, "", at)
    for kind in ("交易", "退款"):
        if footers.get(kind) != tuple(totals[kind]):
            raise ProtocolError(
                f"the Alipay bill's {kind}合计 {footers.get(kind)} does not match its rows {tuple(totals[kind])}",
                code="bad_statement",
            )
