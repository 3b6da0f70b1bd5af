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
        "error.report_closed": "Эта жалоба уже рассмотрена.",
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
        # ---- the board's bot (board/bot) ----
        "bot.welcome": (
            "👋 <b>Анонимная доска объявлений</b>\n\n"
            "Смотрите объявления и размещайте свои в мини-приложении. Автору можно написать одно первое "
            "сообщение; если он примет его, здесь откроется анонимный чат: никто не увидит ни имени, ни аккаунта."
        ),
        "bot.open_board": "📋 Открыть доску",
        "bot.keyboard_hint": "Кнопка «📋 Доска» внизу тоже открывает доску.",
        "bot.keyboard_button": "📋 Доска",
        "bot.menu_button": "Доска",
        "bot.no_webapp": "Адрес доски пока не настроен: мини-приложение недоступно. Команды чатов работают.",
        "bot.help": (
            "Команды: /mychats — ваши чаты, /endchat — завершить чат, /block — завершить и заблокировать, "
            "/report — пожаловаться на чат. Всё остальное, что вы пишете, уходит собеседнику."
        ),
        "bot.unknown_command": "Неизвестная команда. /start — начало, /mychats — ваши чаты.",
        "bot.unknown_button": "Эта кнопка устарела.",
        "bot.banned": "Вы заблокированы модератором доски.",
        "bot.unavailable": "Сервис временно недоступен. Попробуйте чуть позже.",
        "cmd.start": "Доска и приветствие",
        "cmd.mychats": "Мои анонимные чаты",
        "cmd.endchat": "Завершить чат",
        "cmd.block": "Завершить чат и заблокировать",
        "cmd.report": "Пожаловаться на чат",
        "invite.new": "📨 <b>Новое сообщение по вашему объявлению «{title}»</b>\n\n{message}",
        "invite.new_header": "📨 <b>Новое сообщение по вашему объявлению «{title}»</b> (текст ниже)",
        "invite.accept": "✅ Принять",
        "invite.decline": "❌ Отклонить",
        "invite.report": "🚩 Пожаловаться",
        "invite.sent": "✉️ Сообщение отправлено автору объявления «{title}». Если он его примет, здесь откроется чат.",
        "invite.accepted_author": "✅ Чат открыт: <b>{partner}</b>. Пишите сюда — собеседник получит всё анонимно.",
        "invite.accepted_guest": (
            "✅ Автор объявления «{title}» принял ваше сообщение. Чат открыт: <b>{partner}</b>. "
            "Пишите сюда — сообщения уйдут собеседнику анонимно."
        ),
        "invite.declined": "Приглашение отклонено. Отправитель об этом не узнает.",
        "invite.reported": "🚩 Жалоба отправлена, приглашение отклонено.",
        "invite.bad_data": "Не удалось прочитать данные из доски. Откройте доску заново и попробуйте ещё раз.",
        "chat.partner": "Собеседник {alias} · {title}",
        "chat.none": "У вас нет активных чатов. Откройте доску и напишите автору объявления.",
        "chat.list": "💬 <b>Ваши чаты</b>\n{chats}\n\nЧтобы писать в нужный чат, отвечайте (reply) на его сообщения.",
        "chat.choose_send": "В какой чат отправить это сообщение? (Ответ на сообщение из чата выбирает чат сам.)",
        "chat.choose_end": "Какой чат завершить?",
        "chat.choose_block": "Какой чат завершить с блокировкой собеседника?",
        "chat.choose_report": "На какой чат пожаловаться?",
        "chat.sent": "➡️ Отправлено: {partner}",
        "chat.pending_gone": "Это сообщение уже отправлено или устарело.",
        "chat.ended_by_you": "Чат завершён: {partner}.",
        "chat.ended_by_partner": "🔚 {partner} завершил(а) чат.",
        "chat.blocked": "⛔ {partner} заблокирован(а): чат завершён, написать вам он(а) больше не сможет.",
        "chat.reported": "🚩 Жалоба на чат «{partner}» отправлена модераторам.",
        "chat.partner_gone": "🔚 {partner} недоступен(на): чат завершён.",
        "chat.ended_banned": "🔚 Чат завершён модератором: {partner}.",
        "relay.contact_refused": "Контакты не пересылаются: это раскрыло бы вас.",
        "relay.unsupported": "Такое не пересылается. Можно: текст, фото, видео, голосовые, файлы, стикеры, геопозицию.",
        "relay.failed": "Не удалось доставить сообщение. Попробуйте ещё раз.",
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
        "error.report_closed": "This report has already been settled.",
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
        # ---- the board's bot (board/bot) ----
        "bot.welcome": (
            "👋 <b>Anonymous bulletin board</b>\n\n"
            "Browse ads and post your own in the Mini App. You may write one first message to an ad's author; "
            "if they accept it, an anonymous chat opens here: nobody sees your name or account."
        ),
        "bot.open_board": "📋 Open the board",
        "bot.keyboard_hint": "The “📋 Board” button below opens the board too.",
        "bot.keyboard_button": "📋 Board",
        "bot.menu_button": "Board",
        "bot.no_webapp": "The board's web address is not configured: the Mini App is unavailable. Chat commands work.",
        "bot.help": (
            "Commands: /mychats — your chats, /endchat — end a chat, /block — end and block, "
            "/report — report a chat. Everything else you write goes to your partner."
        ),
        "bot.unknown_command": "Unknown command. /start — the beginning, /mychats — your chats.",
        "bot.unknown_button": "This button is out of date.",
        "bot.banned": "A moderator has banned you from the board.",
        "bot.unavailable": "The service is temporarily unavailable. Try again a little later.",
        "cmd.start": "The board and a welcome",
        "cmd.mychats": "My anonymous chats",
        "cmd.endchat": "End a chat",
        "cmd.block": "End a chat and block",
        "cmd.report": "Report a chat",
        "invite.new": "📨 <b>A new message about your ad “{title}”</b>\n\n{message}",
        "invite.new_header": "📨 <b>A new message about your ad “{title}”</b> (the text follows)",
        "invite.accept": "✅ Accept",
        "invite.decline": "❌ Decline",
        "invite.report": "🚩 Report",
        "invite.sent": "✉️ Your message went to the author of “{title}”. If they accept it, a chat opens here.",
        "invite.accepted_author": "✅ Chat opened: <b>{partner}</b>. Write here — they get it all anonymously.",
        "invite.accepted_guest": (
            "✅ The author of “{title}” accepted your message. Chat opened: <b>{partner}</b>. "
            "Write here — your messages reach them anonymously."
        ),
        "invite.declined": "Invitation declined. The sender will not be told.",
        "invite.reported": "🚩 Report sent; the invitation is declined.",
        "invite.bad_data": "Could not read the data from the board. Open the board again and retry.",
        "chat.partner": "Partner {alias} · {title}",
        "chat.none": "You have no active chats. Open the board and write to an ad's author.",
        "chat.list": "💬 <b>Your chats</b>\n{chats}\n\nTo write to a particular chat, reply to one of its messages.",
        "chat.choose_send": "Which chat should this message go to? (Replying to a chat's message picks the chat.)",
        "chat.choose_end": "Which chat should end?",
        "chat.choose_block": "Which chat should end with the partner blocked?",
        "chat.choose_report": "Which chat do you report?",
        "chat.sent": "➡️ Sent: {partner}",
        "chat.pending_gone": "This message was already sent or is out of date.",
        "chat.ended_by_you": "Chat ended: {partner}.",
        "chat.ended_by_partner": "🔚 {partner} ended the chat.",
        "chat.blocked": "⛔ {partner} is blocked: the chat has ended and they cannot write to you again.",
        "chat.reported": "🚩 Your report on “{partner}” went to the moderators.",
        "chat.partner_gone": "🔚 {partner} is unreachable: the chat has ended.",
        "chat.ended_banned": "🔚 A moderator ended the chat: {partner}.",
        "relay.contact_refused": "Contacts are not relayed: that would reveal who you are.",
        "relay.unsupported": "Not relayed. You can send text, photos, videos, voice, files, stickers, locations.",
        "relay.failed": "The message could not be delivered. Try again.",
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
