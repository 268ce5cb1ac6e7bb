"""Failed authentications per client address: at most ``GRAPHQL_AUTH_FAILURES`` per fixed window of
``GRAPHQL_AUTH_FAILURES_WINDOW_S``, counted in the database with the same counters as the per-key rate limit
(``platform_ratewindow``, shared by every web process). Once they are used up, a request from that address
that carries a key is answered ``RATE_LIMITED`` without the key being looked at, until the window ends: a
guess that happens to be right then reads the same as a wrong one.

Checked where a key is authenticated (citycard/graphql/views.py): the count is read in the same query as
the key, so a valid key costs no extra query; only a failure pays for its count.

The client address is ``REMOTE_ADDR``; behind ``GRAPHQL_TRUSTED_PROXIES`` proxies it is the address the
outermost of them saw: that many entries from the right of ``X-Forwarded-For``, each proxy appending the
address it received the request from. The entries to the left of those are whatever the client sent, so they
are never trusted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.http import HttpRequest

from citycard.graphql.core.errors import ApiErrorCode
from citycard.graphql.core.limits import limit
from citycard.platform.selectors import rate_limit_count, rate_window_start
from citycard.platform.services import rate_limit_hit

# Refusals that mean "this key is not one you may use here" (a missing header is not a guess).
FAILED_AUTHENTICATION = frozenset(
    {
        ApiErrorCode.INVALID_TOKEN,
        ApiErrorCode.TOKEN_EXPIRED,
        ApiErrorCode.TOKEN_REVOKED,
        ApiErrorCode.WRONG_TENANT,
    }
)


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    proxies = limit("GRAPHQL_TRUSTED_PROXIES")
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    # Fewer entries than proxies: the request skipped some of them; the leftmost is the best there is.
    return hops[-proxies] if len(hops) >= proxies else (hops[0] if hops else remote)


@dataclass(frozen=True)
class AuthGuard:
    """The failed-authentication bound of one request's client address."""

    address: str
    now: dt.datetime
    limit: int
    window_s: int

    @classmethod
    def of(cls, request: HttpRequest, *, now: dt.datetime) -> AuthGuard:
        return cls(
            address=client_address(request),
            now=now,
            limit=limit("GRAPHQL_AUTH_FAILURES"),
            window_s=limit("GRAPHQL_AUTH_FAILURES_WINDOW_S"),
        )

    @property
    def bucket(self) -> str:
        return f"graphql-auth:{self.address}"

    @property
    def reset_at(self) -> dt.datetime:
        return rate_window_start(window_s=self.window_s, now=self.now) + dt.timedelta(seconds=self.window_s)

    def exhausted(self, failures: int | None = None) -> bool:
        """Whether the address has used up its failures; ``failures`` as read with the key (one query for
        both: ``selectors.api_key_with_rate_count``), else read here."""
        if failures is None:
            failures = rate_limit_count(bucket=self.bucket, window_s=self.window_s, now=self.now)
        return failures >= self.limit

    def failed(self) -> None:
        rate_limit_hit(bucket=self.bucket, limit=self.limit, window_s=self.window_s, now=self.now)

    def message(self) -> tuple[str, int]:
        """The refusal's message and its Retry-After (seconds)."""
        retry = max(1, int((self.reset_at - self.now).total_seconds()) + 1)
        return (
            f"too many failed authentications from this address (at most {self.limit} in {self.window_s} s); "
            f"keys are not checked until the window ends: retry after {retry} s",
            retry,
        )
