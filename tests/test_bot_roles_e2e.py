"""Roles in the admin bot end to end, through `Dispatcher.feed_update` over real Redis and databases: an owner
manages admins from the bot (add, change the role, remove — refused to an operator), reads the audit log (paged,
filtered by actor and target), alerts reach those who can act on them unless they muted them, and one flow per
role leaves the audit row it should (actor `bot:<id>`, the role, the admin's name, the action, the target)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.audit_service import AuditView
from bot.callbacks import AccountAction, AccountCard, AdminAction, AdminCard, Menu, MenuAction
from celery_app import keys
from common.details import detail
from common.roles import Role
from database.board_models import ReportTarget
from database.events import NewEvent, record_events
from database.models import Account
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import SimulatedWorker, add_operations
from tests.support.stack import wait_until
from tests.test_board_admin import attach_board, seed
from tests.test_bot_roles import (
    MODERATOR,
    NAMES,
    OPERATOR,
    OWNER,
    REFUSED,
    STRANGER_REFUSED,
    VIEWER,
    add_admins,
    import_account,
    press,
    say,
)

WAIT = 30.0
OPERATOR_2 = 304


def make_harness(redis_url: str, database_url: str) -> BotHarness:
    return add_operations(BotHarness(redis_url, database_url, frozenset({OWNER})), redis_url)


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = make_harness(redis_url, sqlite_url)
    yield running
    running.close()


def audit(harness: BotHarness, **filters: str) -> list[AuditView]:
    assert harness.services.audit is not None
    return harness.services.audit.entries(**filters)  # type: ignore[arg-type]


def test_an_owner_manages_admins_from_the_bot(harness: BotHarness) -> None:
    owner, operator = harness.chat(OWNER), harness.chat(OPERATOR)
    assert operator.send("/start").params["text"] == STRANGER_REFUSED  # not an admin yet
    owner.send("/admins")
    assert "👑 Владелец · <code>111</code> — из ADMIN_IDS, меняется только там" in owner.text()
    assert [b for b in owner.buttons() if "111" in b] == []  # an owner by ADMIN_IDS has no card to change
    owner.click("Добавить админа")
    assert "Telegram ID нового админа" in owner.text()
    assert "Это не Telegram ID" in owner.send("Оля").params["text"]
    owner.send(str(OPERATOR))
    assert f"Какую роль дать <code>{OPERATOR}</code>?" in owner.text()
    owner.click("Оператор")
    owner.send("Оля")
    assert "✅ Админ добавлен." in owner.text() and "Роль: Оператор" in owner.text()
    [added] = audit(harness, target=f"admin:{OPERATOR}")
    assert (added.action, added.actor, added.role, added.outcome) == ("admin.add", f"bot:{OWNER}", "owner", "ok")
    assert added.params == {"role": "operator", "name": "Оля"} and added.actor_name == "@user111"

    # The new operator is let in at once (the bot read the table again), and only so far.
    assert "Воркер" in operator.send("/workers").params["text"]
    assert operator.send("/admins").params["text"] == REFUSED
    assert press(harness, OPERATOR, Menu(action=MenuAction.ADMINS).pack()) == REFUSED
    assert press(harness, OPERATOR, AdminCard(tg_id=OPERATOR, action=AdminAction.REMOVE_CONFIRMED).pack()) == REFUSED
    assert harness.services.admins is not None and harness.services.admins.role_of(OPERATOR) is Role.OPERATOR

    owner.click("Наблюдатель")
    assert "✅ Новая роль: Наблюдатель." in owner.text()
    assert operator.send("/workers").params["text"] != REFUSED  # a viewer reads
    card = AccountCard(id=1, action=AccountAction.STOP).pack()
    assert press(harness, OPERATOR, card) == REFUSED  # and changes nothing

    owner.click("Удалить из админов")
    assert f"Удалить админа <b>Оля</b> (<code>{OPERATOR}</code>, Наблюдатель)?" in owner.text()
    owner.click("Да, удалить")
    assert "🗑 Админ Оля удалён." in owner.text() and str(OPERATOR) not in owner.text()
    assert operator.send("/start").params["text"] == STRANGER_REFUSED
    assert [row.action for row in audit(harness, target=f"admin:{OPERATOR}")] == [
        "admin.remove",
        "admin.set_role",
        "admin.add",
    ]
    # An owner by ADMIN_IDS is changed only there: the service refuses, the bot says why.
    assert "ADMIN_IDS" in press(harness, OWNER, AdminCard(tg_id=OWNER, action=AdminAction.REMOVE_CONFIRMED).pack())


def test_an_admin_removed_elsewhere_is_a_stranger_within_the_refresh(harness: BotHarness) -> None:
    add_admins(harness)
    viewer = harness.chat(VIEWER)
    assert "Управление флотом" in viewer.send("/start").params["text"]
    assert harness.services.admins is not None
    harness.services.admins.remove(VIEWER, "cli:ops")  # by the CLI: the bot learns it on its next read
    wait_until(lambda: say(harness, VIEWER, "/start") == STRANGER_REFUSED, WAIT, interval=0.5, message="refused")


def test_the_audit_log_is_paged_newest_first_and_filtered(harness: BotHarness) -> None:
    add_admins(harness)
    assert harness.services.admins is not None
    for number in range(12):
        harness.services.admins.add(400 + number, Role.VIEWER, f"temp {number}", "cli:ops")
    say(harness, OWNER, "/mute 2h")
    owner = harness.chat(OWNER)
    owner.send("/audit")
    text = owner.text()
    assert "📜 <b>Журнал действий</b>" in text
    assert text.index("alerts.mute") < text.index("admin:411") < text.index("admin:410")  # newest first
    assert f"bot:{OWNER} (@user111) · Владелец" in text and "cli:ops · командная строка" in text
    assert "admin:401" not in text  # the page holds ten
    owner.click("Раньше")
    assert "admin:401" in owner.text() and "admin:411" not in owner.text()
    owner.send("/audit admin:405")
    assert "Цель: <code>admin:405</code>" in owner.text() and "admin:406" not in owner.text()
    owner.send(f"/audit actor bot:{OWNER}")
    assert "alerts.mute" in owner.text() and "admin.add" not in owner.text()
    owner.click("Без фильтра")
    owner.click("🎯 admin:411")  # a row's target as a filter
    assert "Цель: <code>admin:411</code>" in owner.text() and "admin:410" not in owner.text()
    owner.click("👤 cli:ops")
    assert "Кто: <code>cli:ops</code>" in owner.text() and "alerts.mute" not in owner.text()
    assert say(harness, VIEWER, "/audit") == REFUSED
    assert say(harness, OPERATOR, "/audit") == REFUSED


def alerted(harness: BotHarness, mark: int, needle: str) -> set[int]:
    return {
        int(c.params["chat_id"])
        for c in harness.core.calls[mark:]
        if c.method == "sendMessage" and needle in str(c.params.get("text", ""))
    }


def worker_drops(harness: BotHarness, name: str) -> None:
    with harness.services.fleet.sessions.begin() as session:
        record_events(session, [NewEvent("worker.offline", name, detail("no_heartbeat", seconds=70.0))])


def test_fleet_alerts_reach_who_can_act_unless_muted(harness: BotHarness) -> None:
    add_admins(harness)
    assert harness.services.admins is not None
    harness.services.admins.add(OPERATOR_2, Role.OPERATOR, "", "test")
    assert harness.poll_alerts() == 0  # the first poll only finds where the log ends
    mark = len(harness.core.calls)
    worker_drops(harness, "fra-1")
    assert harness.poll_alerts() == 1
    assert alerted(harness, mark, "fra-1") == {OWNER, OPERATOR, OPERATOR_2}  # not the viewer, nor the moderator

    assert "🔔 Оповещения включены" in say(harness, OPERATOR, "/mute")
    assert "🔕 Оповещения выключены до" in say(harness, OPERATOR, "/mute 2h")
    assert 7100 <= harness._run(harness.redis.ttl(f"{keys.PREFIX}:bot:mute:{OPERATOR}")) <= 7200
    assert "🔕 Оповещения выключены до" in say(harness, OPERATOR, "/mute")
    assert "Не понял срок" in say(harness, OPERATOR_2, "/mute soon")
    mark = len(harness.core.calls)
    worker_drops(harness, "ams-1")
    assert harness.poll_alerts() == 1
    assert alerted(harness, mark, "ams-1") == {OWNER, OPERATOR_2}  # only the one who muted is spared

    assert say(harness, OPERATOR, "/mute off") == "🔔 Оповещения снова включены."
    mark = len(harness.core.calls)
    worker_drops(harness, "waw-1")
    assert harness.poll_alerts() == 1
    assert alerted(harness, mark, "waw-1") == {OWNER, OPERATOR, OPERATOR_2}
    rows = audit(harness, target=f"admin:{OPERATOR}", action="alerts.")
    assert [(r.action, r.role, r.params) for r in rows] == [
        ("alerts.unmute", "operator", {}),
        ("alerts.mute", "operator", {"for": "2h"}),
    ]


def test_board_reports_reach_its_moderators_unless_muted(harness: BotHarness) -> None:
    add_admins(harness)
    data = seed(attach_board(harness))
    assert harness._run(harness.notifier.poll_board()) == 0  # the first poll only finds the newest report
    users = data.users
    data.service.report(users["erin"], ReportTarget.AD, data.ads["bike"], "spam")
    data.service.report(users["carol"], ReportTarget.AD, data.ads["flat"], "scam")
    mark = len(harness.core.calls)
    assert harness._run(harness.notifier.poll_board()) == 1
    assert alerted(harness, mark, "🚩 На доске 2 новые жалобы") == {OWNER, MODERATOR}  # not the fleet's people
    assert harness._run(harness.notifier.poll_board()) == 0  # said once

    say(harness, MODERATOR, "/mute 1d")
    data.service.report(users["bob"], ReportTarget.AD, data.ads["bike"], "fake")
    mark = len(harness.core.calls)
    assert harness._run(harness.notifier.poll_board()) == 1
    assert alerted(harness, mark, "🚩 На доске 1 новая жалоба") == {OWNER}


@pytest.fixture
def both_databases(redis_url: str, database_url: str) -> Iterator[BotHarness]:
    running = make_harness(redis_url, database_url)
    yield running
    running.close()


def test_one_flow_per_role_and_the_audit_row_it_leaves(both_databases: BotHarness) -> None:
    harness = both_databases
    add_admins(harness)
    accounts = harness.services.accounts
    worker = SimulatedWorker(accounts.redis, accounts.sessions, "fra-1")
    try:
        harness.services.fleet.add_worker("fra-1", "10.0.0.1", "test")
        account_id = import_account(harness, "fra-1")
        with accounts.sessions.begin() as session:
            account = session.get(Account, account_id)
            assert account is not None
            account.desired_state = "running"
        worker.running.add(account_id)
        worker.beat_now()

        # The viewer opens the card: no switches on it, and a forged Stop is refused, leaving no trace.
        viewer = harness.chat(VIEWER)
        viewer.send("/accounts")
        viewer.click("+7 *** ***-45-67")
        assert "🟢 работает" in viewer.text() and "⏹ Остановить" not in viewer.buttons()
        assert press(harness, VIEWER, AccountCard(id=account_id, action=AccountAction.STOP).pack()) == REFUSED
        assert audit(harness, target=f"account:{account_id}", action="account.stop") == []

        # The operator stops it from the card they opened while it ran (its worker has gone quiet since).
        operator = harness.chat(OPERATOR)
        operator.send("/accounts")
        operator.click("+7 *** ***-45-67")
        assert "⏹ Остановить" in operator.buttons() and "📤 Выгрузить" not in operator.buttons()
    finally:
        worker.stop()
    wait_until(lambda: not accounts._worker_online("fra-1"), WAIT, message="the worker is silent")
    operator.click("Остановить")  # the card says "stopping…" at once; the service is called after

    def desired() -> str:
        with accounts.sessions() as session:
            row = session.get(Account, account_id)
            assert row is not None
            return row.desired_state

    wait_until(lambda: desired() == "stopped", WAIT, message="the account is marked to stop")
    wait_until(lambda: audit(harness, action="account.stop"), WAIT, message="its audit row")
    [stop] = audit(harness, target=f"account:{account_id}", action="account.stop")
    assert (stop.actor, stop.role, stop.actor_name, stop.outcome) == (f"bot:{OPERATOR}", "operator", "Оля", "ok")

    # The moderator settles a board report (and nothing of the fleet is theirs).
    data = seed(attach_board(harness))
    moderator = harness.chat(MODERATOR)
    assert say(harness, MODERATOR, "/workers") == REFUSED
    moderator.send("/board")
    assert moderator.buttons()[-1] == "🏠 Меню"
    moderator.click("Жалобы")
    moderator.click("Отклонить жалобу")
    assert "✅ Жалоба отклонена." in moderator.text()
    dismissed = audit(harness, action="board.dismiss")
    assert [(r.actor, r.role, r.actor_name) for r in dismissed] == [(f"bot:{MODERATOR}", "moderator", NAMES[MODERATOR])]
    assert dismissed[0].targets[0].startswith("report:") and dismissed[0].targets[0] in {
        f"report:{report}" for report in data.reports.values()
    }

    # The owner's flow (adding an admin) is `test_an_owner_manages_admins_from_the_bot`; here, the owner reads it all.
    owner = harness.chat(OWNER)
    owner.send(f"/audit account:{account_id}")
    assert "account.stop" in owner.text() and f"bot:{OPERATOR} (Оля) · Оператор" in owner.text()
