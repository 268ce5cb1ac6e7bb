"""No batching needed yet: each cardholder field takes one card number (aliases are limited per document)."""
