"""Money (金额): integer fen everywhere; how people read it (``yuan``: ¥1,234.56); and the one rounding of
a rate in basis points (万分之一).

Fees (``interop.agreements.fee_fen``), medical shares (``medical.services.claims.share_fen``) and
percentage fares (``terminal_kit.fares``) all take ``bps_of``: a pure module, so the terminal prices with
the very rounding the back office rechecks and clears with.
"""

from __future__ import annotations

BPS_WHOLE = 10_000  # 100 % in basis points


def bps_of(amount_fen: int, bps: int) -> int:
    """``amount_fen × bps / 10000`` to the fen, rounded half away from zero: half-up for the amounts of
    fares, fees and shares, and the same magnitude for a negative adjustment. ``bps`` is not negative."""
    magnitude = (abs(amount_fen) * bps * 2 + BPS_WHOLE) // (2 * BPS_WHOLE)
    return magnitude if amount_fen >= 0 else -magnitude


def yuan(fen: int | None) -> str:
    """Fen as people read them: ``123456`` → ``¥1,234.56``, ``-5`` → ``-¥0.05``, None → empty. Integer
    arithmetic only (no float ever rounds an amount)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
