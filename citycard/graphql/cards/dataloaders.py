from __future__ import annotations

from dataclasses import dataclass

from citycard.graphql.core.dataloaders import DataLoader
from citycard.tenants.accounts.models import LedgerAccount, PurseShadow
from citycard.tenants.accounts.selectors import accounts_of, purse_shadows


@dataclass(frozen=True)
class Balances:
    """A card's online account (by its cardholder) and e-purse shadow, either possibly absent."""

    account: LedgerAccount | None
    shadow: PurseShadow | None


class BalancesByCardLoader(DataLoader[tuple[str, int | None], Balances]):
    """Balances of cards of the current tenant, keyed (card number, cardholder id): two queries per batch
    (the accounts, the shadows), whatever the number of cards."""

    def batch_load(self, keys: list[tuple[str, int | None]]) -> list[Balances]:
        accounts = accounts_of(cardholder_ids=[h for _, h in keys if h is not None])
        shadows = purse_shadows(card_nos=[n for n, _ in keys])
        return [
            Balances(accounts.get(holder) if holder is not None else None, shadows.get(number))
            for number, holder in keys
        ]
