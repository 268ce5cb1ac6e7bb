"""What cards tells the apps above it (cards is the lowest tenant app: it imports none of them).

``card_replaced`` — sent by ``services.card_replace`` inside its transaction, with ``old_card_no``,
``new_card_no``, ``actor`` and ``at``; a receiver returns a dict of what it moved (written into the card's
audit entry). ``accounts`` moves the e-purse shadow and the online account to the new card.

``cardholder_changed`` is sent inside the registering or category-granting transaction, with
``cardholder`` and ``reason`` ("register", "category"); a receiver's writes commit or roll back with it.
``card_changed`` — see below (e.g. automatic entitlements and the offline entitlement list follow it).
"""

from __future__ import annotations

from django.dispatch import Signal

card_replaced = Signal()
cardholder_changed = Signal()

# Sent when a named card changes state (issued, activated, lost, replaced, cancelled…), with ``card`` and
# ``action``, inside the transaction: lists kept per card (the offline entitlement list) follow it.
card_changed = Signal()
