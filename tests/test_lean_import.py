"""aiogram imported the lean way (types built on first use) still builds and validates every type."""

from __future__ import annotations

import subprocess
import sys

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
