"""Automatic grants (自动赋权) on the cards app's signal: a cardholder registered or put in a category gets
every approved automatic type they are now eligible for, in the same transaction."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from citycard.tenants.cards.signals import card_changed, cardholder_changed
from citycard.tenants.entitlements.services import entitlement_list_follow, entitlements_auto_grant


@receiver(cardholder_changed, dispatch_uid="entitlements_auto_grant")
def _auto_grant(sender: Any, *, cardholder: Any, reason: str, **kwargs: Any) -> None:
    entitlements_auto_grant(cardholder_id=cardholder.pk, actor=f"system:{reason}")


@receiver(card_changed, dispatch_uid="entitlements_list_follow")
def _list_follow(sender: Any, *, card: Any, action: str, **kwargs: Any) -> None:
    entitlement_list_follow(cardholder_id=card.cardholder_id)
