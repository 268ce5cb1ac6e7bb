"""Base class for the citycard commands: a refused action prints one line and exits non-zero."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from citycard.platform.errors import DomainError


class PlatformCommand(BaseCommand):
    actor = "cli"

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
