"""citycard-terminal's own catalogue (docs/configuration.md, "Languages"; citycard/terminal_kit/i18n.py):
complete, with no fuzzy or untranslated entry, holding exactly the strings the kit marks (``_``, ``N_``,
``ngettext``), its placeholders kept, the compiled .mo the one the .po makes, and read by the command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import polib
import pytest

from citycard.terminal_kit import i18n

KIT = Path(__file__).resolve().parents[2] / "citycard" / "terminal_kit"
PO = KIT / "locale" / "zh_Hans" / "LC_MESSAGES" / "citycard_terminal.po"
PLACEHOLDER = re.compile(r"%\(\w+\)[-.\d]*[sdrf]|%[sdr]")


def _catalogue() -> polib.POFile:
    return polib.pofile(str(PO))


def _translations(entry: polib.POEntry) -> list[str]:
    return list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]


def test_every_entry_is_translated_and_none_is_fuzzy():
    po = _catalogue()
    assert not po.metadata_is_fuzzy, "the catalogue's header is marked fuzzy"
    assert po.metadata["Plural-Forms"] == "nplurals=1; plural=0;"
    untranslated = [e.msgid for e in po if not all(_translations(e))]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    obsolete = [e.msgid for e in po.obsolete_entries()]
    assert not untranslated, f"untranslated in {PO.name}: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy in {PO.name}: {fuzzy[:10]}"
    assert not obsolete, f"obsolete (#~) entries in {PO.name}: {obsolete[:10]}"
    assert len(po) > 200


def test_translations_keep_the_placeholders_of_their_source():
    wrong = [
        (entry.msgid, text)
        for entry in _catalogue()
        for text in _translations(entry)
        if sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(entry.msgid))
    ]
    assert not wrong, wrong[:5]


def test_the_catalogue_holds_exactly_the_strings_the_kit_marks(tmp_path):
    """xgettext over the kit, as `make messages-update` runs it: the same msgids as the committed .po. A
    string marked in the code but missing from the .po (or one the code no longer has) fails here; the fix
    is `make messages-update`, then translating what it added."""
    if shutil.which("xgettext") is None:
        pytest.fail("gettext is not installed: `make system-deps` (as root) installs it")
    sources = sorted(str(p) for p in KIT.rglob("*.py"))
    pot = tmp_path / "citycard_terminal.pot"
    subprocess.run(
        [
            *("xgettext", "--language=Python", "--from-code=UTF-8", "--keyword=_", "--keyword=N_"),
            *("--keyword=ngettext:1,2", "-o", str(pot), *sources),
        ],
        check=True,
    )
    in_code = {(e.msgid, e.msgid_plural or "") for e in polib.pofile(str(pot))}
    in_catalogue = {(e.msgid, e.msgid_plural or "") for e in _catalogue() if not e.obsolete}
    assert not in_code - in_catalogue, f"marked in the kit, missing from {PO.name}: {in_code - in_catalogue}"
    assert not in_catalogue - in_code, f"in {PO.name}, no longer in the kit: {in_catalogue - in_code}"


def test_the_compiled_catalogue_is_the_one_the_po_makes():
    mo_path = PO.with_suffix(".mo")
    assert mo_path.exists(), "no compiled catalogue: run `make messages` (gettext's msgfmt)"
    mo = {(e.msgid, e.msgid_plural or ""): _translations(e) for e in polib.mofile(str(mo_path))}
    po = {(e.msgid, e.msgid_plural or ""): _translations(e) for e in _catalogue().translated_entries()}
    mo.pop(("", ""), None)  # the header
    assert mo == po, "the .mo is stale: run `make messages`"
    if shutil.which("msgfmt") is not None:  # and gettext itself finds nothing wrong with the .po
        subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(PO)], check=True)


def test_the_command_reads_every_translation_from_the_catalogue():
    """Through the standard library's gettext and the compiled .mo, as citycard-terminal reads them; English
    is the source text."""
    try:
        i18n.language_activate("zh-hans")
        wrong = [
            e.msgid
            for e in _catalogue().translated_entries()
            if not e.msgid_plural and i18n._(e.msgid) != e.msgstr
        ]
        assert i18n.ngettext("%(count)s tap", "%(count)s taps", 2) % {"count": 2} == "2 笔刷卡"
        i18n.language_activate("en")
        assert i18n._("hotlist version %(version)s: %(count)s cards blocked").startswith("hotlist version")
    finally:
        i18n.language_activate("en")
    assert not wrong, wrong[:10]


def test_a_kit_message_stays_english_text_and_reads_in_the_commands_language():
    """The kit's refusals are the back office's too: their text is English whatever the command speaks."""
    from citycard.terminal_kit.signing import SignatureError, verify_document

    with pytest.raises(SignatureError) as caught:
        verify_document({"payload": {}, "signature": {"alg": "Ed25519", "key_id": "x:s1"}}, keys={})
    assert str(caught.value) == "signed by unknown key 'x:s1'"
    try:
        i18n.language_activate("zh-hans")
        assert i18n.reason(caught.value) == "由未知密钥 'x:s1' 签名"
        assert str(caught.value) == "signed by unknown key 'x:s1'"
    finally:
        i18n.language_activate("en")
    assert i18n.reason(caught.value) == "signed by unknown key 'x:s1'"


def test_the_language_switches():
    assert i18n.language_from(["--lang", "en", "queue"]) == "en"
    assert i18n.language_from(["queue", "--lang=zh-hans"]) == "zh-hans"
    with pytest.raises(ValueError, match="--lang must be one of zh-hans, en"):
        i18n.language_from(["--lang", "fr"])
