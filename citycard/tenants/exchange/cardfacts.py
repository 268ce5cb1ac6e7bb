"""The card facts issuer validation needs, through one function.

``citycard.tenants.cards`` (the tenant domain) provides ``selectors.card_facts``. Until it is installed
this returns ``None`` and the issuer's validation says so: the answer lists the checks it ran
(``checks``), and "card known" / "not hotlisted" are absent from it, never reported as passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.apps import apps

CARDS_APP = "citycard.tenants.cards"


def card_facts_for(*, card_nos: Iterable[str], at: dt.datetime | None = None) -> dict[str, Any] | None:
    """``{card_no: CardFacts}`` for the cards this tenant knows (unknown cards absent), or None when the
    card domain is not installed."""
    if not apps.is_installed(CARDS_APP):
        return None
    try:
        from citycard.tenants.cards.selectors import card_facts  # type: ignore[import-not-found]
    except ImportError:
        return None
    return card_facts(card_nos=list(card_nos), at=at)
