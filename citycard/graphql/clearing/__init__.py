"""Clearing on the platform endpoint: agreements, cycles and what they produced, disputes (clearing staff)."""
