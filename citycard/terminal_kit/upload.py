"""Signed batch upload (上传): send the queue's batches to the back office until each is answered for.

``POST /terminal/v1/batches`` on the tenant's domain with the signed batch as JSON (docs/terminal-protocol.md,
"Client behaviour"). Each answer is one of three kinds:

* **200**: the tenant-signed acknowledgement, verified against the acknowledgement keys the terminal holds
  (fetched by ``sync``, keyring.py) and naming this batch; then the batch is dropped from the queue. An
  acknowledgement that does not verify stops the upload with the batch still queued (not set aside): signed
  by a key the terminal does not hold yet → ``AcknowledgementUnverified``, and the batch is sent again once
  ``sync`` has fetched the keys (the resend is answered with the same acknowledgement);
* **a final refusal**, any 4xx but 408 and 429 (400, 401, 403, 409, 413, 415…): the batch as sent can
  never be taken, so it is set aside in the queue database with the refusal (``TapStore.batch_set_aside``)
  and the next batch goes;
* **no answer yet**: 408, 429, 5xx, any other status, a connection refused or reset, a timeout. The same
  bytes are sent again (the back office answers a resent batch with the same acknowledgement, byte for
  byte), after a wait drawn with full jitter from an exponential backoff (``backoff_s`` × 2ⁿ, at most
  ``backoff_max_s``) and never shorter than the answer's ``Retry-After``. Each try is bounded by
  ``timeout_s``; the tries are not: a batch is tried until the back office answers for it, unless
  ``drain`` is given a deadline (``give_up_after_s``).

The retrying is tenacity's (``Retrying``: backoff, stop and sleep as strategies); sleep and clock are
fields, so tests run instantly and see every wait.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from citycard.terminal_kit.i18n import N_, said
from citycard.terminal_kit.signing import SignatureError
from citycard.terminal_kit.store import SetAsideBatch, TapStore

# ``post(url, body, headers)`` → (status, body, headers); a 2-tuple (no headers) is taken too.
HttpPost = Callable[[str, bytes, dict[str, str]], tuple[Any, ...]]

STILL_TO_ANSWER = frozenset({408, 429})  # the 4xx that are not refusals: timeout, too many requests


def urllib_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 15.0
) -> tuple[int, bytes, Mapping[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _error_of(status: int, body: bytes) -> tuple[str, str]:
    """The ``{"error": {"code", "message"}}`` of an answer, or what can be said of one without it."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode(errors="replace").strip()
        return f"http_{status}", text or http.client.responses.get(status, "no message")
    if error.get("request_id") and error["request_id"] not in message:
        message += f" (request {error['request_id']})"
    return code, message


class UploadRefused(Exception):
    """A final refusal: the batch as sent can never be taken (a 4xx other than 408 and 429)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.code, self.message = _error_of(status, body)
        super().__init__(f"upload refused with {status} {self.code}: {self.message}")


class NotAnswered(Exception):
    """One try the back office did not answer for: 408, 429, 5xx, another status, or no answer at all
    (``status`` 0). ``retry_after_s``: how long the answer asked the terminal to wait, if it did."""

    def __init__(self, status: int, what: str, retry_after_s: float | None = None) -> None:
        self.status = status
        self.what = what
        self.retry_after_s = retry_after_s
        super().__init__(what)


class UploadGaveUp(Exception):
    """The deadline given to ``drain`` came before the back office answered for a batch; it stays queued."""

    def __init__(self, batch_id: str, last: NotAnswered) -> None:
        self.batch_id = batch_id
        self.last = last
        super().__init__(
            said(
                N_("gave up on batch %(batch)s (it stays queued): the last try got %(what)s"),
                batch=batch_id,
                what=last.what,
            )
        )


class AcknowledgementRefused(Exception):
    """A 200 whose body is not a tenant-signed acknowledgement of the batch sent; the batch stays queued."""


class AcknowledgementUnverified(AcknowledgementRefused):
    """The back office took a batch, but its acknowledgement does not verify under the keys held: the
    batch stays queued (its resend is answered with the same acknowledgement once the keys are fetched)."""

    def __init__(self, batch_id: str, error: SignatureError) -> None:
        if error.code == "unknown_key":
            message = said(
                N_(
                    "batch %(batch)s was taken, but its acknowledgement is %(error)s, which this terminal does"
                    " not hold; the batch stays queued: run `citycard-terminal sync` to fetch the keys, then"
                    " upload again"
                ),
                batch=batch_id,
                error=error,
            )
        else:
            message = said(
                N_(
                    "batch %(batch)s: the acknowledgement does not verify (%(error)s); the batch stays queued"
                ),
                batch=batch_id,
                error=error,
            )
        super().__init__(message)
        self.batch_id = batch_id
        self.code = error.code


def retry_after_seconds(value: str | None, *, now: dt.datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # any length: a huge one is infinite, and the uploader caps it
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no zone said
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Uploader:
    url: str  # e.g. https://hangzhou.example/terminal/v1/batches
    tenant_keys: dict[str, bytes]
    post: HttpPost | None = None  # default: urllib with ``timeout_s``
    host: str | None = None  # Host header when the URL names an address rather than the tenant's domain
    timeout_s: float = 15.0  # one try: connecting, and each wait for bytes of the answer
    backoff_s: float = 1.0  # the first wait is drawn from 0 … backoff_s, the nth from 0 … backoff_s × 2ⁿ⁻¹
    backoff_max_s: float = 300.0  # … but never from more than 0 … backoff_max_s
    retry_after_max_s: float = 3600.0  # a Retry-After longer than this is taken as this
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic  # for the deadline
    now: Callable[[], dt.datetime] = _utcnow  # for Retry-After dates and set-aside times
    on_wait: Callable[[str, NotAnswered, float], None] | None = None  # (batch id, what happened, wait s)
    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    set_aside: list[SetAsideBatch] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.post is None:
            self.post = functools.partial(urllib_post, timeout=self.timeout_s)
        self._backoff = wait_random_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)

    def wait_for(self, retry_state: RetryCallState) -> float:
        """The wait before the next try: full jitter over the exponential backoff, and at least what the
        answer's Retry-After asked."""
        wait = self._backoff(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, NotAnswered) and failure.retry_after_s is not None:
            wait = max(wait, min(failure.retry_after_s, self.retry_after_max_s))
        return wait

    def _try(self, body: bytes, headers: dict[str, str]) -> bytes:
        try:
            status, answer, *more = self.post(self.url, body, headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
            raise NotAnswered(
                0, said(N_("no answer (%(name)s: %(exc)s)"), name=type(exc).__name__, exc=exc)
            ) from exc
        if status == 200:
            return answer
        if 400 <= status < 500 and status not in STILL_TO_ANSWER:
            raise UploadRefused(status, answer)
        answer_headers = {k.lower(): v for k, v in (more[0] if more else {}).items()}
        code, message = _error_of(status, answer)
        retry_after = retry_after_seconds(answer_headers.get("retry-after"), now=self.now())
        raise NotAnswered(
            status,
            f"{status} {code}: {message}",
            retry_after,
        )

    def _send(self, batch_id: str, body: bytes, deadline: float | None) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self.host:
            headers["Host"] = self.host

        def past_deadline(retry_state: RetryCallState) -> bool:
            return deadline is not None and self.clock() + retry_state.upcoming_sleep > deadline

        def before_sleep(retry_state: RetryCallState) -> None:
            if self.on_wait is not None:
                self.on_wait(batch_id, retry_state.outcome.exception(), retry_state.upcoming_sleep)

        retrying = Retrying(
            retry=retry_if_exception_type(NotAnswered),
            wait=self.wait_for,
            stop=past_deadline,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._try, body, headers)
        except NotAnswered as last:
            raise UploadGaveUp(batch_id, last) from last

    def drain(self, store: TapStore, *, give_up_after_s: float | None = None, **batch_args: Any) -> int:
        """Upload every waiting batch; returns how many were acknowledged. A batch refused for good is set
        aside (``self.set_aside``) and the next one goes. Without ``give_up_after_s`` it waits as long as the
        back office takes to answer; with it, ``UploadGaveUp`` once the next wait would end past that many
        seconds from now."""
        deadline = None if give_up_after_s is None else self.clock() + give_up_after_s
        sent = 0
        while (document := store.batch_open(**batch_args)) is not None:
            batch_id = document["payload"]["batch_id"]
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            try:
                answer = self._send(batch_id, body, deadline)
            except UploadRefused as refused:
                self.set_aside.append(
                    store.batch_set_aside(
                        batch_id=batch_id,
                        status=refused.status,
                        code=refused.code,
                        message=refused.message,
                        at=self.now(),
                    )
                )
                continue
            try:
                ack = store.batch_acknowledged(
                    batch_id=batch_id, ack=json.loads(answer), tenant_keys=self.tenant_keys
                )
            except SignatureError as exc:  # signed by a key not held yet (sync fetches it), or forged
                raise AcknowledgementUnverified(batch_id, exc) from exc
            except ValueError as exc:  # not JSON, or for another batch
                raise AcknowledgementRefused(
                    said(
                        N_(
                            "the acknowledgement of batch %(id)s was refused (%(exc)s); the batch stays queued"
                        ),
                        id=batch_id,
                        exc=exc,
                    )
                ) from exc
            self.acknowledged.append(ack)
            sent += 1
        return sent
