"""A scripted back office for upload tests: ``http.server`` in a thread on 127.0.0.1.

Each request takes the next step of its script (then acknowledges, once the script is used up). Like the
real one it stores each tap once by terminal sequence number, acknowledges with a tenant-signed document,
and answers a resent batch with the same bytes it answered before.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.signing import public_key_bytes, sign_document
from citycard.terminal_kit.store import TapStore

TENANT_KEY = Ed25519PrivateKey.generate()
TENANT_KEYS = {"hangzhou:s1": public_key_bytes(TENANT_KEY)}
TERMINAL_KEY = Ed25519PrivateKey.generate()
BATCH_ARGS = dict(
    terminal_id="HZ-BUS-0001",
    tenant="hangzhou",
    key=TERMINAL_KEY,
    key_id="HZ-BUS-0001:k1",
    rule_version=1,
    hotlist_version=1,
)

REFUSALS = {
    400: ("malformed", "the body is not a signed batch: payload.transactions must be a list"),
    401: ("key_expired", "the key was rotated out and its overlap window has ended"),
    403: ("unknown_terminal", "no terminal of this tenant has the signing key"),
    409: ("batch_conflict", "batch id reused with different content"),
    413: ("too_large", "the batch is 5000000 bytes; the limit is 4194304"),
}


def error(status: int, code: str, message: str, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


def refusal(status: int) -> tuple[int, dict[str, str], bytes]:
    return error(status, *REFUSALS[status])


def unavailable(retry_after: str | None = "30") -> tuple[int, dict[str, str], bytes]:
    status, _, body = error(503, "unavailable", "the database is unavailable; send the same request again")
    return status, ({"Retry-After": retry_after} if retry_after is not None else {}), body


RESET = "reset"  # read the request, then close the connection with a TCP reset: no answer at all
RESET_AFTER_STORING = "reset after storing"  # the batch is taken, but its answer is lost on the way
HANG = "hang"  # answer nothing for longer than the client's timeout


@dataclass
class Backoffice:
    script: list[Any] = field(default_factory=list)
    hang_s: float = 0.5
    stored: dict[int, str] = field(default_factory=dict)  # terminal_seq -> batch id that brought it
    received: list[tuple[str, str]] = field(default_factory=list)  # (batch id, sha256 of the body)
    answered: dict[str, bytes] = field(default_factory=dict)  # batch id -> its acknowledgement

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        office = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with office._lock:
                    step = office.script.pop(0) if office.script else None
                    batch_id = json.loads(body)["payload"]["batch_id"]
                    office.received.append((batch_id, hashlib.sha256(body).hexdigest()))
                if step in (RESET, RESET_AFTER_STORING):
                    if step == RESET_AFTER_STORING:
                        office.acknowledge(body)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if step == HANG:
                    time.sleep(office.hang_s)
                    self.close_connection = True
                    return
                status, headers, answer = step if step else (200, {}, office.acknowledge(body))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client gone after its timeout
        self.url = f"http://127.0.0.1:{self.server.server_port}/terminal/v1/batches"

    def acknowledge(self, body: bytes) -> bytes:
        """Store the batch's new taps and answer with its acknowledgement (the same bytes for a resend)."""
        payload = json.loads(body)["payload"]
        with self._lock:
            if payload["batch_id"] in self.answered:
                return self.answered[payload["batch_id"]]
            results, counts = [], {"accepted": 0, "duplicates": 0, "rejected": 0}
            for index, tap in enumerate(payload["transactions"]):
                result = {k: tap[k] for k in ("card_no", "card_counter", "terminal_seq")} | {"index": index}
                if tap.get("amount_fen", 0) < 0:
                    result |= {"outcome": "rejected", "reason": "amount_fen: must be 0 or more"}
                    counts["rejected"] += 1
                elif tap["terminal_seq"] in self.stored:
                    result["outcome"] = "duplicate"
                    counts["duplicates"] += 1
                else:
                    self.stored[tap["terminal_seq"]] = payload["batch_id"]
                    result["outcome"] = "accepted"
                    counts["accepted"] += 1
                results.append(result)
            ack = {"batch_id": payload["batch_id"], "terminal_id": payload["terminal_id"]} | counts
            ack |= {"received_at": "2026-11-24T00:40:00+00:00", "results": results}
            answer = json.dumps(sign_document(ack, key=TENANT_KEY, key_id="hangzhou:s1")).encode()
            self.answered[payload["batch_id"]] = answer
            return answer

    def __enter__(self) -> Backoffice:
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def queue_with_taps(
    store: TapStore, count: int, *, first_seq: int = 1, bad: frozenset[int] = frozenset()
) -> None:
    """``count`` complete taps, terminal sequence numbers from ``first_seq``; those in ``bad`` have a negative
    amount (the back office rejects them)."""
    for seq in range(first_seq, first_seq + count):
        record = {
            "card_no": "3304000100000000019",
            "card_counter": seq,
            "terminal_seq": seq,
            "amount_fen": -1 if seq in bad else 200,
        }
        store.tap_complete(store.tap_pending(record), record)
