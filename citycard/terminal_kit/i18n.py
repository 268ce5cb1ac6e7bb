"""What ``citycard-terminal`` says to a person, Chinese first (中文优先), English second.

The kit imports nothing of Django, so it has its own catalogue for the standard library's ``gettext``: the
domain ``citycard_terminal``, ``locale/zh_Hans/LC_MESSAGES/citycard_terminal.po`` beside this module (the
.po committed, its .mo compiled by ``make messages``; docs/configuration.md, "Languages"). The language is
``zh-hans`` unless ``CITYCARD_LANGUAGE=en`` or ``citycard-terminal --lang en`` asks for English, the same
switches as ``citycard``.

The kit's modules are also the back office's: their exceptions and tap messages stay English text (the back
office compares, stores and translates them its own way). Where the command prints one, the module raises it
with ``said(N_("… %(name)s …"), name=…)``: the same English string, which also remembers its template and
values, so ``reason(exc)`` reads it in the command's language.
"""

from __future__ import annotations

import argparse
import gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DOMAIN = "citycard_terminal"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("zh-hans", "en")
DEFAULT_LANGUAGE = "zh-hans"
_CATALOGUE_OF = {"zh-hans": "zh_Hans"}

_active: gettext.NullTranslations = gettext.NullTranslations()
_catalogues: dict[str, gettext.NullTranslations] = {}


def N_(message: str) -> str:  # the gettext convention: marked for the catalogue, not translated
    """Mark ``message`` for the catalogue; translated when it is read (``_``, ``said``)."""
    return message


def _(message: str) -> str:
    """``message`` in the active language (as it is when the catalogue has no translation)."""
    return _active.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active.ngettext(singular, plural, n)


def language_code(value: str | None) -> str:
    """``zh-hans`` or ``en`` from a switch's value (``CITYCARD_LANGUAGE``, ``--lang``); ValueError otherwise."""
    code = (value or DEFAULT_LANGUAGE).strip().lower().replace("_", "-")
    if code not in LANGUAGES:
        raise ValueError(f"--lang must be one of {', '.join(LANGUAGES)}, not {value!r}")
    return code


def _catalogue(code: str) -> gettext.NullTranslations:
    """The kit's catalogue for ``code`` (``en``: the source strings; a missing .mo also falls back to them)."""
    code = language_code(code)
    found = _catalogues.get(code)
    if found is None:
        catalogue = _CATALOGUE_OF.get(code)
        found = (
            gettext.translation(DOMAIN, LOCALE_DIR, languages=[catalogue], fallback=True)
            if catalogue
            else gettext.NullTranslations()
        )
        _catalogues[code] = found
    return found


def language_activate(code: str) -> None:
    """Speak ``code`` from now on (``en``: the source strings; a missing .mo also falls back to them)."""
    global _active
    _active = _catalogue(code)


def _gettext_in(language: str | None, message: str) -> str:
    """``message`` in ``language`` (the back office passes the person's), else in the active language."""
    if language is None:
        return _active.gettext(message)
    try:
        return _catalogue(language).gettext(message)
    except ValueError:  # a language the kit does not speak: its English source
        return message


def language_from(argv: list[str]) -> str:
    """The language a run asks for: ``--lang X`` / ``--lang=X`` anywhere in ``argv``, else
    ``CITYCARD_LANGUAGE``, else Chinese."""
    for i, arg in enumerate(argv):
        if arg == "--lang":
            return language_code(argv[i + 1] if i + 1 < len(argv) else "")
        if arg.startswith("--lang="):
            return language_code(arg.split("=", 1)[1])
    return language_code(os.environ.get("CITYCARD_LANGUAGE"))


class Said(str):
    """An English message that remembers its template and values, to be read in another language."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, params: dict[str, Any]) -> Said:
        text = super().__new__(cls, template % params if params else template)
        text.template = template
        text.params = params
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (a worker's exception) with its template
        return (Said, (self.template, self.params))

    def translated(self, language: str | None = None) -> str:
        params = {k: translated(v, language) for k, v in self.params.items()}
        text = _gettext_in(language, self.template)
        return text % params if params else text


def said(template: str, **params: Any) -> Said:
    """``template % params`` (English, as before), readable in the command's language by ``reason``."""
    return Said(template, params)


def text_of(exc: BaseException) -> str:
    """An exception's message to pass on in another exception: its ``Said`` itself (still translatable),
    else its text."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    return arg if isinstance(arg, Said) else str(exc)


def translated(value: Any, language: str | None = None) -> Any:
    """A ``Said`` (or an exception raised with one) in ``language`` (the active language when None);
    anything else as it is."""
    if isinstance(value, Said):
        return value.translated(language)
    if isinstance(value, BaseException):
        return reason(value, language)
    return value


def reason(exc: BaseException, language: str | None = None) -> str:
    """What an exception says, in ``language`` (the active language when None): an exception that reads
    itself (a ``translated(language)`` method, e.g. a rule document's problems) asked, else its ``Said``
    message translated, else its text (translated when the catalogue holds that very text)."""
    own = getattr(exc, "translated", None)
    if callable(own):
        return str(own(language))
    arg = exc.args[0] if len(exc.args) == 1 else None
    if isinstance(arg, Said):
        return arg.translated(language)
    text = str(exc)
    return _gettext_in(language, text) if text else text


# argparse's own words (usage, section titles, its refusals), translated while citycard-terminal's parser
# formats or parses; the strings are those of Python 3.11's argparse.
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("options"),
    N_("positional arguments"),
    N_("show this help message and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
)


@contextmanager
def _argparse_speaking() -> Iterator[None]:
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._, argparse.ngettext = _, ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


class ArgumentParser(argparse.ArgumentParser):
    """argparse in the active language: its help, usage and refusals (argparse's own words too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _argparse_speaking():
            super().__init__(*args, **kwargs)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        with _argparse_speaking():
            return super().parse_known_args(*args, **kwargs)

    def format_usage(self) -> str:
        with _argparse_speaking():
            return super().format_usage()

    def format_help(self) -> str:
        with _argparse_speaking():
            return super().format_help()

    def error(self, message: str) -> Any:
        with _argparse_speaking():
            return super().error(message)
