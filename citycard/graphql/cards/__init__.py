"""Cards on the tenant endpoint: a card by number with its scheme, validity, applications, balances and
transactions; loss reports and applications (mutations)."""
