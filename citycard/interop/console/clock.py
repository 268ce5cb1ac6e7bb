"""The moment the console acts and reads "today" at: now (a seam tests replace with a fixed moment)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def now() -> dt.datetime:
    return timezone.now()
