"""Who is asking and what one request carries through execution: the principal, dataloaders, access log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from citycard.platform.models import ApiKey, Tenant, User


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a partner app's API key (tenant endpoint) or a platform user."""

    actor: str  # "apikey:<key_id>" or "user:<username>": what audit entries name
    scopes: frozenset[str]
    tenant: Tenant | None = None
    api_key: ApiKey | None = None
    user: User | None = None

    @property
    def rate_bucket(self) -> str:
        return self.actor


@dataclass
class AccessLog:
    """Reads of personal data during one request, written to the audit chain once at the end."""

    reads: list[dict[str, Any]] = field(default_factory=list)

    def add(self, *, object_type: str, object_ids: list[str], fields: list[str], path: str) -> None:
        self.reads.append({"type": object_type, "ids": object_ids, "fields": fields, "path": path})


@dataclass
class GraphQLContext:
    request: HttpRequest
    principal: Principal
    operation_name: str | None = None
    dataloaders: dict[type, Any] = field(default_factory=dict)
    access_log: AccessLog = field(default_factory=AccessLog)

    @property
    def tenant(self) -> Tenant | None:
        return getattr(self.request, "tenant", None)
