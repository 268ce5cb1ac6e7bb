"""Money and time as people read them (docs/console.md): data stays integer fen and aware datetimes; only
templates turn them into yuan and Beijing time.

    {% load people %}
    {{ 123456|yuan }}          <span class="yuan">¥1,234.56</span>   (negative: class "yuan neg", -¥…)
    {{ 123456|yuan_text }}     ¥1,234.56                               (for attributes and titles)
    {{ moment|beijing }}       2026-12-07 18:05 +08:00
    {{ code|reason }}          卡片已列入黑名单 <code>hotlisted</code>  (label and code; reason_text: plain)
    {{ code|insured }}         职工医保 (employee)
"""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.safestring import mark_safe

from citycard.platform import reasons
from citycard.terminal_kit import money
from citycard.terminal_kit.beijing import beijing_text

register = template.Library()


def yuan_of(fen: int | str | None) -> str:
    """``terminal_kit.money.yuan`` for a template value (an empty string is none)."""
    return "" if fen is None or fen == "" else money.yuan(int(fen))


@register.filter
def yuan_text(fen: int | None) -> str:
    return yuan_of(fen)


@register.filter
def yuan(fen: int | None) -> str:
    """The amount in a span a stylesheet can colour: class ``yuan``, and ``neg`` when below zero."""
    if fen is None or fen == "":
        return ""
    # No escaping to do: the class is one of two literals and the amount only "-¥0-9,." (money.yuan). Built
    # without format_html's per-argument escaping, a 300-participant cycle page draws ~1,200 of them.
    amount = int(fen)
    return mark_safe(f'<span class="{"yuan neg" if amount < 0 else "yuan"}">{money.yuan(amount)}</span>')


@register.filter
def beijing(moment: dt.datetime | None) -> str:
    """An aware datetime in Beijing time to the minute, with its offset: ``2026-12-07 18:05 +08:00``."""
    if not moment:
        return ""
    if isinstance(moment, dt.datetime):
        return beijing_text(moment)
    return str(moment)


@register.filter
def reason(code: str | None) -> str:
    """A rejection reason or review-flag code as a person reads it: its label with the code beside it,
    ``卡片已列入黑名单 <code>hotlisted</code>`` (platform/reasons.py); the bare code when it has no label."""
    return reasons.reason_html(code)


@register.filter
def reason_text(code: str | None) -> str:
    """The same for attributes, titles and chart series: ``卡片已列入黑名单 (hotlisted)``."""
    return reasons.reason_text(code)


@register.filter
def insured(code: str | None) -> str:
    """A claim's insured category as a person reads it: ``职工医保 (employee)``."""
    return reasons.insured_category_text(code)
