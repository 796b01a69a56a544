"""The one table of the MQTT commands: every schema has its command and handler, every
handler its entry, and the documented commands are the table's."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from edged.daemon import commands
from edged.daemon.actions import COMMANDS, SCHEMAS, Actions
from edged.daemon.commands import Args, CommandError, parse_command
from edged.errors import ErrorCode

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"


def test_every_schema_belongs_to_a_command() -> None:
    models = {
        model
        for model in vars(commands).values()
        if inspect.isclass(model) and issubclass(model, Args) and model is not Args
    }
    assert models == {spec.schema for spec in COMMANDS.values()}


def test_every_handler_is_in_the_table_under_its_own_name() -> None:
    handlers = {
        name
        for name, _ in inspect.getmembers(Actions, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "run"
    }
    assert handlers == set(COMMANDS)
    assert {name: spec.handler for name, spec in COMMANDS.items()} == {
        name: getattr(Actions, name) for name in COMMANDS
    }


def test_the_documented_commands_are_the_table() -> None:
    section = DOCS.read_text().split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert sorted(documented) == sorted(COMMANDS)


def test_the_parser_knows_the_table_and_nothing_else() -> None:
    assert parse_command('{"command": "get_state"}', SCHEMAS).name == "get_state"
    with pytest.raises(CommandError) as refused:
        parse_command('{"command": "cmd_get_state"}', SCHEMAS)
    assert refused.value.code == ErrorCode.COMMAND_UNKNOWN
