"""Terminals and their transactions (taps and purchases) on the tenant endpoint."""
