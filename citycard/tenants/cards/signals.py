"""What the cards app tells apps built on it, without importing them (e.g. automatic entitlements).

``cardholder_changed`` is sent inside the registering or category-granting transaction, with
``cardholder`` and ``reason`` ("register", "category"); a receiver's writes commit or roll back with it.
"""

from __future__ import annotations

from django.dispatch import Signal

cardholder_changed = Signal()

# Sent when a named card changes state (issued, activated, lost, replaced, cancelled…), with ``card`` and
# ``action``, inside the transaction: lists kept per card (the offline entitlement list) follow it.
card_changed = Signal()
