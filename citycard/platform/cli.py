"""The `citycard` command: this project's manage.py (Django's commands plus ours).

What a person can act on (see ``citycard.platform.management.base.error_line``) is printed as one line on
stderr with exit code 2, for Django's own commands too; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from citycard.platform.management.base import EXIT_REFUSED, error_line

    argv = list(argv if argv is not None else sys.argv)
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
