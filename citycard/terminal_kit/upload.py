"""Signed batch upload (上传): send the queue's batches to the back office until each is acknowledged.

``POST /terminal/v1/batches`` on the tenant's domain with the signed batch as JSON (docs/terminal-protocol.md).
200 → the tenant-signed acknowledgement is verified against the tenant's public keys, then the batch is
dropped from the queue. 5xx, timeouts and connection errors → retried with exponential backoff (the same
batch id and bytes, so the server answers a resend with the same acknowledgement). An acknowledgement
that does not verify (signed by a key the terminal does not hold yet) → ``AcknowledgementUnverified``: the
batch stays queued, and is sent again once ``sync`` has fetched the keys. 409 (same id, other
content) and other 4xx → stop and report: retrying cannot help.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from citycard.terminal_kit.signing import SignatureError
from citycard.terminal_kit.store import TapStore

HttpPost = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float = 15.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class AcknowledgementUnverified(Exception):
    """The back office took a batch, but its acknowledgement does not verify under the keys held: the
    batch stays queued (its resend is answered with the same acknowledgement once the keys are fetched)."""

    def __init__(self, batch_id: str, error: SignatureError) -> None:
        if error.code == "unknown_key":
            message = (
                f"batch {batch_id} was taken, but its acknowledgement is {error}, which this terminal does not"
                " hold; the batch stays queued: run `citycard-terminal sync` to fetch the keys, then upload again"
            )
        else:
            message = (
                f"batch {batch_id}: the acknowledgement does not verify ({error}); the batch stays queued"
            )
        super().__init__(message)
        self.batch_id = batch_id
        self.code = error.code


class UploadRefused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upload refused with {status}: {body[:300].decode(errors='replace')}")
        self.status = status
        self.body = body


@dataclass
class Uploader:
    url: str  # e.g. https://hangzhou.example/terminal/v1/batches
    tenant_keys: dict[str, bytes]
    post: HttpPost = urllib_post
    retries: int = 5
    backoff_s: float = 0.5
    host: str | None = None  # Host header when the URL names an address rather than the tenant's domain
    sleep: Callable[[float], None] = time.sleep
    acknowledged: list[dict[str, Any]] = field(default_factory=list)

    def _send(self, document: dict[str, Any]) -> bytes:
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.host:
            headers["Host"] = self.host
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                status, answer = self.post(self.url, body, headers)
            except OSError:
                status, answer = 0, b""
            if status == 200:
                return answer
            if 400 <= status < 500:
                raise UploadRefused(status, answer)
            if attempt < self.retries:
                self.sleep(delay)
                delay *= 2
        raise UploadRefused(status, answer)

    def drain(self, store: TapStore, **batch_args: Any) -> int:
        """Upload every waiting batch; returns how many were acknowledged."""
        sent = 0
        while (document := store.batch_open(**batch_args)) is not None:
            answer = self._send(document)
            batch_id = document["payload"]["batch_id"]
            try:
                ack = store.batch_acknowledged(
                    batch_id=batch_id, ack=json.loads(answer), tenant_keys=self.tenant_keys
                )
            except SignatureError as exc:
                raise AcknowledgementUnverified(batch_id, exc) from exc
            self.acknowledged.append(ack)
            sent += 1
        return sent
