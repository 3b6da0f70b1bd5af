"""Everything the board says, in Russian (the default) and English; `t(lang, key, **values)`.

Error texts are keyed `error.<code>` by `BoardError.code`; the Mini App gets them in API answers.
"""

from __future__ import annotations

from typing import Any

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "error.unknown_user": "Сначала откройте бота: /start",
        "error.banned": "Вы заблокированы модератором и не можете этого сделать.",
        "error.ad_not_found": "Объявление не найдено.",
        "error.invite_not_found": "Приглашение не найдено.",
        "error.chat_not_found": "Чат не найден.",
        "error.report_not_found": "Жалоба не найдена.",
        "error.own_ad": "Это ваше объявление.",
        "error.not_your_ad": "Это не ваше объявление.",
        "error.ad_closed": "Объявление закрыто или истекло.",
        "error.already_invited": "Вы уже писали автору этого объявления: первое сообщение можно отправить один раз.",
        "error.invite_limit": "Сегодня вы уже отправили {limit} первых сообщений. Попробуйте завтра.",
        "error.ad_limit": "У вас уже {limit} открытых объявления: закройте одно, чтобы разместить новое.",
        "error.blocked": "Переписка с этим человеком невозможна.",
        "error.invite_decided": "На это приглашение уже ответили.",
        "error.chat_ended": "Этот чат завершён.",
        "error.already_reported": "Вы уже пожаловались на это.",
        "error.bad_category": "Неизвестная категория.",
        "error.title_empty": "Напишите заголовок.",
        "error.title_too_long": "Заголовок длиннее {limit} символов.",
        "error.text_empty": "Напишите текст объявления.",
        "error.text_too_long": "Текст длиннее {limit} символов.",
        "error.message_empty": "Сообщение пустое.",
        "error.message_too_long": "Сообщение длиннее {limit} символов.",
        "error.reason_too_long": "Причина длиннее {limit} символов.",
        "error.query_too_long": "Запрос длиннее {limit} символов.",
        "error.spam_link": "Ссылки и @упоминания не допускаются.",
        "error.spam_stop_word": "В тексте есть запрещённые слова.",
        "error.spam_repeated": "Текст похож на спам: много повторов.",
        "error.spam_flood": "Вы отправляете слишком много похожих текстов.",
        "error.no_ad": "В жалобе нет объявления.",
        "error.unauthorized": "Откройте доску из Telegram: данные входа не подтверждены или устарели.",
        "error.bad_request": "Неверный запрос.",
        "error.rate_limited": "Слишком много запросов. Подождите немного.",
        "error.not_found": "Не найдено.",
        "category.services": "Услуги",
        "category.jobs": "Работа",
        "category.sale": "Продажа",
        "category.housing": "Жильё",
        "category.dating": "Знакомства",
        "category.other": "Другое",
    },
    "en": {
        "error.unknown_user": "Open the bot first: /start",
        "error.banned": "A moderator has banned you: you cannot do this.",
        "error.ad_not_found": "Ad not found.",
        "error.invite_not_found": "Invitation not found.",
        "error.chat_not_found": "Chat not found.",
        "error.report_not_found": "Report not found.",
        "error.own_ad": "This is your own ad.",
        "error.not_your_ad": "This is not your ad.",
        "error.ad_closed": "The ad is closed or has expired.",
        "error.already_invited": "You have already written to this ad's author: the first message is sent once.",
        "error.invite_limit": "You have sent {limit} first messages today. Try again tomorrow.",
        "error.ad_limit": "You already have {limit} open ads: close one to post another.",
        "error.blocked": "You cannot talk to this person.",
        "error.invite_decided": "This invitation has already been answered.",
        "error.chat_ended": "This chat has ended.",
        "error.already_reported": "You have already reported this.",
        "error.bad_category": "Unknown category.",
        "error.title_empty": "Write a title.",
        "error.title_too_long": "The title is longer than {limit} characters.",
        "error.text_empty": "Write the ad's text.",
        "error.text_too_long": "The text is longer than {limit} characters.",
        "error.message_empty": "The message is empty.",
        "error.message_too_long": "The message is longer than {limit} characters.",
        "error.reason_too_long": "The reason is longer than {limit} characters.",
        "error.query_too_long": "The search is longer than {limit} characters.",
        "error.spam_link": "Links and @mentions are not allowed.",
        "error.spam_stop_word": "The text contains forbidden words.",
        "error.spam_repeated": "This looks like spam: too much repetition.",
        "error.spam_flood": "You are sending too many similar texts.",
        "error.no_ad": "The report has no ad.",
        "error.unauthorized": "Open the board from Telegram: the sign-in data is missing, forged or stale.",
        "error.bad_request": "Bad request.",
        "error.rate_limited": "Too many requests. Wait a little.",
        "error.not_found": "Not found.",
        "category.services": "Services",
        "category.jobs": "Jobs",
        "category.sale": "For sale",
        "category.housing": "Housing",
        "category.dating": "Dating",
        "category.other": "Other",
    },
}


def lang_of(code: str | None) -> str:
    """Telegram's `language_code` → "en" or "ru" (Russian for everyone else, as the board was made for them)."""
    return "en" if (code or "").lower().startswith("en") else "ru"


def t(lang: str, key: str, **values: Any) -> str:
    table = TEXTS.get(lang, TEXTS["ru"])
    text = table.get(key) or TEXTS["ru"].get(key) or key
    try:
        return text.format(**values) if values else text
    except (KeyError, IndexError, ValueError):
        return text
