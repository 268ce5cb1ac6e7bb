"""Helpers of the card tests (fixtures city/holder live in tests/tenants/conftest.py)."""

from ..conftest import new_id

__all__ = ["new_id"]
