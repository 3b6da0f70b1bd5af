"""Lean imports: aiogram imported the lean way (types built on first use) still builds and validates every type;
the CLI lists its commands without importing what they use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.stack import ROOT

CHECK = """
import sys
sys.path.insert(0, {root!r})
from bot.lean_import import import_aiogram
import_aiogram()
import aiogram.types as types
from aiogram.methods import SendMessage
built = 0
for name in types.__all__:
    entity = getattr(types, name)
    if hasattr(entity, "model_rebuild"):
        entity.model_rebuild(force=True)
        built += 1
update = types.Update.model_validate({{
    "update_id": 1,
    "callback_query": {{"id": "1", "chat_instance": "1", "data": "m:main",
        "from": {{"id": 5, "is_bot": False, "first_name": "A", "language_code": "ru"}},
        "message": {{"message_id": 2, "date": 0, "chat": {{"id": 5, "type": "private"}},
            "reply_markup": {{"inline_keyboard": [[{{"text": "x", "callback_data": "y"}}]]}},
            "document": {{"file_id": "f", "file_unique_id": "u", "file_name": "a.session"}}}}}},
}})
assert update.callback_query.message.document.file_name == "a.session"
assert SendMessage(chat_id=1, text="hi").text == "hi"
print(built)
"""


def test_every_aiogram_type_builds_after_a_lean_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(root=str(ROOT))], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) > 300


LEAN_CLI = """
import sys
sys.path.insert(0, {root!r})
from backend.cli import cli
for args in {calls!r}:
    assert cli.main(args, prog_name="run_cli.py", standalone_mode=False) == 0, args
heavy = ("sqlalchemy", "redis", "rich", "alembic", "aiogram", "celery", "board", "database", "backend.control_plane")
print(",".join(sorted(name for name in heavy + {also!r} if name in sys.modules)))
"""


@pytest.mark.parametrize(
    ("calls", "also"),
    [
        ([["--version"], ["--help"]], ("pydantic", "config")),  # the root only: nothing beyond click
        ([["accounts", "--help"], ["board", "--help"], ["plugins", "--help"]], ()),
    ],
)
def test_the_cli_lists_its_commands_without_importing_what_they_use(calls: list[list[str]], also: tuple) -> None:
    """`run_cli.py --version` and `--help`, of the root and of each group, import click and the command modules
    but no database, Redis, rich or services: operators call the CLI in loops (bench/cli.py times it)."""
    code = LEAN_CLI.format(root=str(ROOT), calls=calls, also=also)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "", result.stdout[-2000:]
