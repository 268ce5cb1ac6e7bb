"""The one rounding of a rate in basis points (terminal_kit.money.bps_of), at its edges."""

from __future__ import annotations

import pytest

from citycard.terminal_kit.money import bps_of


@pytest.mark.parametrize(
    ("amount", "bps", "expected"),
    [
        (200, 50, 1),  # 1.00 fen exactly
        (100, 50, 1),  # 0.50 fen: half rounds up
        (99, 50, 0),  # 0.495 fen: down
        (-100, 50, -1),  # a negative adjustment: half away from zero, the same magnitude
        (-99, 50, 0),
        (150, 5000, 75),  # a 50 % fare
        (155, 5000, 78),  # 77.5 fen: up
        (0, 10_000, 0),
        (12345, 10_000, 12345),  # 100 %
    ],
)
def test_bps_of(amount, bps, expected):
    assert bps_of(amount, bps) == expected


def test_half_up_for_every_non_negative_amount_and_symmetric_below_zero():
    for amount in range(0, 400, 7):
        for bps in (0, 1, 33, 50, 4999, 5000, 10_000):
            assert bps_of(amount, bps) == (amount * bps + 5000) // 10_000
            assert bps_of(-amount, bps) == -bps_of(amount, bps)


def test_yuan_as_people_read_it():
    from citycard.terminal_kit.money import yuan

    assert [yuan(f) for f in (123456, -5, 0, 100_000_000_00, None)] == [
        "¥1,234.56",
        "-¥0.05",
        "¥0.00",
        "¥100,000,000.00",
        "",
    ]
