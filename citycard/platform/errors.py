"""The one exception every service raises for bad input or a refused action.

Each carries a machine-readable ``code`` (used by GraphQL errors-as-data and the CLI) and, where the
problem is one input, the ``field`` it concerns. The message is one line a person can act on.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext


class DomainError(Exception):
    """A business rule refused the action; nothing was written."""

    def __init__(self, message: str, *, code: str = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.message = str(message)  # a lazy translation is read here, in the language of the request
        self.code = code
        self.field = field

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    def __init__(self, message: str, *, code: str = "not_found", field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)


class Conflict(DomainError):
    def __init__(self, message: str, *, code: str = "conflict", field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)


def county_refuse(tenant: Any, *, inherits: str, cannot: str, code: str, field: str | None = None) -> None:
    """Refuse, in a county (县区), a change to what it inherits from its city (card schemes and cards, fare
    rules): DomainError ``code`` saying whose it uses and what it cannot do. Nothing for a city."""
    if tenant.kind == "county":
        raise DomainError(
            gettext(
                "%(tenant)s is a county: it uses %(clearing_tenant)s's %(inherits)s and cannot %(cannot)s"
            )
            % {
                "tenant": tenant.code,
                "clearing_tenant": tenant.clearing_tenant.code,
                "inherits": inherits,
                "cannot": cannot,
            },
            code=code,
            field=field,
        )
