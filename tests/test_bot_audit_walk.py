"""Every button the bot defines, pressed by an owner with real rows behind it: each one the permission table
says changes state leaves exactly one audit row, naming the owner; each one that reads or asks leaves none.
The walk goes over `bot.permissions.CALLBACKS` (every CallbackData and each of its actions), not a list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot import callbacks as cb
from database.models import AuditEntry
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import add_operations
from tests.support.stack import wait_until
from tests.test_bot_roles import OWNER, build_world, every_callback, set_form

# Buttons that change only the pressing admin's own view of the bot, not the fleet: not audited.
OWN_SETTINGS = {cb.Language(code="ru").pack()}
# Buttons that act only inside their form: the form is opened first, as the bot would have.
FORMS = {
    cb.Form(action=cb.FormAction.DEFAULT_CONFIG).pack(): ("PluginForm:config", {"plugin": "autoreply"}),  # refused
    cb.Form(action=cb.FormAction.NO_NAME).pack(): ("AddAdmin:name", {"tg_id": 777, "role": "viewer"}),
    cb.Form(action=cb.FormAction.NO_PASSWORD).pack(): ("PasswordForm:current", {"phone": "+7 *** ***-45-67"}),
}


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = add_operations(BotHarness(redis_url, sqlite_url, frozenset({OWNER})), redis_url)
    yield running
    running.close()


def audit_rows(harness: BotHarness) -> list[AuditEntry]:
    with harness.services.fleet.sessions() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def audit_count(harness: BotHarness) -> int:
    with harness.services.fleet.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_every_button_that_changes_state_leaves_exactly_one_audit_row(harness: BotHarness) -> None:
    world = build_world(harness)
    buttons = every_callback(world)
    # The toggle of a plugin that is off opens its form (nothing changes yet); of one that is on, disables it.
    assert harness.services.plugins is not None
    harness.services.plugins.enable("autoreply", [world.account_id], {"text": "away"}, "test")
    chat = harness.chat(OWNER)
    chat.send("/start")  # a screen for the buttons to be pressed on (a check edits it with its outcome)
    start = audit_count(harness)
    expected_total = 0
    for data, rule in buttons:
        if data in FORMS:
            state, form = FORMS[data]
            set_form(harness, OWNER, state, {"account_id": world.account_id, **form})
        before = audit_count(harness)
        chat.press(data, timeout=30)
        expected = 1 if rule.changes and data not in OWN_SETTINGS else 0
        expected_total += expected
        # The row is written when the service call ends, which may be after the press is answered.
        wanted = before + expected
        wait_until(lambda: audit_count(harness) >= wanted, 30, message=f"an audit row for {data}")  # noqa: B023
        assert audit_count(harness) - before == expected, (data, rule.effect)
        set_form(harness, OWNER, "", {})
    assert audit_count(harness) - start == expected_total > 20
    rows = audit_rows(harness)[start:]
    assert {(row.actor, row.role) for row in rows} == {(f"bot:{OWNER}", "owner")}
    actions = {row.action for row in rows}
    assert {"account.stop", "worker.deactivate", "board.ban", "admin.set_role", "account.remove"} <= actions
    assert all(row.targets.strip() for row in rows), [r.action for r in rows if not r.targets.strip()]
