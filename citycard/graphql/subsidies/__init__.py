"""Subsidy payments (惠民惠农补贴) with item detail for a card's cardholder, on the tenant endpoint."""
