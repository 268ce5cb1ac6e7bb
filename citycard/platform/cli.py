"""The `citycard` command: this project's manage.py (Django's commands plus ours)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    argv = list(argv if argv is not None else sys.argv)
    argv[0] = "citycard"
    try:
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:
        print(f"citycard: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"citycard: cannot reach the database: {first}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
