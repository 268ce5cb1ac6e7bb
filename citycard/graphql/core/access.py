"""Every read of personal data through GraphQL is logged against the caller (谁使用、谁负责).

A resolver that returns cardholder or card data calls :func:`access_log_read`; the view writes what was
read during the request as ONE audit entry (action ``graphql.read``) in the audit chain of the schema the
request ran in (the tenant's, on a tenant endpoint), naming the API key (``apikey:<key_id>``) or user,
the operation and, per read, the object type, ids, fields and path. One entry per request keeps the
query count independent of the page size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import FieldNode

from citycard.graphql.core.context import GraphQLContext
from citycard.platform.audit.services import audit_record


def selected_fields(info: Any) -> list[str]:
    """The names of the fields selected directly under the current one (fragments not expanded)."""
    names: list[str] = []
    for node in info.field_nodes:
        for selection in node.selection_set.selections if node.selection_set else ():
            if isinstance(selection, FieldNode):
                names.append(selection.name.value)
    return sorted(set(names))


def access_log_read(
    info: Any, *, object_type: str, object_ids: Iterable[Any], fields: Iterable[str] | None = None
) -> None:
    """Record that the caller read ``object_type`` objects ``object_ids`` (their ``fields``)."""
    ids = [str(i) for i in object_ids]
    if not ids:
        return
    context: GraphQLContext = info.context
    path = ".".join(str(p) for p in info.path.as_list())
    context.access_log.add(
        object_type=object_type,
        object_ids=ids,
        fields=sorted(fields) if fields is not None else selected_fields(info),
        path=path,
    )


def access_log_flush(context: GraphQLContext) -> None:
    reads = context.access_log.reads
    if not reads:
        return
    principal = context.principal
    audit_record(
        action="graphql.read",
        actor=principal.actor,
        object_type="apikey" if principal.api_key is not None else "user",
        object_id=principal.api_key.key_id if principal.api_key is not None else principal.actor,
        data={"operation": context.operation_name, "reads": reads},
    )
    context.access_log.reads = []
