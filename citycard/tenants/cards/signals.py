"""What cards tells the apps above it (cards is the lowest tenant app: it imports none of them).

``card_replaced`` — sent by ``services.card_replace`` inside its transaction, with ``old_card_no``,
``new_card_no``, ``actor`` and ``at``; a receiver returns a dict of what it moved (written into the card's
audit entry). ``accounts`` moves the e-purse shadow and the online account to the new card.
"""

from __future__ import annotations

from django.dispatch import Signal

card_replaced = Signal()
