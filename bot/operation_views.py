"""Texts and keyboards of account operations and plugins: an operation's outcome on the card, a worker-wide
batch's progress, the card's forms (cloud password, profile, plugin configuration) and the plugins screen.

Pure functions over the services' views, like `bot.views` (which draws the card's check and plugin lines).
Results come from the workers as small JSON objects; they are put in the admin's language here, and why an
operation failed from its code (`bot.details`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Protocol

from aiogram.types import InlineKeyboardMarkup

from backend.account_views import AccountView
from backend.operation_views import OperationView
from backend.plugins_service import PluginRow
from bot.callbacks import (
    AccountAction,
    AccountCard,
    AccountsPage,
    Form,
    FormAction,
    PluginToggle,
    ProfileEdit,
    ProfileField,
)
from bot.details import detail_text, error_text
from bot.texts import t
from bot.views import Button, ago, check_details, keyboard, plugin_state, verdict_text
from celery_app.operations import OperationName, OperationStatus, describe_result, verdict_of

OPERATION_KEYS = {
    OperationName.CHECK: "op.name.check",
    OperationName.SESSIONS: "op.name.sessions",
    OperationName.TERMINATE_OTHERS: "op.name.end_sessions",
    OperationName.TWO_FA: "op.name.two_fa",
    OperationName.PROFILE: "op.name.profile",
}
SESSIONS_SHOWN = 10  # the card lists this many other sessions, then "… and N more"
PROBLEMS_SHOWN = 20  # a batch's message lists this many accounts with a problem (Telegram's 4096 characters)
PROBLEM_CHARS = 160


class Phase(enum.StrEnum):
    """Where a followed batch is: still running, every operation final, or out of time."""

    RUNNING = "running"
    DONE = "done"  # every operation is final
    TIMED_OUT = "timed_out"


class PluginInfoLike(Protocol):
    """What the bot reads of a plugin in the catalogue (`common.plugin_catalogue.PluginInfo`)."""

    name: str
    description: str
    schema: dict[str, Any]
    error: str | None


def operation_name(lang: str, name: str) -> str:
    key = OPERATION_KEYS.get(name)  # type: ignore[call-overload]
    return t(lang, key) if key else escape(name)


def operation_error(lang: str, error: BaseException) -> str:
    """Why an operation or a plugin change was refused (safe HTML), from the error's code."""
    return error_text(lang, error)


def failure_text(lang: str, view: OperationView, english: str = "?") -> str:
    """Why an operation failed (safe HTML): its coded error in `lang`, else its English words."""
    return detail_text(lang, view.coded, (view.error or english)[:PROBLEM_CHARS])


def running_note(lang: str, name: str) -> str:
    return t(lang, "op.running", op=operation_name(lang, name))


def timeout_note(lang: str, name: str) -> str:
    return t(lang, "op.timeout", op=operation_name(lang, name))


def flood_seconds(view: OperationView, now: float | None = None) -> int:
    return max(0, round((view.until or 0) - (time.time() if now is None else now)))


# --- one operation's outcome (the note under the card)


def _sessions_text(lang: str, result: Mapping[str, Any], now: float) -> str:
    others = [s for s in result.get("sessions", []) if isinstance(s, dict) and not s.get("current")]
    if not others:
        return t(lang, "op.done.no_sessions")
    lines = [t(lang, "op.done.sessions", n=len(others))]
    for session in others[:SESSIONS_SHOWN]:
        active = session.get("last_active")
        lines.append(
            t(
                lang,
                "op.session",
                device=escape(str(session.get("device") or "?")),
                app=escape(str(session.get("app") or session.get("platform") or "?")),
                place=escape(str(session.get("place") or "—")),
                active=ago(lang, now - active if isinstance(active, int | float) else None),
            )
        )
    if len(others) > SESSIONS_SHOWN:
        lines.append(t(lang, "op.more", n=len(others) - SESSIONS_SHOWN))
    return "\n".join(lines)


def done_text(lang: str, name: str, result: Mapping[str, Any], now: float | None = None) -> str:
    """What a finished operation found or changed."""
    if name == OperationName.CHECK:
        verdict = str(result.get("verdict") or verdict_of(dict(result)).value)
        details = check_details(lang, result)
        return t(lang, "op.done.check", verdict=verdict_text(lang, verdict), details=f" — {details}" if details else "")
    if name == OperationName.SESSIONS:
        return _sessions_text(lang, result, time.time() if now is None else now)
    if name == OperationName.TERMINATE_OTHERS:
        ended = int(result.get("terminated") or 0)
        return t(lang, "op.done.ended", n=ended) if ended else t(lang, "op.done.nothing_to_end")
    if name == OperationName.TWO_FA:
        if result.get("changed"):
            return t(lang, "op.done.password_changed")
        return t(lang, "op.done.password_set" if result.get("has_password") else "op.done.no_password")
    if name == OperationName.PROFILE:
        changed = [profile_field(lang, str(item)) for item in result.get("changed", [])]
        return t(lang, "op.done.profile", fields=", ".join(changed)) if changed else t(lang, "op.done.profile_same")
    return escape(describe_result(name, dict(result)))


def outcome_note(lang: str, view: OperationView, waited: int | None = None) -> str:
    """Where one operation stands, for the note under the card. `waited`: the flood wait to show (its length
    when first seen, so the note does not change every second)."""
    op = operation_name(lang, view.name)
    if view.status == OperationStatus.DONE:
        return done_text(lang, view.name, view.result)
    if view.status == OperationStatus.FLOOD_WAIT:
        return t(lang, "op.flood", op=op, seconds=flood_seconds(view) if waited is None else waited)
    if view.status == OperationStatus.FAILED:
        return t(lang, "op.failed", op=op, error=failure_text(lang, view))
    if view.status == OperationStatus.WORKER_LOST:
        return t(lang, "op.lost", op=op, error=failure_text(lang, view, "worker lost"))
    return running_note(lang, view.name)


class CardNotes:
    """The note under the card (and the buttons it offers) as one operation goes on; a flood wait keeps the
    length it had when first seen, so the note does not change every second while it lasts."""

    def __init__(self, lang: str, name: str) -> None:
        self.lang = lang
        self.name = name
        self._waits: dict[float, int] = {}

    def of(self, found: Sequence[OperationView], phase: Phase) -> tuple[str, list[list[Button]]]:
        view = found[0] if found else None
        if view is None:
            return timeout_note(self.lang, self.name), []
        waited = None
        if view.status == OperationStatus.FLOOD_WAIT and view.until:
            waited = self._waits.setdefault(view.until, flood_seconds(view))
        note = outcome_note(self.lang, view, waited)
        if phase is Phase.TIMED_OUT and view.status != OperationStatus.FLOOD_WAIT:
            note = timeout_note(self.lang, self.name)
        return note, after_outcome(self.lang, view)


def after_outcome(lang: str, view: OperationView) -> list[list[Button]]:
    """Buttons an outcome offers above the card's own: after the 2FA report, setting the password."""
    if view.name == OperationName.TWO_FA and view.status == OperationStatus.DONE:
        data = AccountCard(id=view.account_id, action=AccountAction.PASSWORD).pack()
        return [[Button(text=t(lang, "account.btn.password"), callback_data=data)]]
    return []


# --- a worker-wide batch (one message, edited as results arrive)


class Tally(enum.StrEnum):
    OK = "ok"
    WARN = "warn"  # done, but the check found limits
    BAD = "bad"  # failed, lost, or the check found the account gone


def tally(view: OperationView) -> Tally | None:
    """How a finished operation counts in a batch's line; None while it is not finished."""
    if not view.final:
        return None
    if view.status != OperationStatus.DONE:
        return Tally.BAD
    if view.name == OperationName.CHECK:
        verdict = str(view.result.get("verdict") or verdict_of(view.result).value)
        if verdict == "ok":
            return Tally.OK
        return Tally.WARN if verdict in ("limited", "restricted") else Tally.BAD
    return Tally.OK


def _problem_line(lang: str, view: OperationView, kind: Tally) -> str:
    if view.status == OperationStatus.DONE and view.name == OperationName.CHECK:
        verdict = str(view.result.get("verdict") or verdict_of(view.result).value)
        details = check_details(lang, view.result)
        text = verdict_text(lang, verdict) + (f" — {details}" if details else "")
    elif view.status == OperationStatus.DONE:
        text = done_text(lang, view.name, view.result)
    else:
        text = failure_text(lang, view, view.status)
    return t(lang, "batch.line", icon="⚠️" if kind is Tally.WARN else "❌", phone=escape(view.phone_masked), text=text)


def batch_progress(
    lang: str, name: str, worker: str, worker_id: int, views: Sequence[OperationView], phase: Phase
) -> tuple[str, InlineKeyboardMarkup | None]:
    """'Check: 7/20 done · ✅ 5 · ⚠️ 1 · ❌ 1' and a line per finished account with a problem."""
    counts = {kind: 0 for kind in Tally}
    problems: list[tuple[OperationView, Tally]] = []
    waiting = 0
    for view in views:
        kind = tally(view)
        if kind is not None:
            counts[kind] += 1
            if kind is not Tally.OK:
                problems.append((view, kind))
        elif view.status == OperationStatus.FLOOD_WAIT:
            waiting += 1
    lines = [
        t(lang, "batch.header", worker=escape(worker)),
        t(
            lang,
            "batch.progress",
            op=operation_name(lang, name),
            done=sum(counts.values()),
            total=len(views),
            ok=counts[Tally.OK],
            warn=counts[Tally.WARN],
            bad=counts[Tally.BAD],
        ),
    ]
    if waiting:
        lines.append(t(lang, "batch.waiting", n=waiting))
    lines += [_problem_line(lang, view, kind) for view, kind in problems[:PROBLEMS_SHOWN]]
    if len(problems) > PROBLEMS_SHOWN:
        lines.append(t(lang, "op.more", n=len(problems) - PROBLEMS_SHOWN))
    if phase is Phase.RUNNING:
        return "\n".join(lines), None  # no buttons while it runs: leaving the message would be overwritten
    lines.append(t(lang, "batch.finished" if phase is Phase.DONE else "batch.timeout"))
    back = Button(text=t(lang, "btn.back"), callback_data=AccountsPage(worker_id=worker_id).pack())
    return "\n".join(lines), keyboard([back])


def batch_confirm(
    lang: str, what: str, worker: str, worker_id: int, count: int, yes: str
) -> tuple[str, InlineKeyboardMarkup]:
    """The question before an operation on every account of a worker (`what`: "check" or "end_sessions")."""
    yes_key = "btn.yes_check" if what == "check" else "btn.yes_end"
    return t(lang, f"batch.{what}.confirm", worker=escape(worker), count=count), keyboard(
        [
            Button(text=t(lang, yes_key), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=AccountsPage(worker_id=worker_id).pack()),
        ]
    )


# --- the card's forms


def cancel_row(lang: str) -> list[Button]:
    return [Button(text=t(lang, "btn.cancel"), callback_data=Form(action=FormAction.CANCEL).pack())]


def password_prompt(lang: str, step: str, phone: str) -> tuple[str, InlineKeyboardMarkup]:
    """`step`: "current" (with a "no password" button), "new", "repeat", "mismatch"."""
    text = t(lang, f"password.{step}", phone=escape(phone))
    rows = [cancel_row(lang)]
    if step == "current":
        no_password = Button(text=t(lang, "btn.no_password"), callback_data=Form(action=FormAction.NO_PASSWORD).pack())
        rows.insert(0, [no_password])
    return text, keyboard(*rows)


def profile_field(lang: str, field: str) -> str:
    return t(lang, f"profile.field.{field}") if field in {f.value for f in ProfileField} else escape(field)


def profile_picker(lang: str, view: AccountView) -> tuple[str, InlineKeyboardMarkup]:
    def edit(field: ProfileField) -> Button:
        data = ProfileEdit(id=view.id, field=field).pack()
        return Button(text=t(lang, f"profile.btn.{field.value}"), callback_data=data)

    return t(lang, "profile.pick", phone=escape(view.phone_masked)), keyboard(
        [edit(ProfileField.FIRST_NAME), edit(ProfileField.LAST_NAME)],
        [edit(ProfileField.BIO), edit(ProfileField.USERNAME)],
        [edit(ProfileField.PHOTO)],
        [Button(text=t(lang, "btn.back"), callback_data=AccountCard(id=view.id).pack())],
    )


def profile_prompt(lang: str, field: str, phone: str) -> tuple[str, InlineKeyboardMarkup]:
    return t(lang, f"profile.ask.{field}", phone=escape(phone)), keyboard(cancel_row(lang))


def profile_value(field: str, text: str) -> str:
    """What a typed answer means: "-" clears a field that may be empty."""
    text = text.strip()
    return "" if text == "-" and field != ProfileField.FIRST_NAME else text


# --- plugins


def plugin_button(account_id: int, names: Sequence[str], name: str, enabled: bool) -> Button:
    try:
        data = PluginToggle(id=account_id, plugin=name).pack()
    except ValueError:  # too long for Telegram's 64 bytes: its place in the sorted catalogue instead
        data = PluginToggle(id=account_id, plugin=f"#{list(names).index(name)}").pack()
    return Button(text=f"{'✅' if enabled else '▫️'} {name}", callback_data=data)


def plugin_by_token(names: Sequence[str], token: str) -> str | None:
    """The plugin a toggle button means (see `plugin_button`); None if the catalogue no longer has it."""
    if token.startswith("#") and token[1:].isdigit():
        index = int(token[1:])
        ordered = sorted(names)
        return ordered[index] if index < len(ordered) else None
    return token if token in names else None


def plugins_screen(
    lang: str,
    view: AccountView,
    catalogue: Mapping[str, PluginInfoLike],
    rows: Sequence[PluginRow],
    note: str = "",
) -> tuple[str, InlineKeyboardMarkup]:
    """The plugins available here, ✅ for those enabled on this account (with their live state)."""
    enabled = {row.plugin: row for row in rows}
    names = sorted(set(catalogue) | set(enabled))
    lines = [t(lang, "plugins.title", phone=escape(view.phone_masked))]
    if not names:
        lines.append(t(lang, "plugins.none"))
    for name in names:
        info = catalogue.get(name)
        row = enabled.get(name)
        state = plugin_state(lang, row) if row is not None else f"▫️ {escape(name)}"
        about = escape(info.description) if info is not None and info.description else ""
        if info is not None and info.error:
            about = t(lang, "plugins.broken", error=escape(info.error[:200]))
        elif info is None:
            about = t(lang, "plugins.missing")
        lines.append(f"{state}" + (f" — {about}" if about else ""))
    if names:
        lines.append("")
        lines.append(t(lang, "plugins.hint"))
    if note:
        lines += ["", note]
    buttons = [plugin_button(view.id, names, name, name in enabled) for name in names]
    rows_of_two = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    back = [
        Button(text=t(lang, "btn.back"), callback_data=AccountCard(id=view.id).pack()),
        Button(text=t(lang, "btn.refresh"), callback_data=AccountCard(id=view.id, action=AccountAction.PLUGINS).pack()),
    ]
    return "\n".join(lines), keyboard(*rows_of_two, back)


def schema_fields(schema: Mapping[str, Any]) -> str:
    """The configuration's top-level fields, required ones marked: "text*, cooldown_minutes, hours"."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return ""
    required = set(schema.get("required") or [])
    return ", ".join(f"<code>{escape(str(name))}</code>{'*' if name in required else ''}" for name in properties)


def config_prompt(
    lang: str, view: AccountView, info: PluginInfoLike, default_ok: bool, error: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    """Ask for a plugin's configuration (a JSON object); `default_ok` offers {} when the schema accepts it."""
    fields = schema_fields(info.schema)
    text = t(lang, "plugins.config.ask", name=escape(info.name), phone=escape(view.phone_masked))
    if info.description:
        text += f"\n<i>{escape(info.description)}</i>"
    if fields:
        text += "\n" + t(lang, "plugins.config.fields", fields=fields)
    if error:
        text = f"{t(lang, 'wizard.retry', error=error)}\n\n{text}"
    rows = []
    if default_ok:
        default = Button(
            text=t(lang, "btn.default_config", value="{}"), callback_data=Form(action=FormAction.DEFAULT_CONFIG).pack()
        )
        rows.append([default])
    rows.append(cancel_row(lang))
    return text, keyboard(*rows)
