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
    # reads of a field on every row of lists: one read per object type and path without list indices
    _merged: dict[tuple[str, str], tuple[dict[str, Any], set[str]]] = field(default_factory=dict)

    def add(
        self,
        *,
        object_type: str,
        object_ids: list[str],
        fields: list[str],
        path: str,
        rows: int | None = None,
        asked: dict[str, Any] | None = None,
    ) -> None:
        read: dict[str, Any] = {"type": object_type, "ids": object_ids, "fields": fields, "path": path}
        if rows is not None:
            read["rows"] = rows
        if asked is not None:
            read["asked"] = asked
        self.reads.append(read)

    def add_row(self, *, object_type: str, object_id: str, field_name: str, path: str) -> None:
        merged = self._merged.get((object_type, path))
        if merged is None:
            merged = ({"type": object_type, "ids": [], "fields": [], "path": path, "rows": 0}, set())
            self._merged[(object_type, path)] = merged
            self.reads.append(merged[0])
        read, seen = merged
        read["rows"] += 1
        if object_id not in seen:
            seen.add(object_id)
            read["ids"].append(object_id)
        if field_name not in read["fields"]:
            read["fields"].append(field_name)

    def clear(self) -> None:
        self.reads = []
        self._merged = {}


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
