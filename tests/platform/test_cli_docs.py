"""Every example of docs/cli.md parses with its command's parser, and every project command has one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


def examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"## Examples.*?```console\n(.*?)```", text, re.S)
    assert block, "docs/cli.md has no ## Examples console block"
    return [line for line in block.group(1).splitlines() if line.startswith("citycard ")]


@pytest.mark.parametrize("line", examples())
def test_the_example_parses(line):
    _, name, *args = shlex.split(line)
    command = load_command_class(get_commands()[name], name)
    command.create_parser("citycard", name).parse_args(args)  # a CommandError names what does not parse


def without_tenant(line: str) -> str:
    return re.sub(r"\s--tenant\s+\S+", "", line) + " "


def test_every_project_command_and_sub_command_has_an_example():
    from .test_cli_parsers import leaves, parser_of, project_commands

    lines = [without_tenant(line) for line in examples()]
    missing = []
    for app, name in project_commands():
        parser = parser_of(app, name)
        for each in [parser, *leaves(parser)]:
            if not any(line.startswith(each.prog + " ") for line in lines):
                missing.append(each.prog)
    assert missing == []
