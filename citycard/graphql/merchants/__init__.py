"""Merchant payments for partner apps: pay a merchant from the online account, refund, list payments."""
