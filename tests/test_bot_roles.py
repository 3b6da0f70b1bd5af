"""Roles in the admin bot: the permission table covers every button, command and form the bot defines; every
button, command and form message, fed through `Dispatcher.feed_update` as each role and as a stranger, is refused
with one short line and changes nothing where the role lacks its capability, and is taken where it holds it; and
each role is sent only the buttons it may press."""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from sqlalchemy import select

from bot import callbacks as cb
from bot import permissions
from bot.app import build_dispatcher
from bot.i18n import LanguageStore
from bot.live import StatusWatcher
from bot.main import COMMANDS as ADVERTISED
from bot.permissions import CALLBACKS, COMMANDS, STATES, Effect, Variants, may_press
from bot.services import BotServices
from bot.texts import t
from common.roles import Capability, Role, can
from database.models import Base
from tests.support.bot_api import BOT_USER, callback_update, message_update, user
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import add_operations
from tests.support.fake_telegram import session_for
from tests.test_board_admin import attach_board, seed

OWNER, OPERATOR, VIEWER, MODERATOR, STRANGER = 111, 301, 302, 303, 999
TARGET_ADMIN = 555  # an admin the owner's buttons act on (never one of the test's own chats)
ROLES = {OWNER: Role.OWNER, OPERATOR: Role.OPERATOR, VIEWER: Role.VIEWER, MODERATOR: Role.MODERATOR}
NAMES = {OPERATOR: "Оля", VIEWER: "Витя", MODERATOR: "Маша"}
API_HASH = "0123456789abcdef0123456789abcdef"
WAIT = 30.0
REFUSED = t("ru", "role.refused")
STRANGER_REFUSED = t("ru", "refused")


# --- the table covers the bot


def defined_callbacks() -> list[type[CallbackData]]:
    return [
        value
        for value in vars(cb).values()
        if isinstance(value, type) and issubclass(value, CallbackData) and value is not CallbackData
    ]


def field_values(cls: type[CallbackData], name: str) -> set[Any]:
    annotation = typing.get_type_hints(cls)[name]
    if annotation is bool:
        return {True, False}
    assert isinstance(annotation, type) and issubclass(annotation, enum.Enum), (cls, name)
    return set(annotation)


def all_routers() -> list[Any]:
    """The routers of the dispatcher the bot runs (built without services: only its handlers are read)."""
    services = BotServices(fleet=None, accounts=None)  # type: ignore[arg-type]
    dispatcher = build_dispatcher(services, MemoryStorage(), frozenset(), LanguageStore(None), StatusWatcher(None))  # type: ignore[arg-type]
    found, queue = [], list(dispatcher.sub_routers)
    while queue:
        router = queue.pop()
        found.append(router)
        queue += router.sub_routers
    return found


def registered_filters() -> Iterator[Any]:
    for router in all_routers():
        for observer in (router.message, router.callback_query):
            for handler in observer.handlers:
                yield from (f.callback for f in handler.filters or [])


def test_every_callback_and_each_of_its_actions_is_in_the_table() -> None:
    defined = defined_callbacks()
    assert len(defined) > 20
    assert sorted(c.__name__ for c in defined) == sorted(c.__name__ for c in CALLBACKS)
    prefixes = [c.__prefix__ for c in defined]
    assert len(prefixes) == len(set(prefixes))
    handled = {f.callback_data for f in registered_filters() if isinstance(f, CallbackQueryFilter)}
    assert handled <= set(CALLBACKS) and len(handled) > 20  # what the routers take, the table names
    for cls in defined:
        entry = CALLBACKS[cls]
        hints = typing.get_type_hints(cls)
        action = hints.get("action")
        if isinstance(action, type) and issubclass(action, enum.Enum):
            assert isinstance(entry, Variants) and entry.field == "action", cls
        if isinstance(entry, Variants):
            assert set(entry.rules) == field_values(cls, entry.field), cls


def test_every_command_and_form_the_routers_register_is_in_the_table() -> None:
    commands: set[str] = set()
    groups: set[type[StatesGroup]] = set()
    for found in registered_filters():
        if isinstance(found, Command):
            commands |= {str(c) for c in found.commands}
        elif isinstance(found, State) and found.group is not None:
            groups.add(found.group)
    assert {"start", "cancel", "workers", "admins", "audit", "mute"} <= commands
    assert commands == set(COMMANDS)
    assert set(ADVERTISED) == set(COMMANDS)  # the command menu Telegram shows lists each of them
    assert groups == set(STATES)
    defined = {g for g in _subclasses(StatesGroup) if g.__module__.startswith("bot.")}
    assert defined == set(STATES)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found | {sub for child in found for sub in _subclasses(child)}


def test_what_the_table_says() -> None:
    stop = cb.AccountCard(id=7, action=cb.AccountAction.STOP).pack()
    assert may_press(Role.OPERATOR, stop) and may_press(Role.OWNER, stop)
    assert not may_press(Role.VIEWER, stop) and not may_press(Role.MODERATOR, stop) and not may_press(None, stop)
    export = cb.SessionExport(id=7, fmt=cb.ExportFormat.TDATA).pack()
    assert not may_press(Role.OPERATOR, export) and may_press(Role.OWNER, export)
    assert may_press(Role.VIEWER, "zz:unknown") and may_press(Role.VIEWER, "a:x:y")  # not ours: the fallback's
    check_all = cb.WorkerOps(worker_id=1, action=cb.WorkerOpAction.CHECK).pack()
    assert permissions.callback_rule(check_all) == permissions.Rule(Capability.OPERATE, Effect.ASKS)
    # What is done only after a question has that question beside it (the same button, asking).
    for entry in CALLBACKS.values():
        if isinstance(entry, Variants) and any(r.effect is Effect.CONFIRMED for r in entry.rules.values()):
            assert any(r.effect is Effect.ASKS for r in entry.rules.values()), entry
    assert permissions.message_rules("/workers", "AddAccount:phone")[1].capability is Capability.SECRETS
    assert [r.capability for r in permissions.message_rules("/cancel", "AddAccount:phone")] == [Capability.ANYONE]


# --- the bot, as each role


@dataclass
class World:
    worker_id: int
    other_worker_id: int
    account_id: int
    proxy_id: int
    report_id: str
    hidden_ad: str


def import_account(harness: BotHarness, worker: str, phone: str = "+79991234567") -> int:
    accounts = harness.services.accounts
    return accounts.import_session(
        worker, 12345, API_HASH, session_string=session_for(phone), phone=phone, actor="test"
    ).id


def add_admins(harness: BotHarness) -> None:
    assert harness.services.admins is not None
    for tg_id, role in ROLES.items():
        if tg_id != OWNER:
            harness.services.admins.add(tg_id, role, NAMES[tg_id], "test")
    harness.services.admins.add(TARGET_ADMIN, Role.VIEWER, "", "test")


def build_world(harness: BotHarness) -> World:
    fleet = harness.services.fleet
    fleet.add_worker("fra-1", "10.0.0.1", "test")
    fleet.add_worker("ams-1", "10.0.0.2", "test")
    account_id = import_account(harness, "fra-1")
    assert harness.services.proxies is not None
    [added] = harness.services.proxies.add(["socks5://10.0.0.5:1080"], "main", None, "test")
    board = attach_board(harness)
    data = seed(board)
    board.hide_ad(data.reports["flat"], "test")
    add_admins(harness)
    ids = (fleet.id_of("fra-1"), fleet.id_of("ams-1"), account_id, added.id)
    return World(*ids, data.reports["invite"], data.ads["flat"])


def sample_fields(world: World) -> dict[type[CallbackData], dict[str, Any]]:
    """Real rows for each button's ids (a new CallbackData fails here until it has a sample)."""
    account = world.account_id
    return {
        cb.Menu: {},
        cb.WorkersPage: {},
        cb.WorkerCard: {"id": world.worker_id},
        cb.AccountsPage: {"worker_id": world.worker_id},
        cb.AccountCard: {"id": account},
        cb.WorkerOps: {"worker_id": world.worker_id},
        cb.ProxiesPage: {},
        cb.ProxyCard: {"id": world.proxy_id},
        cb.SessionExport: {"id": account, "fmt": cb.ExportFormat.TELETHON_STRING},
        cb.ProfileEdit: {"id": account, "field": cb.ProfileField.BIO},
        cb.PluginToggle: {"id": account, "plugin": "#0"},
        cb.Form: {},
        cb.MoveTo: {"id": account, "worker_id": world.other_worker_id},
        cb.Language: {"code": "ru"},
        cb.WizardWorker: {"worker_id": world.worker_id},
        cb.WizardMethod: {"method": "import"},
        cb.BoardStatsView: {},
        cb.BoardQueue: {},
        cb.BoardHidden: {},
        cb.BoardUnhide: {"id": world.hidden_ad},
        cb.BoardReportAction: {"id": world.report_id},
        cb.AdminCard: {"tg_id": TARGET_ADMIN},
        cb.AdminRole: {"tg_id": TARGET_ADMIN, "role": Role.OPERATOR},
        cb.AuditPage: {},
    }


def every_callback(world: World) -> list[tuple[str, permissions.Rule]]:
    """Every button the bot defines, packed with real ids, with its rule; what changes most comes last."""
    samples = sample_fields(world)
    found: list[tuple[str, permissions.Rule]] = []
    for cls, entry in CALLBACKS.items():
        if isinstance(entry, Variants):
            found += [(cls(**samples[cls], **{entry.field: value}).pack(), rule) for value, rule in entry.rules.items()]
        else:
            found.append((cls(**samples[cls]).pack(), entry))
    order = {Effect.READS: 0, Effect.ASKS: 1, Effect.CHANGES: 2, Effect.CONFIRMED: 3}
    return sorted(found, key=lambda item: (order[item[1].effect], ":rm!" in item[0]))  # removals last


def snapshot(harness: BotHarness, chat_id: int) -> tuple[Any, ...]:
    """Everything a refused update could have changed: every table (audit log and fleet events included) and
    the chat's form."""
    with harness.services.fleet.sessions() as session:
        tables = tuple(
            (table.name, sorted(repr(tuple(row)) for row in session.execute(select(table)).all()))
            for table in Base.metadata.sorted_tables
        )
    return tables, form_of(harness, chat_id)


def form_of(harness: BotHarness, chat_id: int) -> tuple[Any, Any]:
    storage = harness.dispatcher.fsm.storage
    key = StorageKey(bot_id=BOT_USER["id"], chat_id=chat_id, user_id=chat_id)
    return harness._run(storage.get_state(key)), harness._run(storage.get_data(key))


def set_form(harness: BotHarness, chat_id: int, state: str, data: dict[str, Any]) -> None:
    storage = harness.dispatcher.fsm.storage
    key = StorageKey(bot_id=BOT_USER["id"], chat_id=chat_id, user_id=chat_id)
    harness._run(storage.set_state(key, state))
    harness._run(storage.set_data(key, data))


def press(harness: BotHarness, chat_id: int, data: str) -> str:
    """Press a button; the text the bot answers the press with (every press is answered, once)."""
    update = callback_update(user(chat_id), data, None)
    query_id = update["callback_query"]["id"]
    mark = len(harness.core.calls)
    harness.deliver(update)
    answer = harness.core.wait_for(
        lambda c: c.method == "answerCallbackQuery" and c.params.get("callback_query_id") == query_id, WAIT, after=mark
    )
    return str(answer.params.get("text", ""))


def say(harness: BotHarness, chat_id: int, text: str) -> str:
    """Send a message; the text of the bot's first message after it."""
    mark = len(harness.core.calls)
    harness.deliver(message_update(user(chat_id), text))
    reply = harness.core.wait_for(
        lambda c: c.method == "sendMessage" and str(c.params.get("chat_id")) == str(chat_id), WAIT, after=mark
    )
    return str(reply.params["text"])


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = add_operations(BotHarness(redis_url, sqlite_url, frozenset({OWNER})), redis_url)
    yield running
    running.close()


def test_every_button_as_every_role_is_refused_or_taken_by_the_table(harness: BotHarness) -> None:
    world = build_world(harness)
    buttons = every_callback(world)
    assert len(buttons) > 80
    # First what each one may not do: one short line each, nothing else sent, nothing changed anywhere.
    for chat_id in (STRANGER, MODERATOR, VIEWER, OPERATOR, OWNER):
        role = ROLES.get(chat_id)
        forbidden = [data for data, rule in buttons if not can(role, rule.capability)]
        assert forbidden or role is Role.OWNER
        before = snapshot(harness, chat_id)
        mark = len(harness.core.calls)
        for data in forbidden:
            assert press(harness, chat_id, data) == (STRANGER_REFUSED if role is None else REFUSED), data
        if role is not None:
            say(harness, chat_id, "/start")  # after every refusal (one chat's updates are taken in order)
        sent = [c for c in harness.core.calls[mark:] if c.method != "sendMessage"]
        assert [c.method for c in sent] == ["answerCallbackQuery"] * len(forbidden)
        assert snapshot(harness, chat_id) == before, chat_id
    assert "\n" not in REFUSED and len(REFUSED) < 60
    # Then what each may do is taken (the handler runs: it answers, and never with the refusal).
    for chat_id in (MODERATOR, VIEWER, OPERATOR, OWNER):
        allowed = [data for data, rule in buttons if can(ROLES[chat_id], rule.capability)]
        for data in allowed:
            assert press(harness, chat_id, data) != REFUSED, (chat_id, data)


FORM_DATA: dict[str, dict[str, Any]] = {
    "AddWorker:name": {},
    "AddAccount:phone": {"worker": "fra-1"},
    "PasswordForm:current": {"phone": "+7 *** ***-45-67"},
    "ProfileForm:value": {"field": "bio", "phone": "+7 *** ***-45-67"},
    "PluginForm:config": {"plugin": "nothing-by-this-name"},
    "AddAdmin:tg_id": {},
}


def test_every_command_and_form_message_as_every_role(harness: BotHarness) -> None:
    world = build_world(harness)
    assert {name.split(":")[0] for name in FORM_DATA} == {group.__name__ for group in STATES}
    for chat_id, role in ROLES.items():
        for command, rule in COMMANDS.items():
            before = snapshot(harness, chat_id) if not rule.changes else None
            reply = say(harness, chat_id, f"/{command}")
            assert (reply == REFUSED) is not can(role, rule.capability), (role, command, reply)
            if reply == REFUSED:
                assert snapshot(harness, chat_id) == before
        for state, data in FORM_DATA.items():
            group = next(g for g in STATES if g.__name__ == state.split(":")[0])
            set_form(harness, chat_id, state, {"account_id": world.account_id, **data})
            before = snapshot(harness, chat_id)
            reply = say(harness, chat_id, "42")
            allowed = can(role, STATES[group].capability)
            assert (reply == REFUSED) is not allowed, (role, state, reply)
            if not allowed:
                assert snapshot(harness, chat_id) == before  # the form, its data, every table: as they were
            set_form(harness, chat_id, "", {})
    assert say(harness, STRANGER, "/start") == STRANGER_REFUSED


# --- what each role is shown


def seen_buttons(harness: BotHarness, chat_id: int) -> dict[str, str]:
    """Every button the bot sent this chat: its callback data -> its label."""
    found: dict[str, str] = {}
    for call in harness.core.calls_to(chat_id):
        for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", []):
            found.update({b["callback_data"]: b["text"] for b in row if "callback_data" in b})
    return found


def tour(harness: BotHarness, chat_id: int, world: World) -> None:
    """Open the screens each role has: the menu, a worker, its accounts, an account and its plugins, the proxies,
    the board's queue, the admins and the audit log (a screen the role may not open is simply refused)."""
    say(harness, chat_id, "/start")
    for data in (
        cb.WorkerCard(id=world.worker_id).pack(),
        cb.AccountsPage(worker_id=world.worker_id).pack(),
        cb.AccountCard(id=world.account_id).pack(),
        cb.AccountCard(id=world.account_id, action=cb.AccountAction.PLUGINS).pack(),
        cb.ProxyCard(id=world.proxy_id).pack(),
        cb.Menu(action=cb.MenuAction.PROXIES).pack(),
        cb.BoardQueue().pack(),
        cb.BoardHidden().pack(),
        cb.Menu(action=cb.MenuAction.ADMINS).pack(),
        cb.AdminCard(tg_id=TARGET_ADMIN).pack(),
        cb.Menu(action=cb.MenuAction.AUDIT).pack(),
        cb.Menu(action=cb.MenuAction.MAIN).pack(),
    ):
        press(harness, chat_id, data)


def test_each_role_is_shown_only_the_buttons_it_may_press(harness: BotHarness) -> None:
    world = build_world(harness)
    labels: dict[Role, set[str]] = {}
    menus: dict[Role, list[str]] = {}
    for chat_id, role in ROLES.items():
        tour(harness, chat_id, world)
        seen = seen_buttons(harness, chat_id)
        assert seen and [data for data in seen if not may_press(role, data)] == [], role
        labels[role] = set(seen.values())
        last = [c for c in harness.core.calls_to(chat_id) if c.params.get("reply_markup")][-1]  # the main menu
        menus[role] = [b["text"] for row in last.params["reply_markup"]["inline_keyboard"] for b in row]
    assert menus[Role.MODERATOR] == ["📋 Доска", "🌐 Язык / Language"]
    assert menus[Role.VIEWER] == ["🖥 Воркеры", "📱 Аккаунты", "🔌 Прокси", "📊 Сводка", "🌐 Язык / Language"]
    assert menus[Role.OPERATOR] == menus[Role.VIEWER]  # adding accounts (secrets), the admins, the log: owners'
    assert {"👥 Админы", "📜 Журнал", "➕ Добавить аккаунт", "📋 Доска"} <= set(menus[Role.OWNER])
    card_actions = {"▶️ Запустить", "⏹ Остановить", "🗑 Удалить", "🔀 Перенести", "⏸ Отключить"}
    assert not labels[Role.VIEWER] & card_actions  # a viewer sees the card, with none of its switches
    assert {"🔄 Обновить", "⬅️ Назад"} <= labels[Role.VIEWER]
    assert labels[Role.OPERATOR] & card_actions and "📤 Выгрузить" not in labels[Role.OPERATOR]
    assert "📤 Выгрузить" in labels[Role.OWNER] and "🔐 Пароль" not in labels[Role.OPERATOR]
    assert "🩺 Проверить все" in labels[Role.OPERATOR] and "🩺 Проверить все" not in labels[Role.VIEWER]
    assert not any("Забанить" in label for label in labels[Role.VIEWER] | labels[Role.OPERATOR])
    assert any("Забанить" in label for label in labels[Role.MODERATOR])
