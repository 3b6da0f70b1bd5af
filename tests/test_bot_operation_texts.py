"""What the bot says about account operations and plugins, as pure functions: the alerts for a check that got
worse and for plugins' messages and failures (folded into one per wave, throttled), an operation's outcome
and a batch's progress in both languages, the last check and a plugin's state on a card. The flows that show
them are in `test_bot_operations.py`."""

from __future__ import annotations

from typing import Any

from backend.operation_views import OperationView
from backend.plugins_service import PluginRow
from bot import operation_views as ov
from bot import views
from bot.alerts import EventLine, PluginErrorThrottle, build_alerts
from bot.operation_views import Phase
from celery_app.operations import OperationName
from celery_app.plugin_config import PluginStatus
from common.details import Detail, detail, free
from database.models import FleetEventKind, utcnow
from tests.support.bot_ops import check_report


def message(plugin: str, kind: str, text: str) -> Detail:
    return detail("plugin_event", plugin=plugin, kind=kind, text=text)


def failed(plugin: str, error: str) -> Detail:
    return detail("plugin_failed", plugin=plugin, cause=free(error))


def test_alerts_for_worse_checks_and_plugins() -> None:
    phones = {7: "+7 *** ***-45-67"}
    worse = detail("verdict_worse", before="ok", after="limited")
    one = build_alerts([EventLine(FleetEventKind.ACCOUNT_VERDICT_WORSE, "account:7", worse)], phones)
    assert [a.render("en") for a in one] == [
        "⚠️ Account +7 *** ***-45-67 (#7): check got worse: ✅ ok → ⚠️ limited (spam)"
    ]
    banned = detail("verdict_worse", before="ok", after="banned")
    wave = [EventLine(FleetEventKind.ACCOUNT_VERDICT_WORSE, f"account:{i}", banned) for i in range(4)]
    assert [a.render("ru") for a in build_alerts(wave)] == ["⚠️ Проверка хуже прежней у 4 аккаунтов (#0, #1, #2, #3)"]
    folded = EventLine(FleetEventKind.ACCOUNT_VERDICT_WORSE, "account:7", worse, repeat_count=2)
    assert build_alerts([folded]) == []

    blocked = detail("plugin_blocked_loop", plugin="watch", cause=detail("plugin_still_blocked", seconds=2.5))
    plugin = [
        EventLine(FleetEventKind.PLUGIN_ALERT, "account:7", message("watch", "match", "«sale» in chat -100123 <b>")),
        EventLine(FleetEventKind.PLUGIN_ERROR, "account:8", failed("autoreply", "KeyError: 'text'")),
        EventLine(FleetEventKind.PLUGIN_ERROR, "account:7", blocked),
        EventLine(FleetEventKind.PLUGIN_EVENT, "account:7", message("watch", "note", "not for admins")),
    ]
    assert [a.render("en") for a in build_alerts(plugin, phones)] == [
        "🔔 watch · +7 *** ***-45-67 (#7): «sale» in chat -100123 &lt;b&gt;",
        "❌ Plugin <b>autoreply</b> failing on account #8: KeyError: &#x27;text&#x27;",
        "🐢 Plugin <b>watch</b> blocks the event loop of account +7 *** ***-45-67 (#7): "
        "blocked its event loop for 2.5 s (still blocked)",
    ]
    assert "заблокировал цикл событий на 2.5 с" in build_alerts([plugin[2]], phones)[0].render("ru")
    failing = [EventLine(FleetEventKind.PLUGIN_ERROR, f"account:{i}", failed("watch", "boom")) for i in range(3)]
    assert [a.render("ru") for a in build_alerts(failing)] == [
        "❌ Плагины сбоят на 3 аккаунтах: watch #0, watch #1, watch #2"
    ]

    throttle = PluginErrorThrottle(every=3600)
    first = EventLine(FleetEventKind.PLUGIN_ERROR, "account:7", failed("watch", "boom"))
    other_error = EventLine(FleetEventKind.PLUGIN_ERROR, "account:7", failed("watch", "another"))
    other_account = EventLine(FleetEventKind.PLUGIN_ERROR, "account:8", failed("watch", "boom"))
    assert throttle.allow(first, 0) and not throttle.allow(other_error, 10) and throttle.allow(other_account, 10)
    assert throttle.allow(other_error, 3601)


def operation(
    name: str, status: str, result: dict[str, Any] | None = None, error: Detail | None = None, account: int = 1
) -> OperationView:
    return OperationView(
        account,
        "b",
        account,
        f"+7 *** ***-00-0{account}",
        name,
        status,
        result or {},
        error.text if error is not None else "",
        "w1",
        None,
        utcnow(),
        None,
        error,
    )


def test_outcomes_and_progress_in_both_languages() -> None:
    check = operation(OperationName.CHECK, "done", check_report("restricted", other_sessions=1))
    assert (
        ov.outcome_note("en", check)
        == "🩺 Check: 🔒 restricted by Telegram — restricted: spam reports · spam: no limits · 1 other session"
    )
    assert (
        ov.outcome_note("ru", operation(OperationName.TWO_FA, "done", {"has_password": False}))
        == "🔐 Облачного пароля нет."
    )
    failed = operation(OperationName.PROFILE, "failed", error=detail("username_invalid", username="x_y"))
    assert ov.outcome_note("en", failed).startswith("❌ Profile: the username @x_y is not valid")
    lost = operation(OperationName.CHECK, "worker_lost", error=detail("worker_lost", worker="w1"))
    assert ov.outcome_note("ru", lost) == "❓ Проверка: воркер w1 пропал, не закончив операцию"
    unknown = operation(
        OperationName.SESSIONS, "failed", error=detail("telegram_error", code=500, name=" RPC_CALL_FAIL")
    )
    assert ov.outcome_note("ru", unknown) == "❌ Сеансы: ошибка Telegram 500 RPC_CALL_FAIL"
    batch = [
        operation(OperationName.CHECK, "done", check_report("ok"), account=1),
        operation(OperationName.CHECK, "flood_wait", account=2),
        operation(OperationName.CHECK, "running", account=3),
    ]
    text, markup = ov.batch_progress("en", OperationName.CHECK, "w<1>", 4, batch, Phase.RUNNING)
    assert text.split("\n") == [
        "🖥 <b>w&lt;1&gt;</b>",
        "Check: 1/3 done · ✅ 1 · ⚠️ 0 · ❌ 0",
        "🐢 Waiting as Telegram asked: 1 (they resume by themselves)",
    ]
    assert markup is None
    found = {"verdict": "ok", "authorized": True, "spam": "weird", "other_sessions": 0, "premium": True}
    assert views.check_details("ru", found) == ("спам: weird · 0 других сеансов · Премиум")
    failing = PluginRow(1, "+7", "watch", {}, PluginStatus("blocked", 1, "stalled 3 s"))
    assert views.plugin_state("en", failing) == "🐢 watch (blocks the event loop: stalled 3 s)"
