"""The PC/SC fixtures (``pcscd``, ``inserted``) are in tests/pcsc.py, a plugin of the whole suite (tests/conftest.py),
so one session-wide pcscd and its lock serve every directory; these names stay importable from here."""

from tests.pcsc import POLL_S, PSAM_READER, READER, reinsert

__all__ = ["POLL_S", "PSAM_READER", "READER", "reinsert"]
