"""The browser tests' served site (``live``): tests/e2e/browser.py."""

from tests.e2e.browser import live  # noqa: F401 (a fixture)
