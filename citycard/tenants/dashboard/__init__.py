"""The city dashboard (城市看板) on each tenant's site: the tenant's own records and what the interop layer
delivered to it, signed, in its inbox; never another tenant's schema (docs/console.md, "City dashboard")."""
