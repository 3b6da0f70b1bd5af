"""The bot's text catalogues (bot/locales/*/bot.ftl): the same texts in both languages, Russian plural forms,
no English left in the Russian UI, status details in the admin's language. Pure: no Redis, no bot."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import pytest
from fluent.syntax import FluentParser, ast
from fluent.syntax.visitor import Visitor

from backend.fleet import FleetSummary
from bot import views
from bot.alerts import EventLine, build_alerts
from bot.details import detail_text, error_text
from bot.handlers.accounts import moved_note
from bot.texts import LANGUAGES, catalogue_path, has_text, load_catalogue, message_id, t
from common.details import Detail, detail, free, stored

BOT = Path(__file__).resolve().parent.parent / "bot"
COUNTS = (1, 2, 5, 11, 21, 22, 25, 101)
ISOLATION_MARKS = ("\u2068", "\u2069")


class _Collect(Visitor):
    """The variables a message uses and the literal text of all its variants."""

    def __init__(self) -> None:
        super().__init__()
        self.variables: set[str] = set()
        self.text: list[str] = []

    def visit_VariableReference(self, node: ast.VariableReference) -> None:  # noqa: N802 - Visitor's naming
        self.variables.add(node.id.name)
        self.generic_visit(node)

    def visit_TextElement(self, node: ast.TextElement) -> None:  # noqa: N802
        self.text.append(node.value)

    def visit_StringLiteral(self, node: ast.StringLiteral) -> None:  # noqa: N802
        self.text.append(node.value)


def messages(lang: str) -> dict[str, ast.Message]:
    resource = FluentParser().parse(catalogue_path(lang).read_text(encoding="utf-8"))
    assert not [entry for entry in resource.body if isinstance(entry, ast.Junk)]
    return {entry.id.name: entry for entry in resource.body if isinstance(entry, ast.Message)}


def collected(message: ast.Message) -> _Collect:
    visitor = _Collect()
    visitor.visit(message)
    return visitor


def test_both_catalogues_parse_and_have_the_same_ids_and_placeables() -> None:
    catalogues = {lang: messages(lang) for lang in LANGUAGES}
    russian, english = catalogues["ru"], catalogues["en"]
    assert sorted(russian) == sorted(english)
    assert len(russian) > 200
    differing = {
        ident: (collected(russian[ident]).variables, collected(english[ident]).variables)
        for ident in russian
        if collected(russian[ident]).variables != collected(english[ident]).variables
    }
    assert differing == {}
    for lang in LANGUAGES:
        load_catalogue(lang)  # no junk: a syntax error fails here, not as a missing text in the bot


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("sample", [0, 1, 2, 5, 21, 1.5, "x"])
def test_every_text_renders_for_sample_values(lang: str, sample: object) -> None:
    for ident, message in messages(lang).items():
        values = dict.fromkeys(collected(message).variables, sample)
        text = t(lang, ident, **values)
        assert text.strip(), ident
        assert "{" not in text and "$" not in text, (ident, text)
        assert not any(mark in text for mark in ISOLATION_MARKS), ident


def word_after(text: str, number: int) -> str:
    match = re.search(rf"(?<![0-9]){number} (\w+)", text)
    assert match, text
    return match.group(1)


RUSSIAN_FORMS = {
    "воркер": ("воркер", "воркера", "воркеров"),
    "аккаунт": ("аккаунт", "аккаунта", "аккаунтов"),
    "день": ("день", "дня", "дней"),
    "отключён": ("отключён", "отключены", "отключено"),
}


def russian_form(number: int, forms: tuple[str, str, str]) -> str:
    one, few, many = forms
    if number % 10 == 1 and number % 100 != 11:
        return one
    if number % 10 in (2, 3, 4) and number % 100 not in (12, 13, 14):
        return few
    return many


@pytest.mark.parametrize("n", COUNTS)
def test_russian_counts_take_the_right_plural_form(n: int) -> None:
    expected_forms = {  # what's written out for the counts of the texts that count something
        1: ("воркер", "аккаунт", "день", "отключён"),
        2: ("воркера", "аккаунта", "дня", "отключены"),
        5: ("воркеров", "аккаунтов", "дней", "отключено"),
        11: ("воркеров", "аккаунтов", "дней", "отключено"),
        21: ("воркер", "аккаунт", "день", "отключён"),
        22: ("воркера", "аккаунта", "дня", "отключены"),
        25: ("воркеров", "аккаунтов", "дней", "отключено"),
        101: ("воркер", "аккаунт", "день", "отключён"),
    }[n]
    assert expected_forms == tuple(russian_form(n, forms) for forms in RUSSIAN_FORMS.values())
    workers, accounts, days, deactivated = expected_forms
    assert word_after(t("ru", "alert.workers_offline", n=n, names="w1"), n) == workers
    assert word_after(t("ru", "alert.workers_online", n=n, names="w1"), n) == workers
    assert word_after(t("ru", "alert.accounts", icon="⛔", n=n, status="⛔ забанен", ids="1"), n) == accounts
    assert word_after(t("ru", "ago.days", n=n), n) == days
    assert word_after(views.duration("ru", n * 86400 + 3 * 3600), n) == days
    assert word_after(t("ru", "summary.deactivated", n=n), n) == deactivated
    card = t(
        "ru", "worker.card", name="w", status="", address="", heartbeat="", version="", uptime="", running=n, total=n
    )
    assert f"Аккаунты: {'работает' if accounts == 'аккаунт' else 'работают'} {n} из {n}" in card


def test_english_counts_take_the_right_plural_form() -> None:
    assert t("en", "alert.workers_offline", n=1, names="w1") == "🔴 1 worker went offline at once: w1"
    assert t("en", "alert.workers_online", n=21, names="w1") == "🟢 21 workers are back online: w1"
    assert t("en", "alert.accounts", icon="⛔", n=3, status="⛔ banned", ids="1, #2, #3") == (
        "⛔ 3 accounts: ⛔ banned (#1, #2, #3)"
    )
    again = t("en", "alert.worker_offline.again", name="w1", detail="", repeats=3)
    assert again == "🔴 Worker <b>w1</b> is offline, 3 times within the hour"


def test_numbers_are_printed_as_they_are() -> None:
    assert (
        t("ru", "alert.account", icon="⛔", id=123456, status="⛔ забанен", detail="")
        == "⛔ Аккаунт #123456: ⛔ забанен"
    )
    assert t("en", "workers.title", page=1, pages=2, total=12345).endswith("12345 in all")
    assert t("ru", "workers.row", icon="🟢", name="w", running="?", total=1000) == "🟢 w · ?/1000"


# Latin words a Russian admin is expected to read: names of products and protocols, the API's own terms.
ALLOWED_LATIN = {
    "Telegram",
    "SpamBot",  # Telegram's bot, by its username
    "Telethon",
    "Pyrogram",
    "tdata",
    "Redis",
    "API",
    "ID",
    "IP",
    "UTC",
    "hash",
    "my.telegram.org",
}
BILINGUAL = {"menu-language", "language-pick"}  # the language switch speaks both, so anyone can find it


def latin_words(text: str) -> list[str]:
    text = re.sub(r"<code>.*?</code>", " ", text, flags=re.DOTALL)  # literal input: file names, formats
    text = re.sub(r"</?[a-z]+>", " ", text)  # HTML tags
    text = re.sub(r"(?<!\w)/[a-z_]+", " ", text)  # /commands
    text = re.sub(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", " ", text)  # Telegram's error names: SESSION_REVOKED
    text = text.replace("my.telegram.org", " ")
    return [word for word in re.findall(r"[A-Za-z][A-Za-z0-9.]*", text) if word.rstrip(".") not in ALLOWED_LATIN]


def test_the_russian_catalogue_has_no_english_words() -> None:
    found = {
        ident: latin_words(" ".join(collected(message).text))
        for ident, message in messages("ru").items()
        if ident not in BILINGUAL
    }
    assert {ident: words for ident, words in found.items() if words} == {}
    assert latin_words("сеть: timed out <code>run.py</code> /start SESSION_REVOKED Telegram") == ["timed", "out"]


def test_every_key_the_bot_uses_is_in_the_catalogues() -> None:
    """Dotted literals in bot/ that name texts (event kinds such as `worker.offline` are not texts)."""
    event_kinds = {"worker.offline", "worker.online", "account.status"}
    prefixes = (
        "menu ago duration board btn status workers worker accounts account st detail wizard summary language "
        "alert err cmd proxies proxy"
    ).split()
    used = set()
    for source in BOT.rglob("*.py"):
        for key in re.findall(r"\"([a-z_]+(?:\.[a-z_]+)+)\"", source.read_text(encoding="utf-8")):
            if key.split(".")[0] in prefixes and key not in event_kinds:
                used.add(key)
    assert len(used) > 100
    for lang in LANGUAGES:
        assert sorted(key for key in used if not has_text(lang, key)) == []
    for key in ("refused", "cancelled", "nothing_to_cancel", "unknown_button", "unknown_input", "internal_error"):
        assert has_text("ru", key) and has_text("en", key)
    assert message_id("account.btn.when_back") == "account-btn-when_back"


def test_durations_in_each_language() -> None:
    assert views.duration("ru", 7 * 60 + 9) == "7 мин 9 с"
    assert views.duration("ru", 3725) == "1 ч 2 мин"
    assert views.duration("ru", 2 * 86400 + 5 * 3600) == "2 дня 5 ч"
    assert views.duration("en", 7 * 60 + 9) == "7m 9s"
    assert views.duration("en", 3725) == "1h 2m"
    assert views.duration("en", 2 * 86400 + 5 * 3600) == "2d 5h"
    assert views.duration("ru", None) == "—"
    assert views.ago("ru", 3 * 86400) == "3 дня назад" and views.ago("ru", 42) == "42 с назад"


def test_details_from_our_code_render_in_russian_and_say_in_english_what_the_source_says() -> None:
    from backend.reconciler import _offline_detail
    from worker import failures

    ours = [
        *(detail(code) for code in failures.UNAUTHORIZED.values()),
        *(detail(code) for code in failures.BANNED.values()),
        *(detail(code) for code in set(failures._PLAIN_CAUSES.values())),
        _offline_detail(None, 0.0),
        _offline_detail(100.0, 161.0),
        *(detail(code) for code in ("imported", "logged_in", "worker_stopped", "stopped", "not_running_here")),
        detail("lease_taken"),
    ]
    for said in ours:
        russian = detail_text("ru", said)
        assert russian != said.text and not latin_words(russian), (said, russian)
        assert detail_text("en", said) == said.text  # the English texts say what the source says


@pytest.mark.parametrize(
    ("said", "russian"),
    [
        (detail("imported"), "сессия импортирована"),
        (
            detail("retry", detail=detail("network", cause=detail("timed_out")), attempt=3, delay=8.0),
            "сеть: время ожидания истекло; повтор 3 через 8 с",
        ),
        (detail("flood", seconds=42.0), "Telegram просит подождать 42 с"),
        (detail("reconnecting", attempt=2), "переподключается (попытка 2)"),
        (detail("connect_turn", rate=2.0), "ждёт очереди на подключение (2 в секунду)"),
        (
            detail("reconnect_turn", attempt=3, rate=2.0),
            "ждёт очереди на переподключение (попытка 3, 2 в секунду)",
        ),
        (detail("worker_offline_silent", worker="fra-1", seconds=95.2), "воркер fra-1 оффлайн (молчит 95 с)"),
        (detail("worker_offline", worker="fra-1"), "воркер fra-1 оффлайн"),
        (detail("no_report", worker="fra-1"), "от воркера fra-1 ещё нет отчёта"),
        (detail("no_heartbeat", seconds=61.0), "нет сигнала 61 с"),
        (detail("restarted_pid", pid=4321), "перезапущен, процесс 4321"),
        (
            detail("could_not_start", cause=detail("telegram_error", code=500, name=" RPC_CALL_FAIL")),
            "не удалось запустить: ошибка Telegram 500 RPC_CALL_FAIL",
        ),
        (detail("running_elsewhere", worker="w2"), "отказано: аккаунт работает на воркере w2"),
        (
            detail("status_change", status="banned", cause=detail("user_banned")),
            "⛔ забанен: аккаунт забанен в Telegram (USER_DEACTIVATED_BAN)",
        ),
        # an error's own words: as they are
        (free("ValueError: something <odd>"), "ValueError: something &lt;odd&gt;"),
        (detail("worker_host", host="<b>x</b>"), "хост &lt;b&gt;x&lt;/b&gt;"),  # values are escaped
    ],
)
def test_coded_details_in_russian_and_english(said: Detail, russian: str) -> None:
    assert detail_text("ru", said) == russian
    english = detail_text("en", Detail.from_json(said.to_json()))  # as it comes back from the wire
    if said.code == "status_change":  # the status is shown in the admin's words, with its icon
        assert english == "⛔ banned: the account is banned by Telegram (USER_DEACTIVATED_BAN)"
    else:
        assert english == escape(said.text, quote=False)


def test_a_detail_without_a_code_is_shown_as_its_english_words() -> None:
    assert detail_text("ru", None, "worker <b> stopped") == "worker &lt;b&gt; stopped"
    assert detail_text("ru", stored("", "imported")) == "imported"  # a row from before codes: never pattern-matched
    assert detail_text("ru", stored(detail("imported").encode(), "imported")) == "сессия импортирована"


def test_alerts_show_details_in_the_admins_language() -> None:
    worker, account = build_alerts(
        [
            EventLine("worker.offline", "fra-1", detail("no_heartbeat", seconds=70.0)),
            EventLine(
                "account.status",
                "account:7",
                detail("status_change", status="unauthorized", cause=detail("session_expired")),
            ),
        ]
    )
    assert worker.render("ru") == "🔴 Воркер <b>fra-1</b> оффлайн (нет сигнала 70 с)"
    assert worker.render("en") == "🔴 Worker <b>fra-1</b> is offline (no heartbeat for 70 s)"
    assert account.render("ru") == "🚫 Аккаунт #7: 🚫 сессия отозвана — сессия истекла (SESSION_EXPIRED)"
    restarted = EventLine("worker.online", "w<1>", detail("restarted_pid", pid=9), repeat_count=2)
    flapping = build_alerts([restarted])[0]
    assert (
        flapping.render("ru")
        == "🟢 Воркер <b>w&lt;1&gt;</b> снова онлайн (перезапущен, процесс 9) — уже 2-й раз за час"
    )
    flood = detail("status_change", status="flood_wait", cause=detail("flood", seconds=30.0))
    grouped = build_alerts([EventLine("account.status", f"account:{i}", flood) for i in range(21)])[0]
    assert grouped.render("ru").startswith("🐢 21 аккаунт: 🐢 пауза из-за флуда (#0, #1")


def test_summary_and_move_notes() -> None:
    text, _ = views.summary("ru", FleetSummary(3, 1, 1, {"running": 2, "flood_wait": 1}))
    assert "Воркеры: 🟢 3 · 🔴 1 · ⏸ 1 отключён" in text and "🐢 пауза из-за флуда: 1" in text
    text, _ = views.summary("en", FleetSummary(3, 1, 2, {}))
    assert "Workers: 🟢 3 · 🔴 1 · ⏸ 2 deactivated" in text and "Accounts: none" in text
    assert moved_note("ru", "w1", "w<2>", False) == "🔀 Аккаунт перенесён с воркера <b>w1</b> на <b>w&lt;2&gt;</b>."
    assert moved_note("ru", None, "w2", True) == "🔀 Аккаунт перенесён на воркер <b>w2</b>. Там он уже запускается."
    assert (
        moved_note("en", "w1", "w2", True)
        == "🔀 Account moved from worker <b>w1</b> to <b>w2</b>. It is starting there."
    )


def test_errors_are_shown_from_their_codes_in_the_admins_language() -> None:
    from backend.dispatch import WorkerDidNotAnswer
    from backend.errors import AccountError
    from database.errors import AccountExists, AccountNotFound, WorkerHasAccounts, WorkerStillOnline

    assert error_text("ru", WorkerStillOnline("w1")) == "Воркер w1 онлайн: сначала остановите его, потом удаляйте."
    assert error_text("ru", WorkerHasAccounts("w<1>", 3)).startswith("На воркере w&lt;1&gt; ещё есть аккаунты")
    assert error_text("ru", AccountExists("+7 *** ***-45-67", 12345)) == "Аккаунт с этим номером уже есть (#12345)."
    assert error_text("ru", WorkerDidNotAnswer("w1", 30)) == "Воркер w1 не ответил вовремя."
    assert error_text("ru", AccountNotFound(424242)) == "Аккаунт 424242 не найден."
    assert error_text("en", WorkerStillOnline("w1")) == "Worker w1 is online; stop it before removing it."
    refused = AccountError(
        "worker 'w1' did not start account 7: boom", "start_refused", worker="w1", id=7, problem="<x>"
    )
    assert error_text("ru", refused) == "Воркер w1 не запустил аккаунт #7: &lt;x&gt;"
    assert error_text("ru", RuntimeError("odd <thing>")) == "odd &lt;thing&gt;"  # a bug's error: its own words


def test_a_worker_presenting_another_key_is_alerted_with_both_fingerprints() -> None:
    [alert] = build_alerts(
        [EventLine("worker.key_changed", "fra-1", detail("key_changed", pinned="aaaa1111", presented="bbbb2222"))]
    )
    assert alert.render("ru") == (
        "🔑 Воркер <b>fra-1</b> предъявил другой ключ (ключ bbbb2222 вместо закреплённого aaaa1111: работы не будет, "
        "пока ему не доверятся). Если его переустановили вы: <code>run_cli.py workers trust fra-1</code>"
    )
    assert "presents another key (key bbbb2222 instead of the pinned aaaa1111" in alert.render("en")
    assert build_alerts([EventLine("worker.key_pinned", "fra-1", detail("key", fingerprint="aaaa1111"))]) == []
