"""Who may press what: ONE table naming, for every button (each `CallbackData` of `bot.callbacks`, and each value
of its action), every command and every form (`StatesGroup`: messages while in it), the capability it needs
(`common.roles.Capability`) and what it does: reads, asks first (a confirmation naming what it affects),
changes after such a question, or changes at once (a single reversible action).

The gate (`bot.middlewares.AccessMiddleware`) refuses what a role lacks; the keyboards an admin is sent are
filtered by the same table (`bot.keyboards`), so nobody sees a button they may not press. `tests/test_bot_roles.py`
fails when a callback, an action, a command or a form is missing here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import StatesGroup
from aiogram.types import InlineKeyboardMarkup

from bot import callbacks as cb
from bot.forms import PasswordForm, PluginForm, ProfileForm
from bot.handlers.add_account import AddAccount
from bot.handlers.admins import AddAdmin
from bot.handlers.workers import AddWorker
from common.roles import Capability, Role, can


class Effect(enum.StrEnum):
    READS = "reads"  # shows something; changes nothing
    ASKS = "asks"  # asks to confirm, naming what it affects; changes nothing yet
    CONFIRMED = "confirmed"  # changes state, reached only through such a question
    CHANGES = "changes"  # changes state at once (a single, reversible action)


@dataclass(frozen=True)
class Rule:
    capability: Capability
    effect: Effect = Effect.READS

    @property
    def changes(self) -> bool:
        return self.effect in (Effect.CONFIRMED, Effect.CHANGES)


@dataclass(frozen=True)
class Variants:
    """A callback whose rule depends on one of its fields (its action, or a flag)."""

    field: str
    rules: Mapping[Any, Rule]


ANYONE, VIEW, OPERATE, SECRETS, MODERATE = (
    Capability.ANYONE,
    Capability.VIEW_FLEET,
    Capability.OPERATE,
    Capability.SECRETS,
    Capability.MODERATE,
)
READS, ASKS, CONFIRMED, CHANGES = Effect.READS, Effect.ASKS, Effect.CONFIRMED, Effect.CHANGES

CALLBACKS: dict[type[CallbackData], Rule | Variants] = {
    cb.Menu: Variants(
        "action",
        {
            cb.MenuAction.MAIN: Rule(ANYONE),
            cb.MenuAction.WORKERS: Rule(VIEW),
            cb.MenuAction.ACCOUNTS: Rule(VIEW),
            cb.MenuAction.ADD_ACCOUNT: Rule(SECRETS),  # the login/import wizard
            cb.MenuAction.SUMMARY: Rule(VIEW),
            cb.MenuAction.LANGUAGE: Rule(ANYONE),
            cb.MenuAction.ADD_WORKER: Rule(OPERATE),  # the form adding a worker
            cb.MenuAction.BOARD: Rule(MODERATE),
            cb.MenuAction.PROXIES: Rule(VIEW),
            cb.MenuAction.ADMINS: Rule(SECRETS),
            cb.MenuAction.ADD_ADMIN: Rule(SECRETS),
            cb.MenuAction.AUDIT: Rule(SECRETS),
        },
    ),
    cb.WorkersPage: Rule(VIEW),
    cb.WorkerCard: Variants(
        "action",
        {
            cb.WorkerAction.CARD: Rule(VIEW),
            cb.WorkerAction.ACCOUNTS: Rule(VIEW),
            cb.WorkerAction.ACTIVATE: Rule(OPERATE, CHANGES),
            cb.WorkerAction.DEACTIVATE: Rule(OPERATE, CHANGES),
            cb.WorkerAction.REMOVE: Rule(OPERATE, ASKS),
            cb.WorkerAction.REMOVE_CONFIRMED: Rule(OPERATE, CONFIRMED),
            cb.WorkerAction.LOGIN: Rule(SECRETS, ASKS),  # a Redis password, shown once
            cb.WorkerAction.LOGIN_CONFIRMED: Rule(SECRETS, CONFIRMED),
        },
    ),
    cb.AccountsPage: Rule(VIEW),
    cb.AccountCard: Variants(
        "action",
        {
            cb.AccountAction.CARD: Rule(VIEW),
            cb.AccountAction.START: Rule(OPERATE, CHANGES),
            cb.AccountAction.STOP: Rule(OPERATE, CHANGES),
            cb.AccountAction.RESTART: Rule(OPERATE, CHANGES),
            cb.AccountAction.MOVE: Rule(OPERATE),  # the picker; `MoveTo` moves
            cb.AccountAction.REMOVE: Rule(OPERATE, ASKS),
            cb.AccountAction.REMOVE_CONFIRMED: Rule(OPERATE, CONFIRMED),
            cb.AccountAction.START_WHEN_BACK: Rule(OPERATE, CHANGES),
            cb.AccountAction.CHECK: Rule(OPERATE, CHANGES),  # an operation on the account
            cb.AccountAction.SESSIONS: Rule(OPERATE, CHANGES),
            cb.AccountAction.END_SESSIONS: Rule(OPERATE, ASKS),
            cb.AccountAction.END_SESSIONS_CONFIRMED: Rule(OPERATE, CONFIRMED),
            cb.AccountAction.TWO_FA: Rule(SECRETS, CHANGES),
            cb.AccountAction.PASSWORD: Rule(SECRETS),  # the password form
            cb.AccountAction.PROFILE: Rule(OPERATE),  # which field (then `ProfileEdit`)
            cb.AccountAction.PLUGINS: Rule(VIEW),  # the list; `PluginToggle` changes
            cb.AccountAction.EXPORT: Rule(SECRETS),  # the format picker
        },
    ),
    cb.WorkerOps: Variants(
        "action",
        {
            cb.WorkerOpAction.CHECK: Rule(OPERATE, ASKS),
            cb.WorkerOpAction.CHECK_CONFIRMED: Rule(OPERATE, CONFIRMED),
            cb.WorkerOpAction.END_SESSIONS: Rule(OPERATE, ASKS),
            cb.WorkerOpAction.END_SESSIONS_CONFIRMED: Rule(OPERATE, CONFIRMED),
        },
    ),
    cb.ProxiesPage: Variants("check", {False: Rule(VIEW), True: Rule(OPERATE, CHANGES)}),  # check: every proxy, now
    cb.ProxyCard: Variants(
        "action",
        {
            cb.ProxyAction.CARD: Rule(VIEW),
            cb.ProxyAction.CHECK: Rule(OPERATE, CHANGES),
            cb.ProxyAction.REMOVE: Rule(OPERATE, ASKS),
            cb.ProxyAction.REMOVE_CONFIRMED: Rule(OPERATE, CONFIRMED),
            cb.ProxyAction.REASSIGN: Rule(OPERATE, ASKS),
            cb.ProxyAction.REASSIGN_CONFIRMED: Rule(OPERATE, CONFIRMED),
        },
    ),
    cb.SessionExport: Variants("confirmed", {False: Rule(SECRETS, ASKS), True: Rule(SECRETS, CONFIRMED)}),
    cb.ProfileEdit: Rule(OPERATE),  # the field's form
    cb.PluginToggle: Rule(OPERATE, CHANGES),  # disables at once; enabling asks for the configuration
    cb.Form: Variants(
        "action",
        {
            cb.FormAction.NO_PASSWORD: Rule(SECRETS),
            cb.FormAction.DEFAULT_CONFIG: Rule(OPERATE, CHANGES),
            cb.FormAction.NO_NAME: Rule(SECRETS, CHANGES),
            cb.FormAction.CANCEL: Rule(ANYONE),  # leaves one's own form
        },
    ),
    cb.MoveTo: Rule(OPERATE, CHANGES),
    cb.Language: Rule(ANYONE, CHANGES),  # one's own language
    cb.WizardWorker: Rule(SECRETS),
    cb.WizardMethod: Rule(SECRETS),
    cb.BoardStatsView: Variants("action", {cb.BoardAction.TODAY: Rule(MODERATE), cb.BoardAction.WEEK: Rule(MODERATE)}),
    cb.BoardQueue: Rule(MODERATE),
    cb.BoardHidden: Rule(MODERATE),
    cb.BoardUnhide: Rule(MODERATE, CHANGES),
    cb.BoardReportAction: Variants(
        "action",
        {
            cb.ReportAction.BAN: Rule(MODERATE, ASKS),
            cb.ReportAction.BAN_CONFIRMED: Rule(MODERATE, CONFIRMED),
            cb.ReportAction.DISMISS: Rule(MODERATE, CHANGES),
            cb.ReportAction.HIDE: Rule(MODERATE, CHANGES),  # undone by Unhide
            cb.ReportAction.BAN_REPORTER: Rule(MODERATE, ASKS),
            cb.ReportAction.BAN_REPORTER_CONFIRMED: Rule(MODERATE, CONFIRMED),
            cb.ReportAction.DISMISS_REPORTER: Rule(MODERATE, ASKS),
            cb.ReportAction.DISMISS_REPORTER_CONFIRMED: Rule(MODERATE, CONFIRMED),
            cb.ReportAction.RESTORE: Rule(MODERATE, ASKS),
            cb.ReportAction.RESTORE_CONFIRMED: Rule(MODERATE, CONFIRMED),
        },
    ),
    cb.AdminCard: Variants(
        "action",
        {
            cb.AdminAction.CARD: Rule(SECRETS),
            cb.AdminAction.REMOVE: Rule(SECRETS, ASKS),
            cb.AdminAction.REMOVE_CONFIRMED: Rule(SECRETS, CONFIRMED),
        },
    ),
    cb.AdminRole: Rule(SECRETS, CHANGES),  # or, in the add form, the new admin's role
    cb.AuditPage: Rule(SECRETS),
}

COMMANDS: dict[str, Rule] = {
    "start": Rule(ANYONE),
    "cancel": Rule(ANYONE),  # leaves one's own form
    "language": Rule(ANYONE),
    "mute": Rule(ANYONE, CHANGES),  # one's own alerts
    "workers": Rule(VIEW),
    "accounts": Rule(VIEW),
    "summary": Rule(VIEW),
    "proxies": Rule(VIEW),
    "add": Rule(SECRETS),  # the add-account wizard
    "board": Rule(MODERATE),
    "admins": Rule(SECRETS),
    "audit": Rule(SECRETS),
}

# What a message typed while in a form does (the form's own buttons are callbacks above).
STATES: dict[type[StatesGroup], Rule] = {
    AddWorker: Rule(OPERATE, CHANGES),
    AddAccount: Rule(SECRETS, CHANGES),
    PasswordForm: Rule(SECRETS, CHANGES),
    ProfileForm: Rule(OPERATE, CHANGES),
    PluginForm: Rule(OPERATE, CHANGES),
    AddAdmin: Rule(SECRETS, CHANGES),
}

_BY_PREFIX: dict[str, type[CallbackData]] = {cls.__prefix__: cls for cls in CALLBACKS}


def parse_callback(data: str) -> CallbackData | None:
    """The button `data` decodes to, or None for anything this bot never sent (the fallback answers it)."""
    cls = _BY_PREFIX.get(data.split(":", 1)[0])
    if cls is None:
        return None
    try:
        return cls.unpack(data)
    except (ValueError, TypeError):
        return None


def callback_rule(data: str) -> Rule | None:
    decoded = parse_callback(data)
    if decoded is None:
        return None
    entry = CALLBACKS[type(decoded)]
    if isinstance(entry, Rule):
        return entry
    return entry.rules[getattr(decoded, entry.field)]


def command_of(text: str | None) -> str | None:
    """The command a message starts with ("/start@bot x" -> "start"), or None."""
    if not text or not text.startswith("/"):
        return None
    return text.split(maxsplit=1)[0][1:].split("@", 1)[0]


def state_rule(raw_state: str | None) -> Rule | None:
    if not raw_state:
        return None
    for group, rule in STATES.items():
        if raw_state in group.__all_states_names__:
            return rule
    return None


def message_rules(text: str | None, raw_state: str | None) -> list[Rule]:
    """What a message needs: its command's capability; in a form, the form's too (but for the commands anyone
    may give, which leave or ignore the form: /start, /cancel, …)."""
    command = command_of(text)
    command_rule = COMMANDS.get(command) if command is not None else None
    if command_rule is not None and command_rule.capability is Capability.ANYONE:
        return [command_rule]
    rules = [command_rule] if command_rule is not None else []
    in_form = state_rule(raw_state)
    return rules + ([in_form] if in_form is not None else [])


def may_press(role: Role | None, data: str) -> bool:
    """Whether `role` may press a button carrying `data` (one this bot does not know is left to the fallback)."""
    rule = callback_rule(data)
    return rule is None or can(role, rule.capability)


def allowed_markup(markup: InlineKeyboardMarkup, role: Role | None) -> InlineKeyboardMarkup:
    """`markup` without the buttons `role` may not press; rows left empty go (link buttons stay)."""
    rows = [
        [button for button in row if button.callback_data is None or may_press(role, button.callback_data)]
        for row in markup.inline_keyboard
    ]
    return InlineKeyboardMarkup(inline_keyboard=[row for row in rows if row])
