"""Base class for the citycard commands: a refused action prints one line on stderr and exits 2.

``error_line`` is the one place that turns what a command can run into (a refused action, a missing file,
a file in another encoding, a database not migrated or not reachable) into that line; ``PlatformCommand``
uses it for every project command and ``citycard.platform.cli`` for Django's own.

``--tenant`` is accepted in the same places by every command that takes it: right after the command name
and after its sub-command (``citycard cards --tenant jiaxing import F`` and ``citycard cards import F
--tenant jiaxing``); ``PlatformCommand.create_parser`` puts it there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from django.core.management.base import BaseCommand, CommandError, handle_default_options
from django.db import DatabaseError, OperationalError, ProgrammingError, connections
from django.utils.translation import gettext

from citycard.platform.errors import DomainError
from citycard.terminal_kit.beijing import beijing_text

EXIT_REFUSED = 2


def beijing(at: dt.datetime | None, *, seconds: bool = False, empty: str = "") -> str:
    """A moment as a person reads it in a command's output: Beijing time with its offset,
    ``2026-11-21 23:00 +08:00``. Amounts are shown the same way everywhere: yuan, the header says so."""
    if at is None:
        return empty
    return beijing_text(at, seconds=seconds)


MIGRATE = "the database has no tables yet: run citycard migrate"


def labelled(choices, code: str | None) -> str:
    """A state or status code as a clerk reads it: its label in the active language with the code beside it
    (``已结算 (settled)``); the bare code when ``choices`` (a TextChoices) does not know it."""
    if not code:
        return ""
    try:
        return f"{choices(code).label} ({code})"
    except ValueError:
        return code


def error_line(exc: BaseException) -> str | None:
    """The one line to print for ``exc`` when it is something a person can act on, else None (a bug)."""
    if isinstance(exc, CommandError | DomainError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}" if exc.filename else str(exc)
    if isinstance(exc, IsADirectoryError | PermissionError):
        return f"cannot read {exc.filename}: {exc.strerror}"
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"the file is not {exc.encoding} (byte {exc.start} cannot be read): save it as UTF-8 or name its "
            "--encoding"
        )
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc) and "relation" in str(exc):
        return MIGRATE
    if isinstance(exc, OperationalError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot reach the database: {first}"
    return None


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield sub
                yield from _subparsers(sub)


def _tenant_action(parser: argparse.ArgumentParser) -> argparse.Action | None:
    return parser._option_string_actions.get("--tenant")


class PlatformCommand(BaseCommand):
    actor = "cli"
    # Set from the parser: whether --tenant is required (it was declared required somewhere).
    tenant_required = False

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        self._tenant_everywhere(parser)
        for each in [parser, *_subparsers(parser)]:
            each.error = self._usage_error(each)
        return parser

    def _usage_error(self, parser: argparse.ArgumentParser):
        """Arguments that do not parse: one line too, naming --help, instead of argparse's usage block."""

        def error(message: str):
            if not getattr(self, "_called_from_command_line", False):
                raise CommandError(gettext("Error: %(message)s") % {"message": message})
            self.stderr.write(f"{parser.prog}: {message} (see {parser.prog} --help)")
            sys.exit(EXIT_REFUSED)

        return error

    def _tenant_everywhere(self, parser: argparse.ArgumentParser) -> None:
        """One --tenant, accepted before and after the sub-command. Its presence is checked in ``execute``
        (argparse would refuse a required top-level option given after the sub-command)."""
        subs = list(_subparsers(parser))
        declared = [a for a in (_tenant_action(p) for p in [parser, *subs]) if a is not None]
        if not declared or not subs:
            return
        first = declared[0]
        self.tenant_required = any(a.required for a in declared)
        kwargs = {"help": first.help, "metavar": "CODE"}
        if isinstance(first, argparse._AppendAction):
            kwargs["action"] = "append"
        top = _tenant_action(parser)
        if top is None:
            parser.add_argument("--tenant", **kwargs)
        else:
            top.required = False
        for sub in subs:
            action = _tenant_action(sub)
            if action is None:
                sub.add_argument("--tenant", default=argparse.SUPPRESS, **kwargs)
            else:
                action.required, action.default = False, argparse.SUPPRESS

    def execute(self, *args, **options):
        try:
            if self.tenant_required and not options.get("tenant"):
                raise CommandError(
                    gettext("--tenant is required (a tenant code, e.g. --tenant jiaxing)"),
                    returncode=EXIT_REFUSED,
                )
            return super().execute(*args, **options)
        except CommandError:
            raise
        except (DomainError, OSError, UnicodeDecodeError, DatabaseError) as exc:
            line = error_line(exc)
            if line is None:
                raise
            raise CommandError(line, returncode=EXIT_REFUSED) from exc

    def run_from_argv(self, argv):
        """As Django's, but the refusal is one line naming the command, and the exit code is the error's."""
        self._called_from_command_line = True
        parser = self.create_parser(argv[0], argv[1])
        options = parser.parse_args(argv[2:])
        cmd_options = vars(options)
        args = cmd_options.pop("args", ())
        handle_default_options(options)
        try:
            self.execute(*args, **cmd_options)
        except CommandError as exc:
            if options.traceback:
                raise
            self.stderr.write(f"citycard {argv[1]}: {exc}")
            sys.exit(exc.returncode)
        finally:
            connections.close_all()
