"""The `citycard` command: this project's manage.py (Django's commands plus ours).

What a person can act on (see ``citycard.platform.management.base.error_line``) is printed as one line on
stderr with exit code 2, for Django's own commands too; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

LANGUAGES = ("zh-hans", "en")


def _language(argv: list[str]) -> list[str]:
    """``citycard --lang en COMMAND ...``: the language of what the command says to a person (messages,
    tables, refusals) for this run, as ``CITYCARD_LANGUAGE`` sets it (default zh-hans, the platform's
    LANGUAGE_CODE). JSON and CSV outputs are the same in both. Returns argv without the option."""
    if len(argv) > 1 and (argv[1] == "--lang" or argv[1].startswith("--lang=")):
        if argv[1] == "--lang":
            value, rest = (argv[2] if len(argv) > 2 else ""), argv[3:]
        else:
            value, rest = argv[1].split("=", 1)[1], argv[2:]
        if value.lower() not in LANGUAGES:
            print(f"citycard: --lang must be one of {', '.join(LANGUAGES)}, not {value!r}", file=sys.stderr)
            sys.exit(2)
        os.environ["CITYCARD_LANGUAGE"] = value.lower()
        argv = [argv[0], *rest]
    return argv


def main(argv: list[str] | None = None) -> None:
    argv = _language(list(argv if argv is not None else sys.argv))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from citycard.platform.management.base import EXIT_REFUSED, error_line

    argv[0] = "citycard"
    try:
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:
        print(f"citycard: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
    except Exception as exc:
        line = error_line(exc)
        if line is None or "--traceback" in argv:
            raise
        print(f"citycard: {line}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":
    main()
