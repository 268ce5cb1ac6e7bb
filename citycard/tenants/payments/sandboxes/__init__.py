"""Local sandboxes of the four providers (本地沙箱): small HTTP servers speaking each provider's protocol
(``..protocols``), so the tests and the demo run a channel end to end on a machine that reaches no
provider. ``Sandbox.start(provider, ...)`` serves one on 127.0.0.1 and a free port.

What a provider does on its own is driven from here: ``payer_pays`` is the payer confirming in the app;
the notification then goes to the order's notify URL from a thread, signed — now, after ``delay``
seconds, ``replay`` more times, not at all (``drop``) or with another amount (``paid_fen``: the payer paid
what the order did not say). The day's statement (``statement``) is written in the provider's format from
what was paid and refunded; ``statement_add`` and ``statement_omit`` make it disagree with the city's
ledger on purpose (长款, 短款); ``stray_payment`` is a payment for no order of the city that can be refunded
(a 长款 the city holds in suspense). A collection under a standing agreement (代扣) is paid by the
sandbox itself (``autopay``, on by default: the payer is not in the loop) and notified like a payment.
``payout`` is the day's net (paid less refunded less fees) the provider pays to the city's bank.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from citycard.tenants.payments.protocols import (
    ChannelConfig,
    ProtocolError,
    Reply,
    alipay,
    bank,
    beijing_now,
    http,
    json_dumps,
    key_serial,
    rsa_keypair_pem,
    rsa_verify,
    unionpay,
    wechat,
    yuan_text,
)
from citycard.terminal_kit.beijing import BEIJING

FEE_BPS = {"wechat": 60, "alipay": 60, "unionpay": 50, "bank": 0}


@dataclass(frozen=True)
class SandboxKeys:
    """Both sides' keys of one sandbox channel: the merchant's pair, the provider's pair, the APIv3 key."""

    merchant_private: str
    merchant_public: str
    provider_private: str
    provider_public: str
    secret: str

    @classmethod
    def generate(cls) -> SandboxKeys:
        mp, mpub = rsa_keypair_pem()
        pp, ppub = rsa_keypair_pem()
        return cls(mp, mpub, pp, ppub, secrets.token_hex(16))


@dataclass
class SandboxOrder:
    out_trade_no: str
    amount_fen: int
    notify_url: str
    transaction_id: str
    state: str = "NOTPAY"
    paid_fen: int = 0
    paid_at: dt.datetime | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)


class Sandbox:
    """One provider's sandbox. Use ``Sandbox.start`` (and ``stop``) or as a context manager."""

    def __init__(self, provider: str, *, merchant_id: str, app_id: str = "", keys: SandboxKeys) -> None:
        self.provider, self.merchant_id, self.app_id, self.keys = provider, merchant_id, app_id, keys
        self.config = ChannelConfig(
            merchant_id=merchant_id,
            app_id=app_id,
            private_key_pem=keys.provider_private,
            peer_public_key_pem=keys.merchant_public,
            secret=keys.secret,
            serial_no=key_serial(keys.provider_public),
            peer_serial_no=key_serial(keys.merchant_public),
        )
        self.orders: dict[str, SandboxOrder] = {}
        self.tokens: dict[str, str] = {}  # prepay_id / tn / pay_token → out_trade_no
        self.extra_rows: list[dict[str, Any]] = []
        self.omitted: set[str] = set()
        self.deliveries: list[tuple[str, int]] = []  # (out_trade_no, HTTP status) of every notification sent
        self.agreements: dict[str, str] = {}  # out_trade_no → the agreement a collection was made under
        self.autopay = True
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.threads: list[threading.Thread] = []

    # --- serving ------------------------------------------------------------------------------------

    @classmethod
    def start(cls, provider: str, *, merchant_id: str, app_id: str = "", keys: SandboxKeys | None = None):
        sandbox = cls(provider, merchant_id=merchant_id, app_id=app_id, keys=keys or SandboxKeys.generate())
        sandbox.serve()
        return sandbox

    def serve(self) -> None:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    reply = sandbox.handle(method, self.path, dict(self.headers.items()), body)
                except ProtocolError as exc:
                    reply = Reply(401, json_dumps({"code": "SIGN_ERROR", "message": str(exc)}))
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name=f"sandbox-{self.provider}"
        )
        thread.start()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        base = f"http://{host}:{port}"
        return base + "/gateway.do" if self.provider == "alipay" else base

    def stop(self) -> None:
        self.settle()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def merchant_config(self, *, notify_url: str) -> ChannelConfig:
        """What the city configures for this channel: its ids, the sandbox's URL, its keys."""
        return ChannelConfig(
            merchant_id=self.merchant_id,
            app_id=self.app_id,
            gateway_url=self.url,
            notify_url=notify_url,
            private_key_pem=self.keys.merchant_private,
            peer_public_key_pem=self.keys.provider_public,
            secret=self.keys.secret,
            serial_no=key_serial(self.keys.merchant_public),
            peer_serial_no=key_serial(self.keys.provider_public),
        )

    # --- the payer, the notifications -----------------------------------------------------------------

    def _new_id(self) -> str:
        return beijing_now().strftime("%Y%m%d") + f"{secrets.randbelow(10**16):016d}"

    def order_open(self, out_trade_no: str, amount_fen: int, notify_url: str) -> SandboxOrder:
        with self.lock:
            order = self.orders.get(out_trade_no)
            if order is None:
                order = self.orders[out_trade_no] = SandboxOrder(
                    out_trade_no, amount_fen, notify_url, self._new_id()
                )
            return order

    def payer_pays(
        self,
        params: dict[str, Any],
        *,
        paid_fen: int | None = None,
        delay: float = 0.0,
        replay: int = 0,
        drop: bool = False,
        at: dt.datetime | None = None,
    ) -> SandboxOrder:
        """The payer confirms the payment in the provider's app with the parameters the city returned."""
        out_trade_no = self._order_of(params)
        order = self.orders[out_trade_no]
        with self.lock:
            order.state, order.paid_fen, order.paid_at = (
                "SUCCESS",
                paid_fen or order.amount_fen,
                at or beijing_now(),
            )
        if not drop:
            thread = threading.Thread(target=self._deliver, args=(order, delay, replay + 1), daemon=True)
            thread.start()
            self.threads.append(thread)
        return order

    def _collected(
        self, out_trade_no: str, amount_fen: int, notify_url: str, agreement_no: str
    ) -> SandboxOrder:
        """A collection under an agreement (代扣) accepted: paid by the provider itself when ``autopay``
        (the amount taken from the payer's bound account), notified from a thread."""
        order = self.order_open(out_trade_no, amount_fen, notify_url)
        with self.lock:
            self.agreements[out_trade_no] = agreement_no
            first = order.state != "SUCCESS"
            if self.autopay and first:
                order.state, order.paid_fen, order.paid_at = "SUCCESS", amount_fen, beijing_now()
        if self.autopay and first:
            thread = threading.Thread(target=self._deliver, args=(order, 0.05, 1), daemon=True)
            thread.start()
            self.threads.append(thread)
        return order

    def stray_payment(
        self, *, out_trade_no: str, amount_fen: int, at: dt.datetime | None = None
    ) -> SandboxOrder:
        """A payment the provider took for an order the city never opened (a stale QR code, a mistyped
        order number): in the statement, refundable, never notified."""
        order = self.order_open(out_trade_no, amount_fen, "")
        with self.lock:
            order.state, order.paid_fen, order.paid_at = "SUCCESS", amount_fen, at or beijing_now()
        return order

    def payout(self, day: dt.date) -> tuple[str, int]:
        """The provider's payout of ``day`` (结算划款): its bank reference and the net amount — paid less
        refunded less fees, as the day's statement carries them."""
        net = 0
        for r in self.statement_rows(day):
            net += (
                -(r["amount_fen"] - r["fee_fen"]) if r["kind"] == "refund" else r["amount_fen"] - r["fee_fen"]
            )
        return f"PO{self.provider.upper()}{day:%Y%m%d}", net

    def _order_of(self, params: dict[str, Any]) -> str:
        if params.get("out_trade_no") in self.agreements:  # a collection under an agreement: no payer's app
            return params["out_trade_no"]
        if self.provider == "alipay":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(params["order_string"]).items()}
            if not alipay.params_verify(self.keys.merchant_public, form):
                raise ProtocolError("the order string's sign does not verify", code="bad_signature")
            biz = json.loads(form["biz_content"])
            amount = alipay.fen_of_yuan(biz["total_amount"])
            self.order_open(biz["out_trade_no"], amount, form.get("notify_url", ""))
            return biz["out_trade_no"]
        token = {"wechat": "prepayid", "unionpay": "tn", "bank": "pay_token"}[self.provider]
        if self.provider == "wechat":
            message = (
                f"{params['appid']}\n{params['timestamp']}\n{params['noncestr']}\n{params['prepayid']}\n"
            )
            if not rsa_verify(self.keys.merchant_public, message.encode(), params["sign"]):
                raise ProtocolError("the app's pay sign does not verify", code="bad_signature")
        return self.tokens[params[token]]

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the notifications under way."""
        for thread in list(self.threads):
            thread.join(timeout)

    def _deliver(self, order: SandboxOrder, delay: float, times: int) -> None:
        if delay:
            time.sleep(delay)
        body, headers = self.notification(order)
        for _ in range(times):  # a replay is the same notification again (same id, same signature)
            try:
                reply = http("POST", order.notify_url, body=body, headers=headers)
                status = reply.status
            except ProtocolError:
                status = 0
            with self.lock:
                self.deliveries.append((order.out_trade_no, status))

    def notification(self, order: SandboxOrder) -> tuple[bytes, dict[str, str]]:
        """The signed notification of a paid order in the provider's format."""
        at = order.paid_at or beijing_now()
        if self.provider == "wechat":
            tx = self._wechat_tx(order)
            body = json_dumps(
                {
                    "id": secrets.token_hex(18),
                    "create_time": wechat.rfc3339(at),
                    "resource_type": "encrypt-resource",
                    "event_type": "TRANSACTION.SUCCESS",
                    "summary": "支付成功",
                    "resource": wechat.resource_encrypt(self.keys.secret, tx, "transaction"),
                }
            )
            return body, wechat.signed_headers(self.config, body)
        if self.provider == "alipay":
            form = {
                "notify_time": beijing_now().strftime(alipay.TIME),
                "notify_type": "trade_status_sync",
                "notify_id": secrets.token_hex(16),
                "app_id": self.app_id or self.merchant_id,
                "charset": "utf-8",
                "version": "1.0",
                "sign_type": "RSA2",
                "trade_no": order.transaction_id,
                "out_trade_no": order.out_trade_no,
                "trade_status": "TRADE_SUCCESS",
                "total_amount": yuan_text(order.paid_fen),
                "receipt_amount": yuan_text(order.paid_fen),
                "buyer_pay_amount": yuan_text(order.paid_fen),
                "gmt_create": at.astimezone(BEIJING).strftime(alipay.TIME),
                "gmt_payment": at.astimezone(BEIJING).strftime(alipay.TIME),
                "subject": "市民卡账户充值",
            }
            form["sign"] = alipay.params_sign(self.keys.provider_private, form, exclude=("sign", "sign_type"))
            return urllib.parse.urlencode(form).encode(), {
                "Content-Type": "application/x-www-form-urlencoded"
            }
        if self.provider == "unionpay":
            form = {
                "version": unionpay.VERSION,
                "encoding": "UTF-8",
                "signMethod": "01",
                "txnType": "01",
                "txnSubType": "01",
                "bizType": "000201",
                "accessType": "0",
                "merId": self.merchant_id,
                "orderId": order.out_trade_no,
                "txnTime": at.astimezone(BEIJING).strftime("%Y%m%d%H%M%S"),
                "txnAmt": str(order.paid_fen),
                "currencyCode": "156",
                "queryId": order.transaction_id,
                "traceNo": order.transaction_id[-6:],
                "traceTime": at.astimezone(BEIJING).strftime("%m%d%H%M%S"),
                "settleDate": at.astimezone(BEIJING).strftime("%m%d"),
                "settleAmt": str(order.paid_fen),
                "settleCurrencyCode": "156",
                "respCode": "00",
                "respMsg": "成功[0000000]",
                "certId": self.config.serial_no,
            }
            form["signature"] = unionpay.form_sign(self.keys.provider_private, form)
            return unionpay.form_encode(form), {"Content-Type": "application/x-www-form-urlencoded"}
        payload, headers = bank.message(self.config, "PAY_RESULT", self._bank_result(order))
        return payload, headers

    def _wechat_tx(self, order: SandboxOrder) -> dict[str, Any]:
        paid = order.state == "SUCCESS"
        tx: dict[str, Any] = {
            "appid": self.app_id,
            "mchid": self.merchant_id,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id if paid else "",
            "trade_type": "APP",
            "trade_state": order.state,
            "trade_state_desc": "支付成功" if paid else "订单未支付",
            "bank_type": "OTHERS",
            "payer": {"openid": "oSandboxPayer"},
            "amount": {"total": order.paid_fen if paid else order.amount_fen, "currency": "CNY"},
        }
        if paid:
            tx["success_time"] = wechat.rfc3339(order.paid_at or beijing_now())
            tx["amount"].update(payer_total=order.paid_fen, payer_currency="CNY")
        return tx

    def _bank_result(self, order: SandboxOrder) -> dict[str, Any]:
        paid = order.state == "SUCCESS"
        return {
            "out_trade_no": order.out_trade_no,
            "result": "S" if paid else "P",
            "amount_fen": order.paid_fen if paid else order.amount_fen,
            "bank_serial": order.transaction_id,
            "paid_time": (order.paid_at or beijing_now()).astimezone(BEIJING).strftime(bank.TIME)
            if paid
            else "",
        }

    # --- statements -----------------------------------------------------------------------------------

    def statement_add(
        self, *, out_trade_no: str, amount_fen: int, at: dt.datetime, kind: str = "pay", **extra
    ):
        """A line the city's ledger does not know (a payment the notification and the order never told of)."""
        self.extra_rows.append(
            {"kind": kind, "out_trade_no": out_trade_no, "transaction_id": self._new_id(), "amount_fen": amount_fen,
             "fee_fen": amount_fen * FEE_BPS[self.provider] // 10000, "at": at, **extra}
        )  # fmt: skip

    def statement_omit(self, out_trade_no: str) -> None:
        self.omitted.add(out_trade_no)

    def statement_rows(self, day: dt.date) -> list[dict[str, Any]]:
        rows = []
        bps = FEE_BPS[self.provider]
        with self.lock:
            for o in self.orders.values():
                if (
                    o.paid_at is not None
                    and o.paid_at.astimezone(BEIJING).date() == day
                    and o.out_trade_no not in self.omitted
                ):
                    rows.append({"kind": "pay", "out_trade_no": o.out_trade_no, "transaction_id": o.transaction_id,
                                 "amount_fen": o.paid_fen, "fee_fen": o.paid_fen * bps // 10000,
                                 "at": o.paid_at})  # fmt: skip
                for r in o.refunds:
                    if r["at"].astimezone(BEIJING).date() == day:
                        rows.append({"kind": "refund", "out_trade_no": o.out_trade_no,
                                     "transaction_id": o.transaction_id,
                                     "fee_fen": r["amount_fen"] * bps // 10000, **r})  # fmt: skip
        rows += [r for r in self.extra_rows if r["at"].astimezone(BEIJING).date() == day]
        return sorted(rows, key=lambda r: r["at"])

    def statement(self, day: dt.date) -> bytes:
        """The day's statement file in the provider's own format."""
        rows = self.statement_rows(day)
        if self.provider == "wechat":
            return wechat.bill_write(rows, app_id=self.app_id, merchant_id=self.merchant_id)
        if self.provider == "alipay":
            return alipay.bill_write(rows, pid=self.merchant_id, day=day)
        if self.provider == "unionpay":
            return unionpay.file_write(rows, merchant_id=self.merchant_id, day=day)
        return bank.file_write(rows, merchant_id=self.merchant_id, day=day)

    # --- the provider's API ---------------------------------------------------------------------------

    def _refund(self, out_trade_no: str, out_refund_no: str, amount_fen: int) -> dict[str, Any] | None:
        with self.lock:
            order = self.orders.get(out_trade_no)
            if order is None or order.state != "SUCCESS":
                return None
            for r in order.refunds:
                if r["out_refund_no"] == out_refund_no:
                    return r  # a retried refund: the first stands
            if sum(r["amount_fen"] for r in order.refunds) + amount_fen > order.paid_fen:
                return None
            refund = {"out_refund_no": out_refund_no, "refund_id": self._new_id(), "amount_fen": amount_fen,
                      "at": beijing_now()}  # fmt: skip
            order.refunds.append(refund)
            return refund

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return getattr(self, f"_handle_{self.provider}")(method, path, headers, body)

    def _handle_wechat(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith("/v3/billdownload/"):
            day = dt.date.fromisoformat(urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["day"][0])
            return Reply(200, self.statement(day), {"Content-Type": "text/csv"})
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        wechat.authorization_verify(auth, self.keys.merchant_public, method, path, body)

        def answer(status: int, value: dict[str, Any]) -> Reply:
            data = json_dumps(value)
            return Reply(status, data, wechat.signed_headers(self.config, data))

        if method == "POST" and path == "/v3/pay/transactions/app":
            req = json.loads(body)
            order = self.order_open(req["out_trade_no"], req["amount"]["total"], req["notify_url"])
            prepay_id = "wx" + order.transaction_id
            self.tokens[prepay_id] = order.out_trade_no
            return answer(200, {"prepay_id": prepay_id})
        if method == "POST" and path == "/v3/papay/pay/transactions/apply":
            req = json.loads(body)
            self._collected(
                req["out_trade_no"], req["amount"]["total"], req["notify_url"], req["contract_id"]
            )
            return answer(200, {"out_trade_no": req["out_trade_no"], "trade_state": "ACCEPT"})
        if method == "GET" and path.startswith("/v3/pay/transactions/out-trade-no/"):
            out_trade_no = urllib.parse.unquote(urllib.parse.urlsplit(path).path.rsplit("/", 1)[1])
            order = self.orders.get(out_trade_no)
            if order is None:
                return answer(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
            return answer(200, self._wechat_tx(order))
        if method == "POST" and path == "/v3/refund/domestic/refunds":
            req = json.loads(body)
            refund = self._refund(req["out_trade_no"], req["out_refund_no"], req["amount"]["refund"])
            if refund is None:
                return answer(400, {"code": "INVALID_REQUEST", "message": "退款金额超过订单可退金额"})
            return answer(200, {"refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
                                "status": "SUCCESS", "amount": {"refund": refund["amount_fen"]}})  # fmt: skip
        if method == "GET" and path.startswith("/v3/bill/tradebill"):
            day = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["bill_date"][0]
            return answer(200, {"hash_type": "SHA1", "hash_value": "",
                                "download_url": f"{self.url}/v3/billdownload/file?day={day}"})  # fmt: skip
        return answer(404, {"code": "NOT_FOUND", "message": path})

    def _handle_alipay(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith("/bill/"):
            return Reply(200, self.statement(dt.date.fromisoformat(path.rsplit("/", 1)[1])), {})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
        if not alipay.params_verify(self.keys.merchant_public, form):
            raise ProtocolError("the request's sign does not verify")
        method_name, biz = form["method"], json.loads(form.get("biz_content") or "{}")

        def answer(node: dict[str, Any]) -> Reply:
            return Reply(200, alipay.response_write(self.keys.provider_private, method_name, node),
                         {"Content-Type": "application/json;charset=utf-8"})  # fmt: skip

        if method_name == "alipay.trade.query":
            order = self.orders.get(biz["out_trade_no"])
            if order is None:
                return answer({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"})
            paid = order.state == "SUCCESS"
            node = {"code": "10000", "msg": "Success", "out_trade_no": order.out_trade_no,
                    "trade_no": order.transaction_id, "trade_status": "TRADE_SUCCESS" if paid else "WAIT_BUYER_PAY",
                    "total_amount": yuan_text(order.paid_fen if paid else order.amount_fen)}  # fmt: skip
            if paid:
                node["send_pay_date"] = order.paid_at.astimezone(BEIJING).strftime(alipay.TIME)
            return answer(node)
        if method_name == "alipay.trade.pay" and biz.get("product_code") == "GENERAL_WITHHOLDING":
            agreement = biz.get("agreement_params", {}).get("agreement_no", "")
            if not agreement:
                return answer(
                    {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.AGREEMENT_NOT_EXIST"}
                )
            order = self._collected(
                biz["out_trade_no"],
                alipay.fen_of_yuan(biz["total_amount"]),
                form.get("notify_url", ""),
                agreement,
            )
            paid = order.state == "SUCCESS"
            return answer({"code": "10000" if paid else "10003", "msg": "Success", "out_trade_no": order.out_trade_no,
                           "trade_no": order.transaction_id, "total_amount": biz["total_amount"]})  # fmt: skip
        if method_name == "alipay.trade.refund":
            refund = self._refund(
                biz["out_trade_no"], biz["out_request_no"], alipay.fen_of_yuan(biz["refund_amount"])
            )
            if refund is None:
                return answer(
                    {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"}
                )
            return answer({"code": "10000", "msg": "Success", "trade_no": refund["refund_id"],
                           "out_trade_no": biz["out_trade_no"], "fund_change": "Y",
                           "refund_fee": yuan_text(refund["amount_fen"])})  # fmt: skip
        if method_name == "alipay.data.dataservice.bill.downloadurl.query":
            base = self.url.rsplit("/", 1)[0]
            return answer(
                {"code": "10000", "msg": "Success", "bill_download_url": f"{base}/bill/{biz['bill_date']}"}
            )
        return answer({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_METHOD"})

    def _handle_unionpay(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        form = unionpay.form_parse(body)
        if not unionpay.form_verify(self.keys.merchant_public, form):
            raise ProtocolError("the request's signature does not verify")
        base = {k: form[k] for k in ("version", "encoding", "signMethod", "txnType", "txnSubType", "bizType",
                                     "accessType", "merId", "txnTime") if k in form}  # fmt: skip
        base["certId"] = self.config.serial_no

        def answer(**fields: str) -> Reply:
            out = base | fields
            out["signature"] = unionpay.form_sign(self.keys.provider_private, out)
            return Reply(200, unionpay.form_encode(out), {"Content-Type": "text/plain;charset=UTF-8"})

        endpoint = path.rsplit("/", 1)[-1]
        if endpoint == "appTransReq.do":
            order = self.order_open(form["orderId"], int(form["txnAmt"]), form["backUrl"])
            tn = order.transaction_id[-12:] + secrets.token_hex(4)
            self.tokens[tn] = order.out_trade_no
            return answer(respCode="00", respMsg="成功[0000000]", orderId=order.out_trade_no, tn=tn)
        if endpoint == "queryTrans.do":
            order = self.orders.get(form["orderId"])
            if order is None:
                return answer(respCode="34", respMsg="查无此交易", orderId=form["orderId"])
            paid = order.state == "SUCCESS"
            return answer(respCode="00", respMsg="成功[0000000]", orderId=order.out_trade_no,
                          origRespCode="00" if paid else "05", queryId=order.transaction_id,
                          txnAmt=str(order.paid_fen if paid else order.amount_fen),
                          txnTime=(order.paid_at or beijing_now()).astimezone(BEIJING)
                          .strftime("%Y%m%d%H%M%S"))  # fmt: skip
        if endpoint == "backTransReq.do" and form.get("txnType") == "11":
            token = form.get("tokenPayData", "").removeprefix("{token=").split("&")[0]
            self._collected(form["orderId"], int(form["txnAmt"]), form["backUrl"], token)
            return answer(respCode="00", respMsg="成功[0000000]", orderId=form["orderId"])
        if endpoint == "backTransReq.do":
            original = next((o for o in self.orders.values() if o.transaction_id == form["origQryId"]), None)
            refund = original and self._refund(original.out_trade_no, form["orderId"], int(form["txnAmt"]))
            if not refund:
                return answer(respCode="12", respMsg="重复交易或金额超限", orderId=form["orderId"])
            return answer(
                respCode="00", respMsg="成功[0000000]", orderId=form["orderId"], queryId=refund["refund_id"]
            )
        if endpoint == "fileTransfer.do":
            mmdd = form["settleDate"]
            day = dt.date(beijing_now().year, int(mmdd[:2]), int(mmdd[2:]))
            content = base64.b64encode(self.statement(day)).decode()
            return answer(respCode="00", respMsg="成功[0000000]", settleDate=mmdd, fileType="00",
                          fileName=unionpay.file_name(self.merchant_id, day), fileContent=content)  # fmt: skip
        return answer(respCode="10", respMsg="报文格式错")

    def _handle_bank(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        msg = bank.message_read(self.keys.merchant_public, headers, body)
        kind, b = msg["head"]["msg_type"], msg["body"]

        def answer(value: dict[str, Any]) -> Reply:
            payload, out = bank.message(self.config, kind + "_ANSWER", value)
            return Reply(200, payload, out)

        if kind == "PAY_ORDER":
            order = self.order_open(b["out_trade_no"], int(b["amount_fen"]), b["notify_url"])
            token = secrets.token_hex(10)
            self.tokens[token] = order.out_trade_no
            return answer({"pay_token": token, "pay_url": f"{self.url}/pay/{token}"})
        if kind == "WITHHOLD":
            if not b.get("agreement_no"):
                return answer({"result": "F", "reason": "no agreement"})
            self._collected(b["out_trade_no"], int(b["amount_fen"]), b["notify_url"], b["agreement_no"])
            return answer({"out_trade_no": b["out_trade_no"], "result": "P"})
        if kind == "PAY_QUERY":
            order = self.orders.get(b["out_trade_no"])
            if order is None:
                return answer({"out_trade_no": b["out_trade_no"], "result": "N"})
            return answer(self._bank_result(order))
        if kind == "REFUND":
            refund = self._refund(b["out_trade_no"], b["out_refund_no"], int(b["amount_fen"]))
            return answer(
                {"result": "S" if refund else "F", "bank_serial": refund["refund_id"] if refund else ""}
            )
        if kind == "STATEMENT":
            day = dt.datetime.strptime(b["date"], "%Y%m%d").date()
            return answer({"file": self.statement(day).decode()})
        return answer({"result": "F", "reason": f"unknown message {kind}"})


class NotifyInbox:
    """A notify URL on 127.0.0.1 that keeps every POST as (headers, body) and answers 204: where a sandbox
    delivers when the city's site is not served (the tests, the drill, the demo without a server); what
    arrived is then handed to the notify service."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with inbox.lock:
                    inbox.received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="notify-inbox").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/payments/notify"

    def drain(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            out, self.received = self.received, []
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
