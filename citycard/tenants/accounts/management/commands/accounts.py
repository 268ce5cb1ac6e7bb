"""`citycard accounts --tenant CODE open CARD | topup CARD --amount YUAN --key K [--channel bank|cash]` — the
cardholder's online account (市民卡账户) at a service window: open it, top it up (充值). Thin over
citycard.tenants.accounts.services; amounts typed and shown in yuan, kept in fen."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.accounts import services
from citycard.tenants.accounts.selectors import account_of_card
from citycard.terminal_kit.money import yuan


def fen_of(value: str) -> int:
    """Yuan as typed (``200``, ``1,234.50``) to fen; more than two decimals, or not more than 0, refused."""
    try:
        amount = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise DomainError(
            gettext("--amount %(value)r is not an amount in yuan (e.g. 200.00)") % {"value": value},
            field="amount_yuan",
        ) from None
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise DomainError(
            gettext("--amount %(value)r: yuan, more than 0, at most two decimals") % {"value": value},
            field="amount_yuan",
        )
    return int(amount * 100)


class Command(PlatformCommand):
    help = "The cardholder's online account (市民卡账户): open it, top it up (充值)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        new = sub.add_parser("open", help="open the online account of a named card's holder (idempotent)")
        new.add_argument("card")
        top = sub.add_parser("topup", help="top up the online account (充值) at a window")
        top.add_argument("card")
        top.add_argument("--amount", required=True, help="in yuan, e.g. 200.00")
        top.add_argument("--key", required=True, help="idempotency key: a retry credits nothing again")
        top.add_argument("--channel", choices=["bank", "cash"], default="cash")

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=160)
        with tenant_context(tenant):
            if opts["action"] == "open":
                account = services.account_open(card_no=opts["card"], actor=self.actor)
            else:
                posting = services.account_topup(
                    card_no=opts["card"],
                    amount_fen=fen_of(opts["amount"]),
                    idempotency_key=opts["key"],
                    channel=opts["channel"],
                    actor=self.actor,
                )
                console.print(
                    gettext("posting %(posting)s: %(amount_fen)s topped up")
                    % {"posting": posting.pk, "amount_fen": yuan(posting.amount_fen)}
                )
                account = account_of_card(card_no=opts["card"])
            console.print(
                gettext("account %(account)s of card %(card)s: balance %(balance)s")
                % {"account": account.code, "card": opts["card"], "balance": yuan(account.balance_fen)}
            )
