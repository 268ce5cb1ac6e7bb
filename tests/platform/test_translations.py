"""The zh_Hans catalogue (docs/configuration.md, "Languages"): complete, with no fuzzy or untranslated entry,
holding every string the code marks for translation and nothing else, its placeholders kept, and the
compiled .mo the one the .po makes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polib
import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import translation

PACKAGE = Path(__file__).resolve().parents[2] / "citycard"
PO = PACKAGE / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MAKEMESSAGES = {
    "locale": ["zh_Hans"],
    "ignore_patterns": ["terminal_kit/*"],
    "no_obsolete": True,
    "verbosity": 0,
}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]|%\(\w+\)0?\d*[sd]|\{(\w+)\}")


def _catalogue() -> polib.POFile:
    return polib.pofile(str(PO))


def _key(entry: polib.POEntry) -> tuple[str, str, str]:
    return (entry.msgctxt or "", entry.msgid, entry.msgid_plural or "")


def test_every_entry_is_translated_and_none_is_fuzzy():
    po = _catalogue()
    assert not po.metadata_is_fuzzy, "the catalogue's header is marked fuzzy"
    untranslated = [e.msgid for e in po.untranslated_entries()]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    obsolete = [e.msgid for e in po.obsolete_entries()]
    assert not untranslated, f"untranslated in {PO.name}: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy in {PO.name}: {fuzzy[:10]}"
    assert not obsolete, f"obsolete (#~) entries in {PO.name}: {obsolete[:10]}"
    assert len(po) > 500


def test_translations_keep_the_placeholders_of_their_source():
    wrong = []
    for entry in _catalogue():
        names = sorted(m.group(0) for m in PLACEHOLDER.finditer(entry.msgid))
        translations = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        wrong += [
            (entry.msgid, t)
            for t in translations
            if sorted(m.group(0) for m in PLACEHOLDER.finditer(t)) != names
        ]
    assert not wrong, wrong[:5]


def test_the_catalogue_holds_exactly_the_strings_the_code_marks(tmp_path, monkeypatch):
    """makemessages over a copy of the code, into an empty catalogue: the same msgids as the committed one.
    A string wrapped in _() or {% translate %} but missing from the .po (or one the code no longer has)
    fails here; the fix is `make messages-update`, then translating what it added."""
    if shutil.which("xgettext") is None:
        pytest.fail("gettext is not installed: `make system-deps` (as root) installs it")
    tree = tmp_path / "citycard"
    shutil.copytree(
        PACKAGE, tree, ignore=shutil.ignore_patterns("locale", "__pycache__", "static", "migrations")
    )
    (tree / "locale").mkdir()
    monkeypatch.chdir(tree)
    with override_settings(LOCALE_PATHS=[tree / "locale"]):
        call_command("makemessages", **MAKEMESSAGES)
    extracted = polib.pofile(str(tree / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    in_code = {_key(e) for e in extracted}
    in_catalogue = {_key(e) for e in _catalogue() if not e.obsolete}
    assert not in_code - in_catalogue, (
        f"marked in the code, missing from {PO.name}: {sorted(in_code - in_catalogue)[:10]}"
    )
    assert not in_catalogue - in_code, (
        f"in {PO.name}, no longer in the code: {sorted(in_catalogue - in_code)[:10]}"
    )


def test_the_compiled_catalogue_is_the_one_the_po_makes():
    mo_path = PO.with_suffix(".mo")
    assert mo_path.exists(), "no compiled catalogue: run `make messages` (gettext's msgfmt)"
    mo = {
        (e.msgctxt or "", e.msgid): (e.msgstr_plural.get(0) if e.msgid_plural else e.msgstr)
        for e in polib.mofile(str(mo_path))
    }
    po = {
        (e.msgctxt or "", e.msgid): (e.msgstr_plural.get(0) if e.msgid_plural else e.msgstr)
        for e in _catalogue().translated_entries()
    }
    mo.pop(("", ""), None)  # the header
    assert mo == po, "the .mo is stale: run `make messages`"


def test_django_reads_every_translation_from_the_catalogue():
    """Through LOCALE_PATHS and the compiled .mo, as the pages read them. (No msgid holds a backslash: a
    template's literal and makemessages' extraction escape it differently, so it would never match.)"""
    assert not [e.msgid for e in _catalogue() if "\\" in e.msgid]
    with translation.override("zh-hans"):
        wrong = [
            e.msgid
            for e in _catalogue().translated_entries()
            if not e.msgid_plural and not e.msgctxt and translation.gettext(e.msgid) != e.msgstr
        ]
    assert not wrong, wrong[:10]
    with translation.override("en"):
        assert translation.gettext("Net positions") == "Net positions"
