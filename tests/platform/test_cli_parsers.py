"""Every project command takes --tenant in the same places: right after the command name, and after its
sub-command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from django.core.management import load_command_class

import citycard

ROOT = Path(citycard.__file__).resolve().parent


def project_commands() -> list[tuple[str, str]]:
    """(app module, command name) of every command under citycard/*/management/commands and one level down."""
    found = []
    for pattern in ("*/management/commands/*.py", "*/*/management/commands/*.py"):
        for path in ROOT.glob(pattern):
            if path.name.startswith("_"):
                continue
            app = ".".join(path.relative_to(ROOT.parent).parts[:-3])
            found.append((app, path.stem))
    return sorted(found)


def parser_of(app: str, name: str) -> argparse.ArgumentParser:
    return load_command_class(app, name).create_parser("citycard", name)


def leaves(parser: argparse.ArgumentParser):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for sub in dict.fromkeys(action.choices.values()):
            yield sub
            yield from leaves(sub)


def test_every_project_command_is_found():
    names = {name for _, name in project_commands()}
    assert {"cards", "fares", "keys", "user", "audit", "terminal", "medical", "apikey", "clearing"} <= names


@pytest.mark.parametrize(("app", "name"), project_commands())
def test_tenant_is_accepted_after_the_command_name_and_after_each_sub_command(app, name):
    parser = parser_of(app, name)
    everywhere = [parser, *leaves(parser)]
    having = [p for p in everywhere if "--tenant" in p._option_string_actions]
    if not having:
        return
    missing = [p.prog for p in everywhere if "--tenant" not in p._option_string_actions]
    assert not missing, f"{name}: --tenant not accepted by {missing}"


@pytest.mark.parametrize(
    "before, after",
    [
        ("cards --tenant jiaxing import a.csv", "cards import a.csv --tenant jiaxing"),
        ("fares --tenant hangzhou quote --route 155", "fares quote --route 155 --tenant hangzhou"),
        ("keys --tenant jiaxing list", "keys list --tenant jiaxing"),
        ("user --tenant jiaxing list", "user list --tenant jiaxing"),
        ("terminal --tenant hangzhou list", "terminal list --tenant hangzhou"),
        ("medical --tenant dongguan policy list", "medical policy list --tenant dongguan"),
        ("apikey --tenant hangzhou list", "apikey list --tenant hangzhou"),
    ],
)
def test_both_places_give_the_same_tenant(before, after):
    name = before.split()[0]
    app = dict((n, a) for a, n in project_commands())[name]
    first = vars(parser_of(app, name).parse_args(before.split()[1:]))
    second = vars(parser_of(app, name).parse_args(after.split()[1:]))
    assert first == second and first["tenant"] in before


def test_a_command_that_needs_a_tenant_says_so_in_one_line(db):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="必须提供 --tenant"):  # Chinese first (docs/cli.md, "Language")
        call_command("cards", "schemes")


def test_the_terminal_kit_takes_tenant_before_and_after_its_sub_command():
    from citycard.terminal_kit.__main__ import parser_build

    assert parser_build().parse_args(["simulate"]).tenant == "hangzhou"
    before = vars(parser_build().parse_args(["--tenant", "jiaxing", "simulate", "--taps", "5"]))
    after = vars(parser_build().parse_args(["simulate", "--taps", "5", "--tenant", "jiaxing"]))
    assert before == after and before["tenant"] == "jiaxing"
    assert parser_build().parse_args(
        ["queue", "drop", "B1", "--reason", "x", "--tenant", "jiaxing"]
    ).tenant == ("jiaxing")
