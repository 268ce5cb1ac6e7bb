"""Per-request batching (graphql-sync-dataloaders): one query per loader and execution level.

graphene 3's own DataLoader is asyncio-only; the sync dataloader resolves its futures in the deferred
callbacks of :class:`graphql_sync_dataloaders.DeferredExecutionContext`, which the view sets up.
Subclasses implement :meth:`batch_load` (keys -> values in the same order).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from graphql_sync_dataloaders import SyncDataLoader, SyncFuture

from citycard.graphql.core.context import GraphQLContext

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class DataLoader(SyncDataLoader, Generic[K, V]):
    """A loader bound to one request's context: ``TerminalByIdLoader(info.context).load(key)``."""

    context_key: ClassVar[str] = ""

    def __new__(cls, context: GraphQLContext) -> DataLoader[K, V]:
        loader = context.dataloaders.get(cls)
        if loader is None:
            loader = super().__new__(cls)
            loader._init(context)
            context.dataloaders[cls] = loader
        return loader

    def __init__(self, context: GraphQLContext) -> None:  # initialised once, in __new__
        pass

    def _init(self, context: GraphQLContext) -> None:
        self.context = context
        SyncDataLoader.__init__(self, self._batch)

    def _batch(self, keys: Sequence[K]) -> list[V]:
        return self.batch_load(list(keys))

    def batch_load(self, keys: list[K]) -> list[V]:
        raise NotImplementedError


def by_key(rows: Any, keys: list[K], attr: str, default: Any = None) -> list[Any]:
    index = {getattr(row, attr): row for row in rows}
    return [index.get(key, default) for key in keys]


def grouped(rows: Any, keys: list[K], attr: str) -> list[list[Any]]:
    groups: dict[Any, list[Any]] = {key: [] for key in keys}
    for row in rows:
        groups.setdefault(getattr(row, attr), []).append(row)
    return [groups[key] for key in keys]


def then(future: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` of a loader's value: at once if it is loaded, else a future that the same batch resolves
    (it carries the batch's dispatch, which the execution context runs after the level)."""
    if future.done():
        return fn(future.result())
    out = SyncFuture()
    out.deferred_callback = future.deferred_callback

    def resolved() -> None:
        try:
            out.set_result(fn(future.result()))
        except Exception as exc:  # the field's error, as the loader's own would be
            out.set_exception(exc)

    future.add_done_callback(resolved)
    return out
