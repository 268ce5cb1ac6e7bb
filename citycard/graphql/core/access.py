"""Every read of personal data through GraphQL is logged against the caller (谁使用、谁负责).

A resolver that returns cardholder or card data calls :func:`access_log_read` (one card or cardholder),
:func:`access_log_list` (a page of a list: what was asked, how many rows, which cards) or
:func:`access_log_field` (a field linking each row of lists to a card); the view writes what was read
during the request as ONE audit entry (action ``graphql.read``) in the audit chain of the schema the
request ran in (the tenant's, on a tenant endpoint; the platform's, on the platform's), naming the API key
(``apikey:<key_id>``) or user, the operation and, per read, the object type, ids, fields and path. One
entry per request keeps the query count independent of the page size.
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


def selected_node_fields(info: Any) -> list[str]:
    """The fields selected on the nodes of a connection (``edges { node { … } }``), fragments not expanded."""
    names: list[str] = []
    for node in info.field_nodes:
        for edges in _fields_named(node, "edges"):
            for inner in _fields_named(edges, "node"):
                names.extend(s.name.value for s in inner.selection_set.selections if isinstance(s, FieldNode))
    return sorted(set(names))


def _fields_named(node: FieldNode, name: str) -> list[FieldNode]:
    selections = node.selection_set.selections if node.selection_set else ()
    return [s for s in selections if isinstance(s, FieldNode) and s.name.value == name and s.selection_set]


def access_log_list(
    info: Any, *, object_type: str, object_ids: Iterable[Any], rows: int, asked: dict[str, Any]
) -> None:
    """Record a page of a list read: what was ``asked`` (filters, page), how many ``rows`` came back and the
    cards (or cardholders) ``object_ids`` they concern. One read per list, whatever the page size; nothing
    when the page is empty (nothing was read)."""
    if rows == 0:
        return
    context: GraphQLContext = info.context
    context.access_log.add(
        object_type=object_type,
        object_ids=sorted({str(i) for i in object_ids}),
        fields=selected_node_fields(info),
        path=".".join(str(p) for p in info.path.as_list()),
        rows=rows,
        asked={key: value for key, value in asked.items() if value is not None},
    )


def access_log_field(info: Any, *, object_type: str, object_id: Any) -> None:
    """Record that a field linking a row to a person (a clearing record's card number) was read: the rows of
    every page under one path make one read (ids, row count), so a page of a hundred adds no entry."""
    path = ".".join(str(p) for p in info.path.as_list()[:-1] if not isinstance(p, int))
    info.context.access_log.add_row(
        object_type=object_type, object_id=str(object_id), field_name=info.field_name, path=path
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
    context.access_log.clear()
