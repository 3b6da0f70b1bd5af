"""Every text the bot shows, in Russian (the default) and English: handlers only pick keys.

`t(lang, key, **values)` formats a text; values are HTML-escaped by the caller where they come from users.
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "ru"
LANGUAGES = ("ru", "en")
# Telegram language codes of admins who read Russian best; everyone else gets English.
RUSSIAN_READERS = ("ru", "uk", "be", "kk", "ky", "uz", "tg", "hy", "az", "ka", "mo")

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "refused": "⛔ Этот бот только для администраторов.",
        "menu.title": "🛰 <b>Управление флотом</b>\nВыберите раздел:",
        "menu.workers": "🖥 Воркеры",
        "menu.accounts": "📱 Аккаунты",
        "menu.add_account": "➕ Добавить аккаунт",
        "menu.summary": "📊 Сводка",
        "menu.language": "🌐 Язык / Language",
        "menu.board": "📋 Доска",
        "board.off": "📋 Доска не подключена к этому боту.",
        "board.title.today": "📋 <b>Доска — последние 24 часа</b>",
        "board.title.week": "📋 <b>Доска — последние 7 дней</b>",
        "board.stats": (
            "Объявления: размещено {ads_posted} · открыто сейчас {ads_open}\n"
            "Приглашения: отправлено {invites_sent} · принято {invites_accepted} · отклонено {invites_declined}\n"
            "Доля принятых: {accept_rate}\n"
            "Активные чаты: {chats_active}\n"
            "Жалобы: открыто {reports_open} · новых {reports_new}"
        ),
        "board.by_day": "<b>По дням</b> (объявления · приглашения · ✅ принято · ❌ отклонено)",
        "board.day": "{day}: {ads} · {invites} · ✅ {accepted} · ❌ {declined}",
        "board.btn.today": "📅 Сегодня",
        "board.btn.week": "📆 Неделя",
        "board.btn.reports": "🚩 Жалобы ({n})",
        "board.btn.board": "📋 Доска",
        "board.btn.ban": "⛔ Забанить",
        "board.btn.yes_ban": "⛔ Да, забанить",
        "board.btn.dismiss": "✅ Отклонить жалобу",
        "board.btn.hide": "🙈 Скрыть объявление",
        "board.queue.empty": "🚩 Открытых жалоб нет.",
        "board.report.title": "🚩 <b>Жалоба {n} из {total}</b> — {target} · {age}",
        "board.report.reported": "На кого: <code>{handle}</code>{banned}",
        "board.report.banned": " (уже забанен)",
        "board.report.reporter": "Кто пожаловался: <code>{handle}</code>",
        "board.report.reason": "Причина: {reason}",
        "board.report.no_reason": "не указана",
        "board.report.ad": "Объявление: <b>{title}</b>",
        "board.report.ad_text": "<b>Текст объявления:</b>",
        "board.report.invite_text": "<b>Приглашение:</b>",
        "board.report.messages": "<b>Последние сообщения чата:</b>",
        "board.report.no_messages": "<i>сообщений не сохранилось</i>",
        "board.target.ad": "объявление",
        "board.target.invite": "приглашение",
        "board.target.chat": "чат",
        "board.ban.confirm": (
            "Забанить <code>{handle}</code>? Его объявления скроются, чаты завершатся, "
            "все открытые жалобы на него закроются."
        ),
        "board.done.ban": "⛔ <code>{handle}</code> забанен.",
        "board.done.dismiss": "✅ Жалоба отклонена.",
        "board.done.hide": "🙈 Объявление «{title}» скрыто.",
        "board.err.report_not_found": "Жалоба не найдена.",
        "board.err.no_ad": "В этой жалобе нет объявления.",
        "board.err.report_closed": "Эту жалобу уже рассмотрел другой модератор.",
        "board.err": "⚠️ {error}",
        "btn.back": "⬅️ Назад",
        "btn.menu": "🏠 Меню",
        "btn.refresh": "🔄 Обновить",
        "btn.prev": "◀️",
        "btn.next": "▶️",
        "btn.cancel": "✖️ Отмена",
        "btn.yes_remove": "🗑 Да, удалить",
        "btn.add_worker": "➕ Добавить воркер",
        "status.online": "🟢 Онлайн",
        "status.offline": "🔴 Оффлайн",
        "status.deactivated": "⏸ отключён админом",
        "workers.title": "🖥 <b>Воркеры</b> — стр. {page}/{pages}, всего {total}",
        "workers.empty": "🖥 Воркеров пока нет. Запустите <code>run_worker.py</code> на сервере или добавьте воркер.",
        "workers.row": "{icon} {name} · {running}/{total}",
        "worker.card": (
            "🖥 <b>{name}</b> — {status}\n"
            "Адрес: <code>{address}</code>\n"
            "Последний heartbeat: {heartbeat}\n"
            "Версия: {version} · аптайм: {uptime}\n"
            "Аккаунты: {running} работают из {total}"
        ),
        "worker.rejected": "⚠️ Отброшено битых сообщений из очереди: {count}",
        "worker.btn.accounts": "📱 Аккаунты",
        "worker.btn.activate": "▶️ Включить",
        "worker.btn.deactivate": "⏸ Отключить",
        "worker.btn.remove": "🗑 Удалить",
        "worker.activated": "Воркер {name} включён",
        "worker.deactivated": "Воркер {name} отключён: новые аккаунты на нём не запускаются",
        "worker.remove.confirm": "Удалить воркер <b>{name}</b> из списка? Это не останавливает сервер.",
        "worker.removed": "🗑 Воркер {name} удалён.",
        "worker.add.name": (
            "Введите имя нового воркера (латиница, цифры, <code>.</code>, <code>_</code>, <code>-</code>):"
        ),
        "worker.add.address": "Адрес сервера воркера <b>{name}</b> (IP или имя хоста):",
        "worker.added": (
            "✅ Воркер <b>{name}</b> добавлен. Он будет 🔴, пока на сервере не запустят "
            "<code>run_worker.py</code> с <code>WORKER_NAME={name}</code>."
        ),
        "ago.never": "никогда",
        "ago.seconds": "{n} с назад",
        "ago.minutes": "{n} мин назад",
        "ago.hours": "{n} ч назад",
        "ago.days": "{n} дн назад",
        "accounts.title": "📱 <b>Аккаунты</b> — стр. {page}/{pages}, всего {total}",
        "accounts.title.worker": "📱 <b>Аккаунты на {worker}</b> — стр. {page}/{pages}, всего {total}",
        "accounts.empty": "📱 Аккаунтов пока нет. Добавьте через «➕ Добавить аккаунт».",
        "account.card": ("📱 <b>{phone}</b>\n👤 {who}\n🖥 Воркер: {worker}\nСтатус: {status}{detail}"),
        "account.flood_until": "\n🐢 Flood wait до {until}",
        "account.starting": "⏳ запускается…",
        "account.stopping": "⏳ останавливается…",
        "account.timeout": "⌛ Воркер пока не сообщил результат — обновите карточку позже.",
        "account.btn.start": "▶️ Запустить",
        "account.btn.stop": "⏹ Остановить",
        "account.btn.restart": "🔄 Перезапустить",
        "account.btn.move": "🔀 Перенести",
        "account.btn.remove": "🗑 Удалить",
        "account.btn.when_back": "⏰ Запустить, когда вернётся",
        "account.unavailable": "⚠️ {reason}",
        "account.when_back": "⏰ Аккаунт {id} запустится, когда воркер {worker} вернётся.",
        "account.move.pick": "Куда перенести аккаунт {phone}? (только онлайн и включённые воркеры)",
        "account.move.none": "Нет других онлайн-воркеров для переноса.",
        "account.moved": "🔀 {message}",
        "account.remove.confirm": "Удалить аккаунт <b>{phone}</b>? Сессия будет стёрта.",
        "account.removed": "🗑 Аккаунт {phone} удалён, сессия стёрта.",
        "account.error": "⚠️ {error}",
        "account.stopped": "⏹ Аккаунт остановлен.",
        "st.running": "🟢 работает",
        "st.starting": "⏳ запускается",
        "st.stopping": "⏳ останавливается",
        "st.stopped": "⚪ остановлен",
        "st.login_pending": "🔑 ждёт входа",
        "st.error": "⚠️ ошибка",
        "st.unauthorized": "🚫 сессия отозвана",
        "st.banned": "⛔ забанен",
        "st.flood_wait": "🐢 flood wait",
        "st.lost": "❓ потерян",
        "st.unknown": "❔ неизвестно",
        "wizard.worker": "➕ <b>Новый аккаунт</b>\nШаг 1. Выберите воркер (только онлайн и включённые):",
        "wizard.no_workers": "Нет онлайн-воркеров. Запустите воркер и попробуйте снова.",
        "wizard.method": "Шаг 2. Как добавить аккаунт?",
        "wizard.method.login": "🔑 Войти по коду",
        "wizard.method.import": "📦 Импорт сессии",
        "wizard.phone": "Шаг 3. Номер телефона в международном формате, например <code>+79991234567</code>:",
        "wizard.api_id": "Шаг 4. API ID (число с my.telegram.org):",
        "wizard.api_hash": "Шаг 5. API hash (32 символа с my.telegram.org):",
        "wizard.code": (
            "Шаг 6. Telegram отправил код входа.\n"
            "❗ Введите его <b>через пробелы</b>, например <code>1 2 3 4 5</code>: "
            "код, пересланный в Telegram как есть, Telegram аннулирует."
        ),
        "wizard.password": "🔐 Включена двухэтапная проверка. Отправьте пароль — сообщение с ним будет сразу удалено.",
        "wizard.session": "Шаг 6. Пришлите строку сессии Telethon или файл <code>.session</code> документом.",
        "wizard.sending_code": "⏳ Запрашиваю код…",
        "wizard.checking": "⏳ Проверяю…",
        "wizard.retry": "❌ {error}\nПопробуйте ещё раз или /cancel.",
        "wizard.failed": "❌ {error}\nВход прерван. Начните заново: «➕ Добавить аккаунт».",
        "wizard.done": "✅ Аккаунт добавлен.",
        "wizard.expect_text": "Нужен текст. Попробуйте ещё раз или /cancel.",
        "wizard.file_too_big": "Файл слишком большой для сессии Telethon.",
        "cancelled": "Отменено.",
        "nothing_to_cancel": "Нечего отменять.",
        "unknown_button": "Эта кнопка устарела. Откройте меню заново: /start",
        "unknown_input": "Не понял. Откройте меню: /start",
        "summary": ("📊 <b>Сводка</b>\nВоркеры: 🟢 {online} · 🔴 {offline}{deactivated}\nАккаунты: {accounts}"),
        "summary.deactivated": " · ⏸ {n} отключено",
        "summary.no_accounts": "нет",
        "language.pick": "Выберите язык / Choose a language:",
        "language.set": "Язык: русский 🇷🇺",
        "alert.worker_offline": "🔴 Воркер <b>{name}</b> оффлайн{detail}",
        "alert.worker_online": "🟢 Воркер <b>{name}</b> снова онлайн{detail}",
        "alert.worker_offline.again": "🔴 Воркер <b>{name}</b> оффлайн{detail} — уже {repeats}-й раз за час",
        "alert.worker_online.again": "🟢 Воркер <b>{name}</b> снова онлайн{detail} — уже {repeats}-й раз за час",
        "alert.workers_offline": "🔴 Оффлайн сразу {n} воркеров: {names}",
        "alert.workers_online": "🟢 Снова онлайн {n} воркеров: {names}",
        "alert.account": "{icon} Аккаунт #{id}: {status}{detail}",
        "alert.accounts": "{icon} {n} аккаунтов: {status} (#{ids})",
        "unavailable": "⚠️ Сервис недоступен: {error}",
        "err.phone": "Неверный номер телефона. Нужен международный формат, например <code>+79991234567</code>.",
        "err.api_id": "API ID — это число с my.telegram.org, например <code>123456</code>.",
        "err.api_hash": "API hash — это 32 шестнадцатеричных символа с my.telegram.org.",
        "err.login_code": "Код — это 5 или 6 цифр. Введите его через пробелы, например <code>1 2 3 4 5</code>.",
        "err.invalid_code": "Неверный код. Введите его через пробелы, например <code>1 2 3 4 5</code>.",
        "err.code_expired": "Код истёк (или был переслан в Telegram как есть). Запросите новый.",
        "err.wrong_password": "Неверный пароль двухэтапной проверки.",
        "err.invalid_phone": "Telegram не принимает этот номер.",
        "err.banned": "Этот номер заблокирован в Telegram.",
        "err.api_id_invalid": "Telegram отклоняет эту пару API ID / API hash.",
        "err.flood_wait": "Telegram просит подождать перед новой попыткой.",
        "err.network": "Воркер не может связаться с Telegram.",
        "err.unknown_login": "Вход истёк или был отменён. Начните заново.",
        "err.timeout": "Воркер не ответил вовремя.",
        "err.worker_offline": "Воркер {worker} оффлайн.",
        "err.worker_deactivated": "Воркер {worker} отключён админом.",
        "err.session": "Сессия не подходит: {detail}",
        "err.proxy": "Неверный прокси: socks5://user:pass@host:port, http://host:port или mtproxy://secret@host:port.",
        "err.account_not_found": "Аккаунт {id} не найден.",
        "err.worker_not_found": "Воркер {name} не найден.",
        "err.worker_exists": "Воркер {name} уже есть.",
        "err.invalid_worker_name": "Имя воркера: латиница, цифры, <code>. _ -</code>, до 64 символов.",
        "err.invalid_address": "Адрес сервера: IP или имя хоста, например <code>10.0.0.5</code>.",
        "cmd.start": "Главное меню",
        "cmd.workers": "Воркеры",
        "cmd.accounts": "Аккаунты",
        "cmd.add": "Добавить аккаунт",
        "cmd.summary": "Сводка по флоту",
        "cmd.language": "Язык",
        "cmd.board": "Доска: статистика и жалобы",
        "cmd.cancel": "Отменить текущее действие",
    },
    "en": {
        "refused": "⛔ This bot is for administrators only.",
        "menu.title": "🛰 <b>Fleet control</b>\nChoose a section:",
        "menu.workers": "🖥 Workers",
        "menu.accounts": "📱 Accounts",
        "menu.add_account": "➕ Add account",
        "menu.summary": "📊 Fleet summary",
        "menu.language": "🌐 Language / Язык",
        "menu.board": "📋 Board",
        "board.off": "📋 The board is not connected to this bot.",
        "board.title.today": "📋 <b>Board — the last 24 hours</b>",
        "board.title.week": "📋 <b>Board — the last 7 days</b>",
        "board.stats": (
            "Ads: {ads_posted} posted · {ads_open} open now\n"
            "Invitations: {invites_sent} sent · {invites_accepted} accepted · {invites_declined} declined\n"
            "Accept rate: {accept_rate}\n"
            "Active chats: {chats_active}\n"
            "Reports: {reports_open} open · {reports_new} new"
        ),
        "board.by_day": "<b>By day</b> (ads · invitations · ✅ accepted · ❌ declined)",
        "board.day": "{day}: {ads} · {invites} · ✅ {accepted} · ❌ {declined}",
        "board.btn.today": "📅 Today",
        "board.btn.week": "📆 Week",
        "board.btn.reports": "🚩 Reports ({n})",
        "board.btn.board": "📋 Board",
        "board.btn.ban": "⛔ Ban",
        "board.btn.yes_ban": "⛔ Yes, ban",
        "board.btn.dismiss": "✅ Dismiss",
        "board.btn.hide": "🙈 Hide ad",
        "board.queue.empty": "🚩 No open reports.",
        "board.report.title": "🚩 <b>Report {n} of {total}</b> — {target} · {age}",
        "board.report.reported": "Reported: <code>{handle}</code>{banned}",
        "board.report.banned": " (already banned)",
        "board.report.reporter": "Reporter: <code>{handle}</code>",
        "board.report.reason": "Reason: {reason}",
        "board.report.no_reason": "none given",
        "board.report.ad": "Ad: <b>{title}</b>",
        "board.report.ad_text": "<b>Ad text:</b>",
        "board.report.invite_text": "<b>Invitation:</b>",
        "board.report.messages": "<b>Last messages in the chat:</b>",
        "board.report.no_messages": "<i>no messages kept</i>",
        "board.target.ad": "ad",
        "board.target.invite": "invitation",
        "board.target.chat": "chat",
        "board.ban.confirm": (
            "Ban <code>{handle}</code>? Their ads will be hidden, their chats ended, "
            "and every open report against them closed."
        ),
        "board.done.ban": "⛔ <code>{handle}</code> is banned.",
        "board.done.dismiss": "✅ Report dismissed.",
        "board.done.hide": "🙈 Ad «{title}» hidden.",
        "board.err.report_not_found": "Report not found.",
        "board.err.no_ad": "This report has no ad.",
        "board.err.report_closed": "Another moderator has already settled this report.",
        "board.err": "⚠️ {error}",
        "btn.back": "⬅️ Back",
        "btn.menu": "🏠 Menu",
        "btn.refresh": "🔄 Refresh",
        "btn.prev": "◀️",
        "btn.next": "▶️",
        "btn.cancel": "✖️ Cancel",
        "btn.yes_remove": "🗑 Yes, remove",
        "btn.add_worker": "➕ Add worker",
        "status.online": "🟢 Online",
        "status.offline": "🔴 Offline",
        "status.deactivated": "⏸ deactivated by an admin",
        "workers.title": "🖥 <b>Workers</b> — page {page}/{pages}, {total} in all",
        "workers.empty": "🖥 No workers yet. Start <code>run_worker.py</code> on a server or add a worker.",
        "workers.row": "{icon} {name} · {running}/{total}",
        "worker.card": (
            "🖥 <b>{name}</b> — {status}\n"
            "Address: <code>{address}</code>\n"
            "Last heartbeat: {heartbeat}\n"
            "Version: {version} · uptime: {uptime}\n"
            "Accounts: {running} running of {total}"
        ),
        "worker.rejected": "⚠️ Malformed messages dropped from its queue: {count}",
        "worker.btn.accounts": "📱 Accounts",
        "worker.btn.activate": "▶️ Activate",
        "worker.btn.deactivate": "⏸ Deactivate",
        "worker.btn.remove": "🗑 Remove",
        "worker.activated": "Worker {name} activated",
        "worker.deactivated": "Worker {name} deactivated: no accounts will be started there",
        "worker.remove.confirm": "Remove worker <b>{name}</b> from the list? This does not stop the server.",
        "worker.removed": "🗑 Worker {name} removed.",
        "worker.add.name": "Name of the new worker (letters, digits, <code>.</code>, <code>_</code>, <code>-</code>):",
        "worker.add.address": "Server address of worker <b>{name}</b> (IP or host name):",
        "worker.added": (
            "✅ Worker <b>{name}</b> added. It shows 🔴 until <code>run_worker.py</code> starts on the server "
            "with <code>WORKER_NAME={name}</code>."
        ),
        "ago.never": "never",
        "ago.seconds": "{n} s ago",
        "ago.minutes": "{n} min ago",
        "ago.hours": "{n} h ago",
        "ago.days": "{n} d ago",
        "accounts.title": "📱 <b>Accounts</b> — page {page}/{pages}, {total} in all",
        "accounts.title.worker": "📱 <b>Accounts on {worker}</b> — page {page}/{pages}, {total} in all",
        "accounts.empty": "📱 No accounts yet. Add one with «➕ Add account».",
        "account.card": ("📱 <b>{phone}</b>\n👤 {who}\n🖥 Worker: {worker}\nStatus: {status}{detail}"),
        "account.flood_until": "\n🐢 Flood wait until {until}",
        "account.starting": "⏳ starting…",
        "account.stopping": "⏳ stopping…",
        "account.timeout": "⌛ The worker has not reported the outcome yet — refresh the card later.",
        "account.btn.start": "▶️ Start",
        "account.btn.stop": "⏹ Stop",
        "account.btn.restart": "🔄 Restart",
        "account.btn.move": "🔀 Move",
        "account.btn.remove": "🗑 Remove",
        "account.btn.when_back": "⏰ Start when it is back",
        "account.unavailable": "⚠️ {reason}",
        "account.when_back": "⏰ Account {id} will start when worker {worker} is back.",
        "account.move.pick": "Move account {phone} to which worker? (online and active only)",
        "account.move.none": "No other online worker to move it to.",
        "account.moved": "🔀 {message}",
        "account.remove.confirm": "Remove account <b>{phone}</b>? Its session will be wiped.",
        "account.removed": "🗑 Account {phone} removed, its session wiped.",
        "account.error": "⚠️ {error}",
        "account.stopped": "⏹ Account stopped.",
        "st.running": "🟢 running",
        "st.starting": "⏳ starting",
        "st.stopping": "⏳ stopping",
        "st.stopped": "⚪ stopped",
        "st.login_pending": "🔑 waiting for login",
        "st.error": "⚠️ error",
        "st.unauthorized": "🚫 session revoked",
        "st.banned": "⛔ banned",
        "st.flood_wait": "🐢 flood wait",
        "st.lost": "❓ lost",
        "st.unknown": "❔ unknown",
        "wizard.worker": "➕ <b>New account</b>\nStep 1. Choose a worker (online and active only):",
        "wizard.no_workers": "No worker is online. Start one and try again.",
        "wizard.method": "Step 2. How do you want to add it?",
        "wizard.method.login": "🔑 Log in with a code",
        "wizard.method.import": "📦 Import a session",
        "wizard.phone": "Step 3. Phone number in international format, e.g. <code>+79991234567</code>:",
        "wizard.api_id": "Step 4. API ID (a number from my.telegram.org):",
        "wizard.api_hash": "Step 5. API hash (32 characters from my.telegram.org):",
        "wizard.code": (
            "Step 6. Telegram sent a login code.\n"
            "❗ Type it <b>with spaces</b>, like <code>1 2 3 4 5</code>: "
            "Telegram voids a code that is sent on in a message as is."
        ),
        "wizard.password": "🔐 Two-step verification is on. Send the password — the message will be deleted at once.",
        "wizard.session": "Step 6. Send the Telethon session string, or the <code>.session</code> file as a document.",
        "wizard.sending_code": "⏳ Requesting the code…",
        "wizard.checking": "⏳ Checking…",
        "wizard.retry": "❌ {error}\nTry again, or /cancel.",
        "wizard.failed": "❌ {error}\nThe login was stopped. Start again with «➕ Add account».",
        "wizard.done": "✅ Account added.",
        "wizard.expect_text": "Please send text. Try again, or /cancel.",
        "wizard.file_too_big": "The file is too large for a Telethon session.",
        "cancelled": "Cancelled.",
        "nothing_to_cancel": "Nothing to cancel.",
        "unknown_button": "This button is out of date. Open the menu again: /start",
        "unknown_input": "I did not understand that. Open the menu: /start",
        "summary": ("📊 <b>Fleet summary</b>\nWorkers: 🟢 {online} · 🔴 {offline}{deactivated}\nAccounts: {accounts}"),
        "summary.deactivated": " · ⏸ {n} deactivated",
        "summary.no_accounts": "none",
        "language.pick": "Choose a language / Выберите язык:",
        "language.set": "Language: English 🇬🇧",
        "alert.worker_offline": "🔴 Worker <b>{name}</b> is offline{detail}",
        "alert.worker_online": "🟢 Worker <b>{name}</b> is back online{detail}",
        "alert.worker_offline.again": "🔴 Worker <b>{name}</b> is offline{detail}, {repeats} times within the hour",
        "alert.worker_online.again": "🟢 Worker <b>{name}</b> is back online{detail}, {repeats} times within the hour",
        "alert.workers_offline": "🔴 {n} workers went offline at once: {names}",
        "alert.workers_online": "🟢 {n} workers are back online: {names}",
        "alert.account": "{icon} Account #{id}: {status}{detail}",
        "alert.accounts": "{icon} {n} accounts: {status} (#{ids})",
        "unavailable": "⚠️ Service unavailable: {error}",
        "err.phone": "Invalid phone number. Use international format, e.g. <code>+79991234567</code>.",
        "err.api_id": "The API ID is a number from my.telegram.org, e.g. <code>123456</code>.",
        "err.api_hash": "The API hash is 32 hexadecimal characters from my.telegram.org.",
        "err.login_code": "The code is 5 or 6 digits. Type it with spaces, like <code>1 2 3 4 5</code>.",
        "err.invalid_code": "Wrong code. Type it with spaces, like <code>1 2 3 4 5</code>.",
        "err.code_expired": "The code has expired (or was sent on through Telegram as is). Request a new one.",
        "err.wrong_password": "Wrong two-step verification password.",
        "err.invalid_phone": "Telegram does not accept this phone number.",
        "err.banned": "This phone number is banned by Telegram.",
        "err.api_id_invalid": "Telegram rejects this API ID / API hash pair.",
        "err.flood_wait": "Telegram asks to wait before trying again.",
        "err.network": "The worker cannot reach Telegram.",
        "err.unknown_login": "This login has expired or was cancelled. Start again.",
        "err.timeout": "The worker did not answer in time.",
        "err.worker_offline": "Worker {worker} is offline.",
        "err.worker_deactivated": "Worker {worker} is deactivated by an admin.",
        "err.session": "The session cannot be used: {detail}",
        "err.proxy": "Invalid proxy: socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port.",
        "err.account_not_found": "Account {id} not found.",
        "err.worker_not_found": "Worker {name} not found.",
        "err.worker_exists": "Worker {name} already exists.",
        "err.invalid_worker_name": "Worker names: letters, digits, <code>. _ -</code>, up to 64 characters.",
        "err.invalid_address": "Server address: an IP or a host name, e.g. <code>10.0.0.5</code>.",
        "cmd.start": "Main menu",
        "cmd.workers": "Workers",
        "cmd.accounts": "Accounts",
        "cmd.add": "Add an account",
        "cmd.summary": "Fleet summary",
        "cmd.language": "Language",
        "cmd.board": "Board: statistics and reports",
        "cmd.cancel": "Cancel the current action",
    },
}


def language_for(telegram_code: str | None) -> str:
    """The default language for an admin from their Telegram language code."""
    if not telegram_code:
        return DEFAULT_LANGUAGE
    base = telegram_code.split("-")[0].lower()
    return "ru" if base in RUSSIAN_READERS else "en"


def t(lang: str, key: str, **values: object) -> str:
    catalogue = TEXTS.get(lang) or TEXTS[DEFAULT_LANGUAGE]
    text = catalogue.get(key) or TEXTS[DEFAULT_LANGUAGE][key]
    return text.format(**values) if values else text


def has_text(lang: str, key: str) -> bool:
    return key in (TEXTS.get(lang) or TEXTS[DEFAULT_LANGUAGE])


def error_text(lang: str, error: BaseException) -> str:
    """An error in the admin's language when its code is in the catalogue, else its own (English) message."""
    from html import escape

    code = getattr(error, "code", None)
    if code and has_text(lang, f"err.{code}"):
        values = {key: escape(str(value)) for key, value in (getattr(error, "values", None) or {}).items()}
        try:
            return t(lang, f"err.{code}", **values)
        except (KeyError, IndexError):
            pass
    return escape(str(error))
