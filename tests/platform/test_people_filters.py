"""What a person reads of a code: its label, with the code beside it, in the active language."""

from __future__ import annotations

from django.template import Context, Template
from django.utils import translation


def _render(text: str, **values) -> str:
    return Template("{% load people %}" + text).render(Context(values))


def test_a_claims_insured_category_reads_as_its_label_and_code():
    assert _render("{{ c|insured }}", c="employee") == "职工医保 (employee)"
    assert _render("{{ c|insured }}", c="resident") == "城乡居民医保 (resident)"
    with translation.override("en"):
        assert (
            _render("{{ c|insured }}", c="employee") == "Employees&#x27; basic medical insurance (employee)"
        )
    assert _render("{{ c|insured }}", c="other") == "other"  # no label: the code as given
    assert _render("{{ c|insured }}", c=None) == ""


def test_a_reason_reads_as_its_label_and_code():
    assert _render("{{ c|reason_text }}", c="not_insured") == "未在参保地参保 (not_insured)"
    assert _render("{{ c|reason }}", c="hotlisted") == '卡片已列入黑名单 <code class="muted">hotlisted</code>'
