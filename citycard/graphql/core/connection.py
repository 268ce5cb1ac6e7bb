"""Relay connections with keyset cursors: ``first``/``last`` required and at most 100, no COUNT.

graphene-django's ``DjangoConnectionField`` pages by offset (its cursors shift when rows are inserted
and deep pages scan everything before them) and runs ``.count()``. Here a cursor is the sort key of a
row (e.g. ``(tapped_at, id)``), so a page is one index range scan of ``limit + 1`` rows whatever its
depth, and a cursor stays valid while rows are inserted or deleted around it.

``hasPreviousPage`` when paging forward (and ``hasNextPage`` when paging backward) is true when a cursor
was given, as the Relay specification allows, rather than costing a second query.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import graphene
from django.conf import settings
from django.db.models import Q, QuerySet
from graphene.relay import PageInfo

from citycard.graphql.core.errors import ApiError, ApiErrorCode

MAX_PAGE = 100


def page_max() -> int:
    return int(getattr(settings, "GRAPHQL_PAGE_MAX", MAX_PAGE))


@dataclass(frozen=True)
class Key:
    """One column of a keyset: its model field, direction and how its value travels in a cursor."""

    field: str
    descending: bool = False
    kind: str = "str"  # "str", "int", "date" or "datetime"

    def dump(self, value: Any) -> Any:
        return value.isoformat() if self.kind in ("date", "datetime") else value

    def load(self, value: Any) -> Any:
        if self.kind == "datetime":
            if not isinstance(value, str):
                raise ValueError("not a time")
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("time without zone")
            return moment
        if self.kind == "date":
            if not isinstance(value, str):
                raise ValueError("not a date")
            return dt.date.fromisoformat(value)
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("not an integer")
            return value
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value


def connection_args(**extra: Any) -> dict[str, Any]:
    """The four Relay arguments (plus the field's own filters)."""
    return {
        "first": graphene.Int(
            description=f"Return the first n items (1-{MAX_PAGE}); first or last is required."
        ),
        "last": graphene.Int(
            description=f"Return the last n items (1-{MAX_PAGE}); first or last is required."
        ),
        "after": graphene.String(description="Items after this cursor."),
        "before": graphene.String(description="Items before this cursor."),
        **extra,
    }


def _encode(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, keys: Sequence[Key], name: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong length")
        return [key.load(value) for key, value in zip(keys, values, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            f"{name} is not a cursor of this list (use a cursor returned by the same field)",
            ApiErrorCode.INVALID_CURSOR,
            argument=name,
        ) from None


def _beyond(keys: Sequence[Key], values: Sequence[Any], *, forward: bool) -> Q:
    """Rows strictly after ``values`` in the keyset order (``forward``) or strictly before it."""
    condition = Q()
    for i, key in enumerate(keys):
        smaller = key.descending == forward  # further along a descending key means smaller
        op = "lt" if smaller else "gt"
        step = Q(**{f"{key.field}__{op}": values[i]})
        for prior, value in zip(keys[:i], values[:i], strict=True):
            step &= Q(**{prior.field: value})
        condition |= step
    return condition


def pagination_check(first: int | None, last: int | None) -> tuple[int, bool]:
    """(limit, forward) from ``first``/``last``, or the error naming what is wrong."""
    limit_max = page_max()
    if first is None and last is None:
        raise ApiError(
            f"give first or last (at most {limit_max}) to page through this list",
            ApiErrorCode.PAGINATION_REQUIRED,
        )
    if first is not None and last is not None:
        raise ApiError("give first or last, not both", ApiErrorCode.INVALID_ARGUMENT)
    name, value = ("first", first) if first is not None else ("last", last)
    assert value is not None
    if value < 1:
        raise ApiError(
            f"{name} must be at least 1, got {value}", ApiErrorCode.INVALID_ARGUMENT, argument=name
        )
    if value > limit_max:
        raise ApiError(
            f"{name} is {value}; at most {limit_max} items per page",
            ApiErrorCode.PAGINATION_LIMIT_EXCEEDED,
            argument=name,
        )
    return value, first is not None


def keyset_page(
    qs: QuerySet,
    *,
    connection_type: type[graphene.relay.Connection],
    keys: Sequence[Key],
    first: int | None = None,
    last: int | None = None,
    after: str | None = None,
    before: str | None = None,
    node: Callable[[Any], Any] | None = None,
) -> graphene.relay.Connection:
    """One page of ``qs`` in keyset order, as an instance of ``connection_type``. One query."""
    limit, forward = pagination_check(first, last)
    if after:
        qs = qs.filter(_beyond(keys, _decode(after, keys, "after"), forward=True))
    if before:
        qs = qs.filter(_beyond(keys, _decode(before, keys, "before"), forward=False))
    order = [("-" if key.descending == forward else "") + key.field for key in keys]
    rows = list(qs.order_by(*order)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    edges = [
        connection_type.Edge(
            node=node(row) if node else row,
            cursor=_encode([key.dump(_value(row, key.field)) for key in keys]),
        )
        for row in rows
    ]
    page_info = PageInfo(
        has_next_page=more if forward else bool(before),
        has_previous_page=bool(after) if forward else more,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return connection_type(edges=edges, page_info=page_info)


def _value(row: Any, path: str) -> Any:
    for part in path.split("__"):
        # a model instance, or a dict of an aggregate's ``values()`` (e.g. a cycle's exception groups)
        row = row[part] if isinstance(row, dict) else getattr(row, part)
    return row


class Connection(graphene.relay.Connection):
    """Base of every connection of the API (no ``totalCount``: counting would cost a scan)."""

    class Meta:
        abstract = True


@dataclass(frozen=True)
class PageArgs:
    """A page asked of a list under each of many parents (e.g. the exceptions of every cycle of a page),
    checked before it is batched: ``PageArgs.of(first=..., after=...)``."""

    limit: int
    forward: bool
    after: str | None = None
    before: str | None = None

    @classmethod
    def of(
        cls,
        *,
        first: int | None = None,
        last: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> PageArgs:
        limit, forward = pagination_check(first, last)
        return cls(limit=limit, forward=forward, after=after or None, before=before or None)


def keyset_pages(
    qs: QuerySet,
    *,
    parent_field: str,
    parents: Sequence[Any],
    connection_type: type[graphene.relay.Connection],
    keys: Sequence[Key],
    page: PageArgs,
) -> list[graphene.relay.Connection]:
    """The same page (keyset order) of ``qs`` under each of ``parents``, in one query: rows numbered per
    parent with ROW_NUMBER() and the first ``limit + 1`` of each kept. A cursor is of the list, not of the
    parent, so ``after`` applies to every parent alike."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    if page.after:
        qs = qs.filter(_beyond(keys, _decode(page.after, keys, "after"), forward=True))
    if page.before:
        qs = qs.filter(_beyond(keys, _decode(page.before, keys, "before"), forward=False))
    order = [F(key.field).desc() if key.descending == page.forward else F(key.field).asc() for key in keys]
    rows = list(
        qs.filter(**{f"{parent_field}__in": set(parents)})
        .annotate(_rank=Window(RowNumber(), partition_by=[F(parent_field)], order_by=order))
        .filter(_rank__lte=page.limit + 1)
        .order_by(parent_field, "_rank")
    )
    grouped_rows: dict[Any, list[Any]] = {}
    for row in rows:
        grouped_rows.setdefault(_value(row, parent_field), []).append(row)
    pages = []
    for parent in parents:
        found = grouped_rows.get(parent, [])
        more = len(found) > page.limit
        found = found[: page.limit]
        if not page.forward:
            found.reverse()
        edges = [
            connection_type.Edge(node=row, cursor=_encode([key.dump(_value(row, key.field)) for key in keys]))
            for row in found
        ]
        pages.append(
            connection_type(
                edges=edges,
                page_info=PageInfo(
                    has_next_page=more if page.forward else bool(page.before),
                    has_previous_page=bool(page.after) if page.forward else more,
                    start_cursor=edges[0].cursor if edges else None,
                    end_cursor=edges[-1].cursor if edges else None,
                ),
            )
        )
    return pages
