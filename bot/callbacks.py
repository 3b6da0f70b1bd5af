"""Callback data of every button: short prefixes, Enum actions, ids (never names: the limit is 64 bytes)."""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData

from common.roles import Role


class MenuAction(enum.StrEnum):
    MAIN = "main"
    WORKERS = "workers"
    ACCOUNTS = "accounts"
    ADD_ACCOUNT = "add"
    SUMMARY = "summary"
    LANGUAGE = "lang"
    ADD_WORKER = "addw"
    BOARD = "board"
    PROXIES = "proxies"
    ADMINS = "admins"  # owners: the admins and their roles
    ADD_ADMIN = "adda"  # owners: the form adding one
    AUDIT = "audit"  # owners: the audit log


class WorkerAction(enum.StrEnum):
    CARD = "c"
    ACCOUNTS = "a"
    ACTIVATE = "on"
    DEACTIVATE = "off"
    REMOVE = "rm"
    REMOVE_CONFIRMED = "rm!"
    LOGIN = "lg"  # its own Redis login: asks first
    LOGIN_CONFIRMED = "lg!"  # issued, shown once


class AccountAction(enum.StrEnum):
    CARD = "c"
    START = "s"
    STOP = "x"
    RESTART = "r"
    MOVE = "mv"
    REMOVE = "rm"
    REMOVE_CONFIRMED = "rm!"
    START_WHEN_BACK = "wb"
    CHECK = "ck"  # the operations on the card
    SESSIONS = "ss"
    END_SESSIONS = "es"  # asks to confirm
    END_SESSIONS_CONFIRMED = "es!"
    TWO_FA = "2f"  # whether a cloud password is set
    PASSWORD = "pw"  # noqa: S105 - an action's name: set or change the cloud password (a form)
    PROFILE = "pf"  # which field to change
    PLUGINS = "pl"  # the plugins for this account
    EXPORT = "ex"  # write its session out: pick a format (`SessionExport`)


class WorkerOpAction(enum.StrEnum):
    CHECK = "ck"  # asks to confirm, naming how many accounts
    CHECK_CONFIRMED = "ck!"
    END_SESSIONS = "es"  # asks to confirm
    END_SESSIONS_CONFIRMED = "es!"


class ProxyAction(enum.StrEnum):
    CARD = "c"
    CHECK = "ck"
    REMOVE = "rm"  # asks to confirm
    REMOVE_CONFIRMED = "rm!"  # refused by the service while accounts use it
    REASSIGN = "mv"  # asks to confirm removing it and moving its accounts
    REASSIGN_CONFIRMED = "mv!"


class ProfileField(enum.StrEnum):
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    BIO = "bio"
    USERNAME = "username"
    PHOTO = "photo"


class ExportFormat(enum.StrEnum):
    """The session formats the bot sends (`common.session_formats.SessionFormat`, short for the 64 bytes)."""

    TELETHON_STRING = "ts"
    TELETHON_FILE = "tf"
    PYROGRAM_STRING = "ps"
    PYROGRAM_FILE = "pf"
    TDATA = "td"


class FormAction(enum.StrEnum):
    NO_PASSWORD = "np"  # noqa: S105 - an action's name: the account has no cloud password yet
    DEFAULT_CONFIG = "dc"  # enable a plugin with the configuration {}
    NO_NAME = "nn"  # add an admin without a name
    CANCEL = "x"


class AdminAction(enum.StrEnum):
    CARD = "c"
    REMOVE = "rm"  # asks to confirm
    REMOVE_CONFIRMED = "rm!"


class BoardAction(enum.StrEnum):
    TODAY = "d"
    WEEK = "w"


class ReportAction(enum.StrEnum):
    BAN = "ban"
    BAN_CONFIRMED = "ban!"
    DISMISS = "ok"
    HIDE = "hide"
    # On the reporter: ban them, dismiss everything they filed, give back every ad their reports hid.
    BAN_REPORTER = "rban"
    BAN_REPORTER_CONFIRMED = "rban!"
    DISMISS_REPORTER = "rok"
    DISMISS_REPORTER_CONFIRMED = "rok!"
    RESTORE = "rres"
    RESTORE_CONFIRMED = "rres!"


class Menu(CallbackData, prefix="m"):
    action: MenuAction


class WorkersPage(CallbackData, prefix="wp"):
    page: int = 0


class WorkerCard(CallbackData, prefix="w"):
    id: int
    action: WorkerAction = WorkerAction.CARD


class AccountsPage(CallbackData, prefix="ap"):
    worker_id: int = 0  # 0: all workers
    page: int = 0


class AccountCard(CallbackData, prefix="a"):
    id: int
    action: AccountAction = AccountAction.CARD


class ProxiesPage(CallbackData, prefix="pp"):
    """The pool's list; `check` asks a worker to check every proxy first."""

    page: int = 0
    check: bool = False


class ProxyCard(CallbackData, prefix="px"):
    """One proxy of the pool; `page` is the list's page to go back to."""

    id: int
    action: ProxyAction = ProxyAction.CARD
    page: int = 0


class SessionExport(CallbackData, prefix="sx"):
    """Export an account's session in a format: asks first (`confirmed` False), then sends it."""

    id: int
    fmt: ExportFormat
    confirmed: bool = False


class WorkerOps(CallbackData, prefix="wo"):
    """An operation on every account of a worker (from its accounts page)."""

    worker_id: int
    action: WorkerOpAction


class ProfileEdit(CallbackData, prefix="pe"):
    id: int
    field: ProfileField


class PluginToggle(CallbackData, prefix="pt"):
    """Enable or disable a plugin for an account: by name, or "#n" (its place in the sorted catalogue) for a
    name too long for the 64 bytes."""

    id: int
    plugin: str


class Form(CallbackData, prefix="f"):
    """A button of the form in progress (the account and what is asked are in the form's state)."""

    action: FormAction


class MoveTo(CallbackData, prefix="mv"):
    id: int
    worker_id: int


class Language(CallbackData, prefix="l"):
    code: str


class WizardWorker(CallbackData, prefix="aw"):
    worker_id: int


class WizardMethod(CallbackData, prefix="am"):
    method: str  # "login" | "import"


class BoardStatsView(CallbackData, prefix="bs"):
    action: BoardAction = BoardAction.TODAY


class BoardQueue(CallbackData, prefix="bq"):
    """The open report at position `pos` of the queue (oldest first)."""

    pos: int = 0


class BoardHidden(CallbackData, prefix="bh"):
    """The ads moderators hid, `pos` the first shown (newest first)."""

    pos: int = 0


class BoardUnhide(CallbackData, prefix="bu"):
    """Bring back one hidden ad, by its opaque id; `pos` is the list's position to show afterwards."""

    id: str
    pos: int = 0


class BoardReportAction(CallbackData, prefix="br"):
    """An action on one report, by its opaque id (never a position: the queue moves); `pos` is where to go next."""

    id: str
    action: ReportAction
    pos: int = 0


class AdminCard(CallbackData, prefix="ad"):
    """One admin of the admins table (owners by ADMIN_IDS have no card: they are changed only there)."""

    tg_id: int
    action: AdminAction = AdminAction.CARD


class AdminRole(CallbackData, prefix="ar"):
    """Give an admin a role; `tg_id` 0 is the admin the add form is about (in the form's state)."""

    tg_id: int
    role: Role


class AuditPage(CallbackData, prefix="au"):
    """The audit log, newest first: rows older than `before` (0: the newest), filtered by `actor` or `target`
    (each written with `bot.audit_views.encode_filter`: the separator ':' is not allowed in a value)."""

    before: int = 0
    actor: str = ""
    target: str = ""
