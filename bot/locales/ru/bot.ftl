## The admin bot's texts in Russian (the default language). Project Fluent syntax: https://projectfluent.org
## Ids are the keys handlers pass to `bot.texts.t` with dots as dashes (`account.card` is `account-card`).
## Counts select CLDR plural forms: [one] 1, 21, 101 · [few] 2-4, 22-24 · [many] 0, 5-20, 25-30, 11-14.
## HTML as Telegram's parse mode takes it; the values are escaped by the code that passes them.
## A leading space is written {" "} (Fluent trims the whitespace that starts a pattern).

refused = ⛔ Этот бот только для администраторов.

## Main menu

menu-title =
    🛰 <b>Управление флотом</b>
    Выберите раздел:
menu-sandbox = 🧪 <b>ПЕСОЧНИЦА</b>: демо-флот в песочнице Telegram, не настоящий Telegram
menu-workers = 🖥 Воркеры
menu-accounts = 📱 Аккаунты
menu-add_account = ➕ Добавить аккаунт
menu-summary = 📊 Сводка
# Bilingual on purpose: an admin who cannot read the current language still finds the switch.
menu-language = 🌐 Язык / Language
menu-board = 📋 Доска
menu-proxies = 🔌 Прокси
menu-admins = 👥 Админы
menu-audit = 📜 Журнал

## Board

board-off = 📋 Доска не подключена к этому боту.
board-title-today = 📋 <b>Доска — последние 24 часа</b>
board-title-week = 📋 <b>Доска — последние 7 дней</b>
board-stats =
    Объявления: размещено { $ads_posted } · открыто сейчас { $ads_open }
    Приглашения: отправлено { $invites_sent } · принято { $invites_accepted } · отклонено { $invites_declined }
    Доля принятых: { $accept_rate }
    Активные чаты: { $chats_active }
    Жалобы: открыто { $reports_open } · новых { $reports_new }
board-by_day = <b>По дням</b> (объявления · приглашения · ✅ принято · ❌ отклонено)
board-day = { $day }: { $ads } · { $invites } · ✅ { $accepted } · ❌ { $declined }
board-btn-today = 📅 Сегодня
board-btn-week = 📆 Неделя
board-btn-reports = 🚩 Жалобы ({ $n })
board-btn-board = 📋 Доска
board-btn-ban = ⛔ Забанить
board-btn-yes_ban = ⛔ Да, забанить
board-btn-dismiss = ✅ Отклонить жалобу
board-btn-hide = 🙈 Скрыть объявление
board-queue-empty = 🚩 Открытых жалоб нет.
board-report-title = 🚩 <b>Жалоба { $n } из { $total }</b> — { $target } · { $age }
board-report-reported = На кого: <code>{ $handle }</code>{ $banned }
board-report-banned = {" "}(уже забанен)
board-report-reporter = Кто пожаловался: <code>{ $handle }</code>{ $banned } · вес жалобы { $weight } · отклонено { $dismissed } { $dismissed ->
        [one] его жалоба
        [few] его жалобы
       *[other] его жалоб
    }
board-report-reason = Причина: { $reason }
board-report-no_reason = не указана
board-report-ad = Объявление: <b>{ $title }</b> · { $status } · { $reports } { $reports ->
        [one] жалоба
        [few] жалобы
       *[other] жалоб
    }
board-report-ad_text = <b>Текст объявления:</b>
board-report-invite_text = <b>Приглашение:</b>
board-report-messages = <b>Последние сообщения чата:</b>
board-report-no_messages = <i>сообщений не сохранилось</i>
board-target-ad = объявление
board-target-invite = приглашение
board-target-chat = чат
board-target-reporter = ложные жалобы
board-report-false_reports = Доска сама сообщает: у этого человека отклонено уже { $n } { $n ->
        [one] жалоба
        [few] жалобы
       *[other] жалоб
    }.
board-ad_status-open = открыто
board-ad_status-closed = закрыто автором
board-ad_status-reported = скрыто жалобами до проверки
board-ad_status-hidden = скрыто модератором
board-ad_status-expired = истекло
board-btn-hidden = 🙈 Скрытые объявления
board-btn-unhide = ↩️ Вернуть { $n }
board-btn-yes = ✅ Да
board-btn-ban_reporter = ⛔ Забанить жалобщика
board-btn-dismiss_reporter = 🧹 Отклонить все его жалобы
board-btn-restore = ♻️ Вернуть скрытое его жалобами
board-ban_reporter-confirm =
    Забанить <code>{ $handle }</code> за ложные жалобы? Его открытые жалобы ({ $reports }) будут отклонены, скрытые ими объявления ({ $ads }) вернутся.
    <b>Бан окончательный: разбанить нельзя.</b>
board-dismiss_reporter-confirm = Отклонить все открытые жалобы <code>{ $handle }</code> ({ $reports })? Объявления, скрытые только ими, вернутся.
board-restore-confirm = Вернуть объявления, скрытые жалобами <code>{ $handle }</code> ({ $ads }), и закрыть все жалобы на них?
board-done-ban_reporter = ⛔ Жалобщик забанен: отклонено жалоб — { $reports }, возвращено объявлений — { $ads }.
board-done-dismiss_reporter = 🧹 Отклонено жалоб — { $reports }, возвращено объявлений — { $ads }.
board-done-restore = ♻️ Возвращено объявлений — { $ads }, закрыто жалоб — { $reports }.
board-done-unhide = ↩️ Объявление «{ $title }» снова открыто.
board-hidden-title = 🙈 <b>Скрытые модераторами объявления</b> ({ $n })
board-hidden-none = Скрытых объявлений нет.
board-hidden-line = { $n }. <b>{ $title }</b> — автор <code>{ $handle }</code>
board-ban-confirm =
    Забанить <code>{ $handle }</code>? Его объявления скроются, чаты завершатся (собеседникам придёт уведомление), все открытые жалобы на него закроются.
    <b>Бан окончательный: разбанить нельзя.</b>
board-done-ban = ⛔ <code>{ $handle }</code> забанен.
board-done-dismiss = ✅ Жалоба отклонена.
board-done-hide = 🙈 Объявление «{ $title }» скрыто.
board-err-report_not_found = Жалоба не найдена.
board-err-no_ad = В этой жалобе нет объявления.
board-err-report_closed = Эту жалобу уже рассмотрел другой модератор.
board-err-report_closed_by_you = Вы уже рассмотрели эту жалобу.
board-err = ⚠️ { $error }

## Buttons

btn-back = ⬅️ Назад
btn-menu = 🏠 Меню
btn-refresh = 🔄 Обновить
btn-prev = ◀️
btn-next = ▶️
btn-cancel = ✖️ Отмена
btn-yes_remove = 🗑 Да, удалить
btn-add_worker = ➕ Добавить воркер

## Workers

status-online = 🟢 Онлайн
status-offline = 🔴 Оффлайн
status-deactivated = ⏸ отключён админом
workers-title = 🖥 <b>Воркеры</b> — стр. { $page }/{ $pages }, всего { $total }
workers-empty = 🖥 Воркеров пока нет. Запустите <code>run_worker.py</code> на сервере или добавьте воркер.
workers-row = { $icon } { $name } · { $running }/{ $total }
worker-card =
    🖥 <b>{ $name }</b> — { $status }
    Адрес: <code>{ $address }</code>
    Последний сигнал: { $heartbeat }
    Версия: { $version } · аптайм: { $uptime }
    Аккаунты: { $running ->
        [one] работает
       *[other] работают
    } { $running } из { $total }
worker-rejected = ⚠️ Отброшено битых сообщений из очереди: { $count }
worker-key = 🔑 Ключ: <code>{ $fingerprint }</code>
worker-key_untrusted = 🔑 ⚠️ Предъявлен ключ <code>{ $pending }</code> вместо закреплённого <code>{ $pinned }</code>: работы воркеру нет, пока владелец не доверится ключу (<code>run_cli.py workers trust { $name }</code>)
worker-btn-accounts = 📱 Аккаунты
worker-btn-activate = ▶️ Включить
worker-btn-deactivate = ⏸ Отключить
worker-btn-remove = 🗑 Удалить
worker-activated = Воркер { $name } включён
worker-deactivated = Воркер { $name } отключён: новые аккаунты на нём не запускаются
worker-remove-confirm = Удалить воркер <b>{ $name }</b> из списка? Это не останавливает сервер.
worker-removed = 🗑 Воркер { $name } удалён.
worker-add-name = Введите имя нового воркера (латиница, цифры, <code>.</code>, <code>_</code>, <code>-</code>):
worker-add-address = Адрес сервера воркера <b>{ $name }</b> (IP или имя хоста):
worker-added =
    ✅ Воркер <b>{ $name }</b> добавлен. Он будет 🔴, пока на сервере не запустят <code>run_worker.py</code> с <code>WORKER_NAME={ $name }</code>.
worker-login_own = 🔐 Свой логин Redis
worker-login_shared = 🔓 Общий логин Redis: кто завладеет этим сервером, достанет ключи и очереди всех воркеров
worker-btn-login = 🔐 Логин Redis
worker-btn-issue_login = 🔐 Выдать
worker-login-confirm = Выдать воркеру <b>{ $name }</b> свой логин Redis? С ним доступны только ключи и очередь этого воркера. Пароль показывается один раз и нигде не хранится.
worker-login-rotates = ⚠️ Свой логин у него уже есть: нынешний пароль сразу перестанет работать. Пропишите новые настройки на его сервере и перезапустите там воркер.
worker-login-issued =
    🔐 Логин Redis воркера <b>{ $name }</b> (пользователь <code>{ $user }</code>). Показывается только сейчас и нигде не хранится: скопируйте его и удалите это сообщение.

    <code>REDIS_URL={ $url }</code>

    <code>.env</code> для его сервера (<code>chmod 600</code>, <code>SECRET_KEY</code> не нужен):
    <pre>{ $env }</pre>
worker-login-missed = ⚠️ Не выдан на: { $nodes }. Выдайте заново, когда они вернутся, или скопируйте туда файл <code>aclfile</code> Redis.
worker-login-unsaved = ⚠️ У Redis нет файла <code>aclfile</code>: после перезапуска Redis логин пропадёт.

## Times: how long ago, how long

ago-never = никогда
ago-seconds = { $n } с назад
ago-minutes = { $n } мин назад
ago-hours = { $n } ч назад
ago-days = { $n } { $n ->
        [one] день
        [few] дня
       *[many] дней
    } назад
duration-days = { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    } { $hours } ч
duration-hours = { $hours } ч { $minutes } мин
duration-minutes = { $minutes } мин { $seconds } с

## Accounts

accounts-title = 📱 <b>Аккаунты</b> — стр. { $page }/{ $pages }, всего { $total }
accounts-title-worker = 📱 <b>Аккаунты на { $worker }</b> — стр. { $page }/{ $pages }, всего { $total }
accounts-empty = 📱 Аккаунтов пока нет. Добавьте через «➕ Добавить аккаунт».
account-card =
    📱 <b>{ $phone }</b>
    👤 { $who }
    🖥 Воркер: { $worker }
    Статус: { $status }{ $detail }
account-device = 📲 Устройство: { $model }, { $system }; приложение { $app }; язык { $language } (система { $system_lang })
account-flood_until = 🐢 Пауза из-за флуда до { $until }
account-password_on_file = 🔑 Облачный пароль: сохранён
account-password_none = 🔑 Облачный пароль: не сохранён
account-starting = ⏳ запускается…
account-stopping = ⏳ останавливается…
account-timeout = ⌛ Воркер пока не сообщил результат — обновите карточку позже.
account-btn-start = ▶️ Запустить
account-btn-stop = ⏹ Остановить
account-btn-restart = 🔄 Перезапустить
account-btn-move = 🔀 Перенести
account-btn-remove = 🗑 Удалить
account-btn-when_back = ⏰ Запустить, когда вернётся
account-unavailable = ⚠️ { $reason }
account-when_back = ⏰ Аккаунт { $id } запустится, когда воркер { $worker } вернётся.
account-move-pick = Куда перенести аккаунт { $phone }? (только онлайн и включённые воркеры)
account-move-none = Нет других онлайн-воркеров для переноса.
account-moved = 🔀 Аккаунт перенесён с воркера <b>{ $source }</b> на <b>{ $target }</b>.
account-moved-to = 🔀 Аккаунт перенесён на воркер <b>{ $target }</b>.
account-moved-starting = Там он уже запускается.
account-remove-confirm = Удалить аккаунт <b>{ $phone }</b>? Сессия будет стёрта.
account-removed = 🗑 Аккаунт { $phone } удалён, сессия стёрта.
account-error = ⚠️ { $error }
account-stopped = ⏹ Аккаунт остановлен.

## Account statuses

st-running = 🟢 работает
st-starting = ⏳ запускается
st-stopping = ⏳ останавливается
st-stopped = ⚪ остановлен
st-login_pending = 🔑 ждёт входа
st-error = ⚠️ ошибка
st-unauthorized = 🚫 сессия отозвана
st-banned = ⛔ забанен
st-flood_wait = 🐢 пауза из-за флуда
st-lost = ❓ потерян
st-unknown = ❔ неизвестно

## Details the workers and the backend report, by code (`common.details`): every code has a text here

detail-imported = сессия импортирована
detail-logged_in = вход выполнен
detail-stopped = остановлен
detail-restarting = перезапускается
detail-restarted = перезапущен
detail-restarted_pid = перезапущен, процесс { $pid }
detail-worker_stopped = воркер остановлен
detail-lease_taken = аккаунт перехватил другой воркер
detail-lease_elsewhere = аккаунт занят другим воркером
detail-not_running_here = не запущен на этом воркере
detail-parked_stopped = остановлен (ждал возобновления)
detail-connecting = подключается
detail-reconnecting = переподключается (попытка { $attempt })
detail-queued = в очереди
detail-connect_turn = ждёт очереди на подключение ({ $rate } в секунду)
detail-reconnect_turn = ждёт очереди на переподключение (попытка { $attempt }, { $rate } в секунду)
detail-starting = запускается
detail-already_running = уже запущен на этом воркере
detail-shutting_down = воркер завершает работу
detail-running_elsewhere = отказано: аккаунт работает на воркере { $worker }
detail-lease_unconfirmed = пока не запущен: ни одна реплика Redis не подтвердила его аренду вовремя (запуск повторится)
detail-worker_full = отказано: воркер { $worker } уже ведёт столько аккаунтов, сколько ему можно ({ $limit }, WORKER_MAX_ACCOUNTS)
detail-waiting_for_worker = ждёт, пока воркер { $worker } отпустит аккаунт
detail-session_not_authorized = сессия не авторизована (её отозвали или из неё вышли)
detail-not_authorized = нет авторизации
detail-auth_key_unregistered = сессию отозвали или из неё вышли (AUTH_KEY_UNREGISTERED)
detail-session_revoked = сессия отозвана (SESSION_REVOKED)
detail-session_expired = сессия истекла (SESSION_EXPIRED)
detail-auth_key_invalid = ключ авторизации недействителен (AUTH_KEY_INVALID)
detail-auth_key_duplicated =
    AUTH_KEY_DUPLICATED: сессию использовали из двух мест сразу; Telegram её отозвал, войдите заново
detail-user_banned = аккаунт забанен в Telegram (USER_DEACTIVATED_BAN)
detail-user_deactivated = аккаунт удалён или деактивирован (USER_DEACTIVATED)
detail-phone_banned = номер телефона заблокирован (PHONE_NUMBER_BANNED)
detail-flood = Telegram просит подождать { $seconds } с
detail-network = сеть: { $cause }
detail-retry = { $detail }; повтор { $attempt } через { $delay } с
detail-could_not_start = не удалось запустить: { $cause }
detail-telegram_error = ошибка Telegram { $code }{ $name }
detail-closed = сервер закрыл соединение
detail-invalid_packet = сервер ответил некорректным пакетом
detail-reset = соединение сброшено
detail-aborted = соединение прервано
detail-refused = в соединении отказано
detail-broken = соединение оборвалось
detail-timed_out = время ожидания истекло
detail-checksum = пришёл повреждённый пакет
detail-security = пакет не прошёл проверку безопасности
detail-unknown_key = сервер не знает этот ключ авторизации
detail-unassigned = не назначен воркеру
detail-worker_offline = воркер { $worker } оффлайн
detail-worker_offline_silent = воркер { $worker } оффлайн (молчит { $seconds } с)
detail-worker_silent = воркер { $worker } молчит { $seconds } с
detail-no_report = от воркера { $worker } ещё нет отчёта
detail-not_running_on = не запущен на воркере { $worker }
detail-no_heartbeat_yet = сигнала ещё не было
detail-no_heartbeat = нет сигнала { $seconds } с
detail-no_redis = нет связи с Redis { $seconds } с
detail-account_elsewhere = аккаунт работает на воркере { $worker }
detail-account_not_ready = статус аккаунта на этом воркере: { $status }
detail-account_not_ready_because = статус аккаунта на этом воркере: { $status } ({ $cause })
detail-invalid_parameters = неверные параметры: { $problems }
detail-photo_not_base64 = неверные параметры: фото не в кодировке <code>base64</code>
detail-secret_unreadable = не удалось расшифровать секрет: он повреждён или зашифрован другим SECRET_KEY
detail-unknown_constructor = сервер прислал ответ, который этот клиент не может прочитать (неизвестный конструктор: другой слой API?)
detail-worker_host = хост { $host }
detail-worker_address = адрес { $address }
detail-key = ключ { $fingerprint }
detail-key_changed = ключ { $presented } вместо закреплённого { $pinned }: работы не будет, пока ему не доверятся
detail-on_worker = на воркере { $worker }
detail-moved = { $before } → { $after }
detail-secrets_wiped = секреты стёрты
detail-exported_as = сессия выгружена в формате { $format }
detail-export_needs_user_id = для { $format } нужен Telegram-идентификатор (ID) пользователя, а флот узнаёт его при первом запуске аккаунта: запустите или проверьте его один раз
detail-export_exists_now = файл с таким именем появился тем временем; не заменён
detail-export_failed = не удалось записать: { $cause }
detail-status_change = { $status }: { $cause }
detail-status_is = { $status }
detail-username_taken = имя пользователя @{ $username } уже занято
detail-username_for_sale = имя пользователя @{ $username } уже занято (его можно только купить на <code>fragment.com</code>)
detail-first_name_refused = Telegram не принял имя (оно не может быть пустым)
detail-last_name_refused = Telegram не принял фамилию
detail-bio_too_long = описание слишком длинное для Telegram (70 символов без подписки Премиум)
detail-photo_dimensions = Telegram не принял размеры фото: нужно изображение <code>JPEG</code> или <code>PNG</code> от 160×160 пикселей
detail-photo_too_small = фото слишком маленькое: нужно изображение <code>JPEG</code> или <code>PNG</code> от 160×160 пикселей
detail-photo_unprocessable = Telegram не смог обработать фото: нужно изображение <code>JPEG</code> или <code>PNG</code> от 160×160 пикселей
detail-photo_format = Telegram не принял формат фото: нужно изображение <code>JPEG</code> или <code>PNG</code> от 160×160 пикселей
detail-photo_refused = Telegram не принял фото: нужно изображение <code>JPEG</code> или <code>PNG</code> от 160×160 пикселей
detail-photo_lost = фото не дошло до Telegram; попробуйте ещё раз
detail-photo_damaged = фото дошло до Telegram повреждённым; попробуйте ещё раз
detail-password_too_fresh = облачный пароль задан слишком недавно, Telegram пока не даёт его сменить; попробуйте { $when }
detail-session_too_fresh = сеанс флота слишком новый, Telegram пока не даёт сменить облачный пароль; попробуйте { $when }
detail-password_change_refused = Telegram не принял новые настройки облачного пароля; попробуйте ещё раз
detail-password_settings_changed = настройки облачного пароля тем временем изменились; попробуйте ещё раз
detail-password_changed_meanwhile = облачный пароль тем временем изменился; попробуйте ещё раз
detail-recovery_email_unconfirmed = Telegram просит сначала подтвердить почту для восстановления
detail-password_needed = Telegram просит сначала облачный пароль аккаунта
detail-session_not_found = этого сеанса уже нет
detail-telegram_refused = Telegram отклонил запрос ({ $name })
detail-telegram_refused_plain = Telegram отклонил запрос
detail-hint_is_password = подсказка не может совпадать с паролем
detail-field_not_text = поле «{ $field }» должно быть текстом
detail-first_name_empty = имя не может быть пустым
detail-partly_changed = { $cause } (уже изменено: { $changed })
detail-later = позже
detail-in_seconds = через { $seconds } с
detail-in_minutes = примерно через { $minutes } мин
detail-in_hours = примерно через { $hours } ч
detail-username_invalid = имя пользователя @{ $username } не подходит: 5–32 латинские буквы, цифры или подчёркивания, первая — буква
detail-wrong_password = текущий облачный пароль неверен
detail-current_password_needed = у аккаунта уже есть облачный пароль: чтобы сменить, укажите текущий
detail-password_empty = новый пароль не может быть пустым
detail-too_fresh_to_end = сеанс флота слишком новый: Telegram разрешает завершать другие сеансы только через 24 часа
detail-too_fresh_to_end_until = сеанс флота слишком новый: Telegram разрешит завершить другие сеансы с { $possible_at } (через 24 часа после входа)
detail-spambot_not_found = @SpamBot не найден на этом сервере Telegram
detail-spambot_refused = не удалось спросить @SpamBot: { $cause }
detail-spambot_silent = @SpamBot не ответил за { $seconds } с
detail-photo_not_image = это не изображение <code>JPEG</code> или <code>PNG</code>
detail-photo_too_big = фото больше { $mb } МБ
detail-worker_lost = воркер { $worker } пропал, не закончив операцию
detail-worker_deactivated = воркер { $worker } отключён админом: включите его или перенесите аккаунт
detail-op_worker_offline = воркер { $worker } оффлайн
detail-no_session = у аккаунта нет сессии: сначала войдите
detail-no_worker = аккаунт не закреплён ни за одним воркером
detail-op_timed_out = воркер не успел за { $seconds } с
detail-unknown_operation = операции { $name } нет
detail-operation_failed = { $operation }: { $cause }
detail-operation_outcome = { $operation } — { $status }: { $cause }
detail-operation_lost = { $operation }: { $cause }
detail-check_summary = { $summary }
detail-plugin_failed = { $plugin }: сбой: { $cause }
detail-plugin_blocked_loop = { $plugin } блокирует цикл событий: { $cause }
detail-plugin_unknown = неизвестный плагин: на воркере { $worker } его нет
detail-plugin_not_importable = его не удалось импортировать
detail-plugin_config_invalid = неверные настройки: { $problems }
detail-plugin_secret_unopened = секрет { $field } не открывается ключом этого воркера (запечатан для другого воркера)
detail-plugin_setup_timeout = <code>setup</code> не завершился за { $seconds } с
detail-plugin_setup_failed = ошибка в <code>setup</code>: { $cause }
detail-plugin_blocked = заблокировал цикл событий на { $seconds } с
detail-plugin_still_blocked = заблокировал цикл событий на { $seconds } с (всё ещё)
detail-plugin_event = { $plugin }: { $kind }: { $text }
detail-plugin_name = { $plugin }
detail-verdict_worse = { $before } → { $after }
detail-text = { $text }
detail-proxy_added = { $proxy } в группе { $group }
detail-proxy_removed = { $proxy }
detail-proxy_set = прокси { $old } → { $new }
detail-proxy_none = нет
detail-proxy_reassigned = прокси #{ $removed } ({ $removed_proxy }) удалён: перенесён на #{ $to } ({ $to_proxy })
detail-proxy_dead = проверок подряд не прошло: { $failures } ({ $error }); за ним аккаунтов: { $accounts }
detail-proxy_back = проверки снова проходят ({ $ms } мс)
detail-proxy_failover = прокси #{ $dead } ({ $dead_proxy }) мёртв: перенесён на #{ $to } ({ $to_proxy })
detail-proxy_no_spare = в группе { $group } нет живого прокси со свободными местами: аккаунтов остаётся за ним: { $accounts }
detail-proxy_stuck = прокси #{ $dead } ({ $dead_proxy }) мёртв, а в группе { $group } нет живого прокси со свободными местами: аккаунт остаётся на нём
detail-probe_refused = прокси отклонил соединение
detail-probe_timed_out = нет ответа вовремя
detail-probe_auth_failed = прокси не принял логин и пароль
detail-probe_handshake = прокси оборвал соединение при согласовании (неверный логин или пароль?)
detail-probe_proxy_refused = прокси не смог соединиться с дата-центром
detail-probe_unreachable = адрес прокси недоступен
detail-probe_bad_reply = ответ через прокси пришёл не от Telegram
detail-probe_unreadable = воркер не может прочитать адрес прокси
detail-probe_error = проверка не удалась

## The add-account wizard

wizard-worker =
    ➕ <b>Новый аккаунт</b>
    Шаг 1. Выберите воркер (только онлайн и включённые):
wizard-no_workers = Нет онлайн-воркеров. Запустите воркер и попробуйте снова.
wizard-method = Шаг 2. Как добавить аккаунт?
wizard-method-login = 🔑 Войти по коду
wizard-method-import = 📦 Импорт сессии
wizard-phone = Шаг 3. Номер телефона в международном формате, например <code>+79991234567</code>:
wizard-api_id = Шаг 4. API ID (число с my.telegram.org):
wizard-api_hash = Шаг 5. API hash (32 символа с my.telegram.org):
wizard-pool_app = Шаги 4–5 пропущены: аккаунт получит API-приложение из пула.
wizard-code =
    Шаг 6. Telegram отправил код входа.
    ❗ Введите его <b>через пробелы</b>, например <code>1 2 3 4 5</code>: код, пересланный в Telegram как есть, Telegram аннулирует.
wizard-password = 🔐 Включена двухэтапная проверка. Отправьте пароль — сообщение с ним будет сразу удалено.
wizard-session =
    Шаг 6. Пришлите строку сессии (Telethon или Pyrogram) или документ: файл <code>.session</code> (Telethon или Pyrogram), <code>.txt</code> со строками сессий или <code>.zip</code> с папкой <code>tdata</code> десктопного Telegram.
wizard-passcode = 🔐 tdata защищена локальным код-паролем. Отправьте его — сообщение будет сразу удалено.
wizard-phones = В файле { $count } { $count ->
        [one] аккаунт
        [few] аккаунта
       *[other] аккаунтов
    } без номера телефона. Пришлите { $count ->
        [one] его номер
       *[other] их номера, по одному в строке, в этом порядке
    }:
wizard-phone_line = • { $file } — пользователь Telegram { $user }
wizard-report = Импортировано { $imported } из { $total }:
wizard-report_ok = ✅ { $file } → аккаунт #{ $id } ({ $phone })
wizard-report_failed = ❌ { $file }: { $error }
wizard-sending_code = ⏳ Запрашиваю код…
wizard-checking = ⏳ Проверяю…
wizard-retry =
    ❌ { $error }
    Попробуйте ещё раз или /cancel.
wizard-failed =
    ❌ { $error }
    Вход прерван. Начните заново: «➕ Добавить аккаунт».
wizard-done = ✅ Аккаунт добавлен.
wizard-expect_text = Нужен текст. Попробуйте ещё раз или /cancel.
wizard-file_too_big = Файл слишком большой для сессии (<code>.zip</code> — не больше { $mb } МБ).
cancelled = Отменено.
nothing_to_cancel = Нечего отменять.
unknown_button = Эта кнопка устарела. Откройте меню заново: /start
unknown_input = Не понял. Откройте меню: /start

## Fleet summary

summary =
    📊 <b>Сводка</b>
    Воркеры: 🟢 { $online } · 🔴 { $offline }{ $deactivated }
    Аккаунты: { $accounts }
summary-deactivated = {" "}· ⏸ { $n } { $n ->
        [one] отключён
        [few] отключены
       *[many] отключено
    }
summary-no_accounts = нет

## Language

# Bilingual on purpose, like the menu's button.
language-pick = Выберите язык / Choose a language:
language-set = Язык: русский 🇷🇺

## Alerts

alert-worker_offline = 🔴 Воркер <b>{ $name }</b> оффлайн{ $detail }
alert-worker_online = 🟢 Воркер <b>{ $name }</b> снова онлайн{ $detail }
alert-worker_key_changed = 🔑 Воркер <b>{ $name }</b> предъявил другой ключ{ $detail }. Если его переустановили вы: <code>run_cli.py workers trust { $name }</code>
alert-worker_offline-again = 🔴 Воркер <b>{ $name }</b> оффлайн{ $detail } — уже { $repeats }-й раз за час
alert-worker_online-again = 🟢 Воркер <b>{ $name }</b> снова онлайн{ $detail } — уже { $repeats }-й раз за час
alert-workers_offline = 🔴 Оффлайн сразу { $n } { $n ->
        [one] воркер
        [few] воркера
       *[many] воркеров
    }: { $names }
alert-workers_online = 🟢 Снова онлайн { $n } { $n ->
        [one] воркер
        [few] воркера
       *[many] воркеров
    }: { $names }
alert-board_reports = 🚩 На доске { $n } { $n ->
        [one] новая жалоба
        [few] новые жалобы
       *[many] новых жалоб
    }: «📋 Доска» → «Жалобы».
alert-account = { $icon } Аккаунт #{ $id }: { $status }{ $detail }
alert-proxy_dead = 🔴 Прокси #{ $id } мёртв{ $detail }
alert-proxy_alive = 🟢 Прокси #{ $id } снова работает{ $detail }
alert-proxy_no_spare = ⚠️ Прокси #{ $id }: его аккаунтам некуда переехать{ $detail }
alert-accounts = { $icon } { $n } { $n ->
        [one] аккаунт
        [few] аккаунта
       *[many] аккаунтов
    }: { $status } (#{ $ids })

## Errors, by code (`common.errors`): every code has a text here

unavailable = ⚠️ Сервис недоступен: { $error }
internal_error = внутренняя ошибка
err-proxy_not_found = Прокси #{ $id } нет в пуле.
err-proxy_in_use = За прокси #{ $id } ещё закреплены аккаунты ({ $count }): сначала перенесите их на другой прокси его группы.
err-proxy_full = За прокси #{ $id } уже столько аккаунтов, сколько позволяет его лимит ({ $cap }).
err-proxy_dead = Прокси #{ $id } мёртв: выберите живой.
err-proxy_group_full = В группе { $group } нет не мёртвого прокси, на который поместятся ещё аккаунты ({ $count }).
err-proxy_group = Группа прокси — от 1 до 64 латинских букв, цифр, точек, дефисов или подчёркиваний.
err-proxy_no_worker = Нет ни одного воркера в сети, чтобы проверить прокси.
err-phone = Неверный номер телефона. Нужен международный формат, например <code>+79991234567</code>.
err-api_id = API ID — это число с my.telegram.org, например <code>123456</code>.
err-api_hash = API hash — это 32 шестнадцатеричных символа с my.telegram.org.
err-login_code = Код — это 5 или 6 цифр. Введите его через пробелы, например <code>1 2 3 4 5</code>.
err-invalid_code = Неверный код. Введите его через пробелы, например <code>1 2 3 4 5</code>.
err-code_expired = Код истёк (или был переслан в Telegram как есть). Запросите новый.
err-wrong_password = Неверный пароль двухэтапной проверки.
err-invalid_phone = Telegram не принимает этот номер.
err-banned = Этот номер заблокирован в Telegram.
err-api_id_invalid = Telegram отклоняет эту пару API ID / API hash.
err-flood_wait = Telegram просит подождать перед новой попыткой.
err-network = Воркер не может связаться с Telegram.
err-unknown_login = Вход истёк или был отменён. Начните заново.
err-timeout = Воркер не ответил вовремя.
err-no_answer = Воркер { $worker } не ответил вовремя.
err-worker_offline = Воркер { $worker } оффлайн.
err-worker_deactivated = Воркер { $worker } отключён админом.
err-worker_still_online = Воркер { $name } онлайн: сначала остановите его, потом удаляйте.
err-worker_has_accounts = На воркере { $name } ещё есть аккаунты: сначала перенесите или удалите их.
err-worker_key_untrusted = Воркер { $worker } предъявил не тот ключ, что закреплён: работы ему не будет, пока владелец не доверится ключу (<code>run_cli.py workers trust { $worker }</code>).
err-worker_key_not_pending = Воркер { $name } не предъявлял нового ключа.
err-acl_not_permitted = Redis ({ $node }) не даёт панели управления выполнять команды <code>ACL</code>, поэтому свой логин воркеру не выдать. Дайте панели пользователя Redis, которому это можно.
err-acl_unsupported = Redis ({ $node }) не может выдать воркеру свой логин: нужен Redis 7 или новее.
err-secret_key_mismatch = SECRET_KEY этого бота не тот, что у остального флота: то, что он сохраняет, ни бэкенд, ни воркеры прочитать не смогут.
err-worker_key_untrusted_start_later = Воркер { $worker } предъявил не тот ключ, что закреплён; аккаунт можно будет запустить, когда ключу доверятся.
err-session = Сессия не подходит: { $detail }
err-proxy =
    Неверный прокси: <code>socks5://user:pass@host:port</code>, <code>http://host:port</code> или <code>mtproxy://secret@host:port</code>.
err-account_not_found = Аккаунт { $id } не найден.
err-account_exists = Аккаунт с этим номером уже есть (#{ $id }).
err-worker_not_found = Воркер { $name } не найден.
err-worker_exists = Воркер { $name } уже есть.
err-invalid_worker_name = Имя воркера: латиница, цифры, <code>. _ -</code>, до 64 символов.
err-invalid_address = Адрес сервера: IP или имя хоста, например <code>10.0.0.5</code>.
err-error = { $message }
err-invalid = { $message }
err-passcode = Папка tdata (Telegram для компьютера) защищена локальным код-паролем: пришлите его (сообщение удалится сразу после прочтения).
err-worker_offline_start_later = Воркер { $worker } оффлайн. Запустите его или попросите запустить аккаунт, когда воркер вернётся.
err-worker_deactivated_start_later = Воркер { $worker } отключён админом. Включите его или попросите запустить аккаунт, когда воркер вернётся.
err-accounts_on_deactivated = Часть аккаунтов на отключённых воркерах ({ $accounts }): сначала включите воркеры или перенесите аккаунты.
err-worker_rejected_call = Воркер { $worker } отклонил запрос, не выполнив его ({ $reason }).
err-no_answer_will_retry = Воркер { $worker } не ответил вовремя. Аккаунт остаётся отмеченным к запуску; бэкенд повторит попытку.
err-no_answer_stays_stopped = Воркер { $worker } не ответил вовремя. Аккаунт остаётся отмеченным к остановке.
err-no_answer_not_removed = Воркер { $worker } не ответил вовремя. Аккаунт не удалён: он может ещё работать.
err-start_refused = Воркер { $worker } не запустил аккаунт #{ $id }: { $problem }
err-restart_refused = Воркер { $worker } не перезапустил аккаунт #{ $id }: { $problem }
err-accounts_not_found = Нет аккаунтов с номерами { $ids }.
err-account_busy = Аккаунт #{ $id } с этим номером уже есть, его статус: { $status }.
err-session_in_fleet = Эта сессия уже есть в парке — аккаунт #{ $id } ({ $phone }): одна сессия не может работать в двух местах (Telegram её отзовёт).
err-app_not_found = Приложения #{ $id } нет в пуле.
err-app_not_in_pool = API ID { $api_id } нет в пуле приложений: укажите и его API hash или добавьте его в пул.
err-app_exists = API ID { $api_id } уже в пуле (приложение #{ $id }).
err-app_in_use = Приложением #{ $id } ещё пользуются аккаунты ({ $count }): сначала удалите их.
err-app_full = У API ID { $api_id } уже столько аккаунтов, сколько позволяет его лимит ({ $cap }).
err-app_hash_mismatch = Этот API hash не совпадает с тем, что хранится в пуле для API ID { $api_id }.
err-app_pool_empty = Пул приложений пуст: добавьте API-приложение (<code>run_cli.py apps add</code>) или укажите API ID и hash.
err-app_pool_exhausted = Все API-приложения пула ({ $count }) заполнены до лимита: добавьте приложение или поднимите лимит.
err-already_on_worker = Аккаунт #{ $id } уже на воркере { $worker }.
err-no_session = У аккаунта #{ $id } нет сессии: сначала войдите.
err-no_worker = Аккаунт #{ $id } не закреплён за воркером: сначала перенесите его на воркер.
err-phone_required = Нужен номер телефона импортируемого аккаунта.
err-phone_not_found = В файле сессии нет номера телефона: назовите файл по номеру (<code>79991234567.session</code>) или добавьте <code>.json</code> с полем <code>"phone"</code>.
err-session_missing = Пришлите строку сессии или файл <code>.session</code>.
err-session_unusable = Воркер { $worker } не может использовать эту сессию: { $problem }
err-session_bot = Это сессия бота, а парк работает с пользовательскими аккаунтами. Ничего не импортировано.
err-session_unreadable =
    «{ $name }» повреждён или не является сессией: пришлите файл <code>.session</code> Telethon или Pyrogram, <code>.txt</code> со строкой сессии или <code>.zip</code> с папкой <code>tdata</code>. Ничего не импортировано.
err-passcode_required = tdata защищена локальным код-паролем.
err-passcode_wrong = Неверный локальный код-пароль. Пришлите его ещё раз.
err-phones_count = Пришлите { $count } { $count ->
        [one] номер
        [few] номера
       *[other] номеров
    } телефона, по одному в строке.
err-device = Неверные данные устройства: { $problem }
err-invalid_input = Воркер не принял данные: { $problem }
err-invalid_params = Неверные параметры: { $problems }
err-nothing_to_change = Нечего менять: укажите имя, фамилию, описание, имя пользователя или фото.
err-no_options = У этой операции нет параметров.
err-password_empty = Новый облачный пароль не может быть пустым.
err-photo_invalid = Это не изображение <code>JPEG</code> или <code>PNG</code>.
err-photo_too_big = Фото больше { $mb } МБ.
err-unknown_operation = Операции { $name } нет. Есть: { $known }.
err-invalid_config = Настройки не подходят плагину { $plugin }: { $problems }
err-config_too_large = Настройки больше { $kb } КБ.
err-config_not_json = Настройки — не <code>JSON</code> ({ $problem }).
err-config_not_object = Настройки должны быть объектом <code>JSON</code>.
err-unknown_plugin = Плагина { $name } нет. Есть: { $known }.
err-plugin_broken = Плагин { $name } не загружается: { $problem }
err-plugin_secret_not_stored = У аккаунта { $id } нет сохранённого значения { $field } (<code>***</code> оставляет сохранённое): укажите само значение.
err-plugin_secret_unreadable = Сохранённые секретные настройки аккаунта { $id } не открываются этим <code>SECRET_KEY</code>: укажите сами значения.
err-plugin_secret_no_key = У этого процесса нет <code>SECRET_KEY</code>, а он нужен для секретных настроек плагинов.

## Account operations (the card, a worker's accounts page), plugins, and their alerts

account-btn-check = 🩺 Проверить
account-btn-sessions = 📱 Сеансы
account-btn-end_sessions = ✂️ Завершить другие
account-btn-two_fa = 🔐 Пароль
account-btn-profile = 👤 Профиль
account-btn-plugins = 🧩 Плагины
account-btn-export = 📤 Выгрузить

# Выгрузка с карточки аккаунта: сессия — действующий ключ доступа
export-pick = 📤 Выгрузка сессии <b>{ $phone }</b>: выберите формат.

    ⚠️ Файл — действующий ключ доступа: кто им владеет, тот может пользоваться аккаунтом.
export-confirm = Отправить сессию <b>{ $phone }</b> в формате { $format } в этот чат?

    ⚠️ Это действующий ключ доступа: любой, кто получит файл, сможет пользоваться аккаунтом. Сохраните его в надёжном месте и удалите из чата.
btn-yes_export = 📤 Да, отправить
export-caption = ⚠️ Действующий ключ доступа: сессия { $phone } ({ $format }). Любой, у кого есть этот файл, может пользоваться аккаунтом: храните его в тайне и удалите из этого чата.
export-sidecar_caption = Его файл-спутник для импорта: телефон, API ID и hash, устройство, прокси.
export-sent = 📤 Сессия отправлена в формате { $format }. Удалите файлы из чата, когда сохраните их.
export-fmt-ts = Строка Telethon (текстовый файл)
export-fmt-tf = Файл Telethon
export-fmt-ps = Строка Pyrogram (текстовый файл)
export-fmt-pf = Файл Pyrogram
export-fmt-td = Папка tdata (архив)
account-btn-password = 🔑 Задать или сменить пароль
accounts-btn-check_all = 🩺 Проверить все
accounts-btn-end_sessions_all = ✂️ Завершить другие сеансы у всех
btn-yes_end = ✂️ Да, завершить
btn-no_password = 🆓 Пароля нет
btn-default_config = 📄 По умолчанию ({ $value })

check-never = 🩺 Ещё не проверялся
check-line = 🩺 Проверка: { $verdict } · { $ago }{ $details }
check-spam = спам: { $status }
check-spam-free = ограничений нет
check-spam-limited = есть ограничения
check-spam-unknown = неизвестно
check-spam-unknown_because = неизвестно ({ $reason })
check-restricted = ограничен Telegram: { $reason }
check-other_sessions = { $n } { $n ->
        [one] другой сеанс
        [few] других сеанса
       *[many] других сеансов
    }
check-premium = Премиум
verdict-ok = ✅ в порядке
verdict-limited = ⚠️ ограничен (спам)
verdict-restricted = 🔒 ограничен Telegram
verdict-unauthorized = 🚫 сессия отозвана
verdict-banned = ⛔ заблокирован

plugins-line = 🧩 Плагины: { $plugins }
plugin-state-running = 🟢 { $name }
plugin-state-failing = ⚠️ { $name } (сбоит: { $error })
plugin-state-blocked = 🐢 { $name } (блокирует цикл событий: { $error })
plugin-state-error = ❌ { $name } (не загрузился: { $error })
plugin-state-stopped = ⚪ { $name } (не запущен)

op-name-check = Проверка
op-name-sessions = Сеансы
op-name-end_sessions = Завершение других сеансов
op-name-two_fa = Облачный пароль
op-name-profile = Профиль
op-running = ⏳ { $op }…
op-timeout = ⌛ { $op }: воркер ещё не закончил — обновите карточку позже.
op-flood = 🐢 { $op }: Telegram попросил подождать { $seconds } с, операция продолжится сама.
op-failed = ❌ { $op }: { $error }
op-lost = ❓ { $op }: { $error }
op-more = … и ещё { $n }
op-done-check = 🩺 Проверка: { $verdict }{ $details }
op-done-sessions = 📱 Других сеансов: { $n }
op-done-no_sessions = 📱 Других сеансов нет.
op-session = • { $device } — { $app } · { $place } · { $active }
op-done-ended = ✂️ Завершено других сеансов: { $n }
op-done-nothing_to_end = ✂️ Других сеансов нет — завершать нечего.
op-done-password_set = 🔐 Облачный пароль установлен.
op-done-no_password = 🔐 Облачного пароля нет.
op-done-password_changed = 🔐 Облачный пароль изменён.
op-done-profile = 👤 Профиль изменён: { $fields }
op-done-profile_same = 👤 В профиле ничего не изменилось.
op-end_sessions-confirm = Завершить все другие сеансы аккаунта <b>{ $phone }</b>? Останется только сеанс флота.

password-current =
    🔐 Пришлите <b>текущий</b> облачный пароль аккаунта { $phone }. Сообщение будет удалено сразу, как только бот его прочтёт.
    Пароля ещё нет — нажмите «Пароля нет».
password-new = 🔐 Пришлите <b>новый</b> облачный пароль для { $phone }. Сообщение будет удалено сразу.
password-repeat = 🔐 Пришлите новый пароль для { $phone } <b>ещё раз</b>.
password-mismatch = ❌ Пароли не совпали. Пришлите новый пароль для { $phone } заново.

profile-pick = 👤 Что изменить в профиле { $phone }?
profile-btn-first_name = Имя
profile-btn-last_name = Фамилия
profile-btn-bio = О себе
profile-btn-username = Имя пользователя
profile-btn-photo = 🖼 Фото
profile-field-first_name = имя
profile-field-last_name = фамилия
profile-field-bio = «о себе»
profile-field-username = имя пользователя
profile-field-photo = фото
profile-ask-first_name = 👤 Пришлите новое имя для { $phone }.
profile-ask-last_name = 👤 Пришлите новую фамилию для { $phone } (<code>-</code> — убрать).
profile-ask-bio = 👤 Пришлите новый текст «о себе» для { $phone }, до 70 символов (<code>-</code> — убрать).
profile-ask-username = 👤 Пришлите новое имя пользователя для { $phone }: 5–32 латинские буквы, цифры или подчёркивания (<code>-</code> — убрать).
profile-ask-photo = 🖼 Пришлите новое фото профиля для { $phone } — фотографией или файлом (<code>JPEG</code> или <code>PNG</code>).
profile-expect_photo = Пришлите фото — фотографией или файлом. Или /cancel.

plugins-title = 🧩 <b>Плагины</b> аккаунта { $phone }
plugins-none = На этом сервере нет ни одного плагина.
plugins-hint = Нажмите на плагин, чтобы включить или выключить его.
plugins-broken = не может работать: { $error }
plugins-missing = на этом сервере его нет
plugins-gone = Этого плагина больше нет на сервере.
plugins-enabled = ✅ Плагин <b>{ $name }</b> включён.
plugins-disabled = ⏹ Плагин <b>{ $name }</b> выключен.
plugins-config-ask = 🧩 Пришлите настройки плагина <b>{ $name }</b> для { $phone } — объект <code>JSON</code>.
plugins-config-fields = Поля: { $fields } (* — обязательные)

batch-header = 🖥 <b>{ $worker }</b>
batch-progress = { $op }: готово { $done }/{ $total } · ✅ { $ok } · ⚠️ { $warn } · ❌ { $bad }
batch-waiting = 🐢 Ждут по просьбе Telegram: { $n } (продолжат сами)
batch-line = { $icon } { $phone }: { $text }
batch-finished = ✅ Готово.
batch-timeout = ⌛ Закончили не все — остальные результаты появятся в карточках аккаунтов.
batch-end_sessions-confirm = ✂️ Завершить все другие сеансы у { $count } { $count ->
        [one] аккаунта
       *[other] аккаунтов
    } на воркере <b>{ $worker }</b>? Останутся только сеансы флота.
batch-check-confirm = 🩺 Проверить { $count } { $count ->
        [one] аккаунт
        [few] аккаунта
       *[many] аккаунтов
    } на воркере <b>{ $worker }</b>? Каждый аккаунт один раз спросит Telegram и @SpamBot.
btn-yes_check = 🩺 Да, проверить

alert-verdict_worse = ⚠️ Аккаунт { $account }: проверка хуже прежней: { $before } → { $after }
alert-verdicts_worse = ⚠️ Проверка хуже прежней у { $n } { $n ->
        [one] аккаунта
       *[other] аккаунтов
    } (#{ $ids })
alert-plugin = 🔔 { $plugin } · { $account }: { $text }
alert-plugin_more = 🔔 И ещё сообщений от плагинов: { $n }
alert-plugin_error = ❌ Плагин <b>{ $plugin }</b> сбоит на аккаунте { $account }: { $error }
alert-plugin_blocked = 🐢 Плагин <b>{ $plugin }</b> блокирует цикл событий аккаунта { $account }: { $error }
alert-plugin_errors = ❌ Плагины сбоят на { $n } { $n ->
        [one] аккаунте
       *[other] аккаунтах
    }: { $items }

err-no_accounts = Нет подходящих аккаунтов.
err-export_out = Папку выгрузки { $path } нельзя использовать.
err-export_exists = Файлы, которые нужно записать, уже есть ({ $count }), например { $path }.
err-export_skipped = Аккаунт #{ $id } не выгружен: { $reason }.

## Proxies: the pool's list, a proxy's card, checks and removal

proxies-title = 🔌 <b>Прокси</b> — стр. { $page }/{ $pages }, всего { $total }
proxies-empty =
    🔌 В пуле пока нет прокси. Добавьте их из консоли, например:
    <code>python run_cli.py proxies add socks5://user:pass@host:port --group eu</code>
    Группа — регион: при смерти прокси его аккаунты переезжают только на прокси той же группы.
proxies-row =
    { $state } <b>#{ $id }</b> <code>{ $proxy }</code>
    группа { $group } · { $latency } · аккаунты { $load } · проверка: { $checked }
proxies-btn-check_all = 🔎 Проверить все
proxies-checking = ⏳ Проверяю все прокси ({ $count }) через воркеры…
proxies-checked = 🔎 Проверено прокси: { $total } — прошли { $ok }, не прошли { $failed }.
proxy-state-alive = 🟢 работает
proxy-state-slow = 🟡 медленный
proxy-state-dead = 🔴 мёртв
proxy-state-unknown = ⚪ не проверен
proxy-latency = { $ms } мс
proxy-load = { $accounts }/{ $cap }
proxy-load-uncapped = { $accounts }/∞
proxy-card =
    🔌 <b>Прокси #{ $id }</b> — { $state }
    Адрес: <code>{ $proxy }</code>
    Группа: { $group }
    Аккаунты: { $load }
    Задержка: { $latency }
    Последняя проверка: { $checked }
proxy-last_error = Последняя ошибка: { $error } (подряд: { $failures })
proxy-events = <b>Последние события:</b>
proxy-event = • { $when } — { $kind }{ $detail }{ $count ->
        [1] {""}
       *[other] {" "}(×{ $count })
    }
proxy-event-added = добавлен
proxy-event-removed = удалён
proxy-event-dead = 🔴 мёртв
proxy-event-alive = 🟢 снова работает
proxy-event-no_spare = ⚠️ аккаунтам некуда переехать
proxy-btn-check = 🔎 Проверить
proxy-btn-remove = 🗑 Удалить
proxy-btn-reassign = 🚚 Удалить и перенести аккаунты ({ $count })
proxy-checking = ⏳ Проверяю прокси: воркер соединяется через него…
proxy-check-ok = ✅ Проверка прошла: { $latency } (воркер { $worker }).
proxy-check-failed = ❌ Проверка не прошла: { $error } (воркер { $worker }).
proxy-remove-confirm = Удалить прокси #{ $id } <code>{ $proxy }</code> из пула?
proxy-reassign-confirm =
    Удалить прокси #{ $id } <code>{ $proxy }</code> и перенести его аккаунты ({ $count }) на другие прокси группы { $group }?
    Работающие аккаунты перезапустятся на новом прокси.
proxy-removed = 🗑 Прокси #{ $id } удалён.
proxy-moved = Перенесено аккаунтов: { $count }.
proxy-moved-line = • аккаунт #{ $account } → { $after }

## Bot commands (Telegram's command menu)

cmd-start = Главное меню
cmd-workers = Воркеры
cmd-accounts = Аккаунты
cmd-add = Добавить аккаунт
cmd-proxies = Прокси
cmd-summary = Сводка по флоту
cmd-language = Язык
cmd-board = Доска: статистика и жалобы
cmd-cancel = Отменить текущее действие
cmd-admins = Админы и их роли
cmd-audit = Журнал действий
cmd-mute = Выключить оповещения на время

## Roles: who may do what

role-refused = ⛔ Вашей роли это недоступно.
role-owner = Владелец
role-operator = Оператор
role-viewer = Наблюдатель
role-moderator = Модератор
role-shell = командная строка
role-system = система
role-owner-about = всё, в том числе секреты: выгрузка сессий, пароли, админы, журнал
role-operator-about = воркеры, аккаунты, операции, плагины, прокси
role-viewer-about = видит то же, что оператор, но ничего не меняет
role-moderator-about = только раздел доски

## Admins (owners only)

admins-title = 👥 <b>Админы</b> ({ $n })
admins-line = { $icon } { $role } · <code>{ $id }</code>{ $name }{ $source }
admins-from_env = {" "}— из ADMIN_IDS, меняется только там
admins-btn-add = ➕ Добавить админа
admin-card =
    { $icon } <b>{ $name }</b>
    Telegram ID: <code>{ $id }</code>
    Роль: { $role } — { $about }
    Добавил: { $by }, { $at }
admin-btn-role = Сделать: { $icon } { $role }
admin-btn-remove = 🗑 Удалить из админов
admin-btn-no_name = Без имени
admin-remove-confirm = Удалить админа <b>{ $name }</b> (<code>{ $id }</code>, { $role })? Он сразу потеряет доступ к боту.
admin-removed = 🗑 Админ { $name } удалён.
admin-role_set = ✅ Новая роль: { $role }.
admin-added = ✅ Админ добавлен.
admin-add-tg_id = ➕ Пришлите Telegram ID нового админа — число (его покажет любой бот, сообщающий ID пользователя).
admin-add-role = Какую роль дать <code>{ $id }</code>?
admin-add-name = Как назвать <code>{ $id }</code> ({ $role }) в списке и в журнале? Пришлите имя или нажмите «Без имени».
admin-add-pick_role = Выберите роль кнопкой или /cancel.

## Audit log (owners only)

audit-title = 📜 <b>Журнал действий</b> (новые сверху, время в UTC)
audit-filter-actor = Кто: <code>{ $value }</code>
audit-filter-target = Цель: <code>{ $value }</code>
audit-empty = Записей нет.
audit-hint = Фильтры: <code>/audit account:17</code>, <code>/audit worker:fra-1</code>, <code>/audit actor bot:123</code> — или кнопки 👤 и 🎯.
audit-row =
    <code>{ $at }</code> { $who } · { $role }
    { $action } → { $targets } { $outcome }
audit-more = и ещё { $n }
audit-btn-older = Раньше ▶️
audit-btn-newest = ◀️ Свежие
audit-btn-all = ✖️ Без фильтра

## Muting alerts (/mute)

mute-set = 🔕 Оповещения выключены до { $until }. Включить раньше: <code>/mute off</code>
mute-on = 🔕 Оповещения выключены до { $until }. Включить: <code>/mute off</code>
mute-off_now = 🔔 Оповещения включены. Выключить на время: <code>/mute 2h</code> (или <code>30m</code>, <code>1d</code>).
mute-ended = 🔔 Оповещения снова включены.
mute-usage = Не понял срок «{ $given }». Например: <code>/mute 30m</code>, <code>/mute 2h</code>, <code>/mute 1d</code> или <code>/mute off</code>.

err-admin_not_found = Админа с Telegram ID { $tg_id } нет.
err-admin_exists = Telegram ID { $tg_id } уже среди админов.
err-admin_from_env = { $tg_id } — владелец из ADMIN_IDS: его меняют только там.
err-invalid_role = Нет такой роли: { $role }. Роли: <code>owner</code>, <code>operator</code>, <code>viewer</code>, <code>moderator</code>.
err-invalid_tg_id = Это не Telegram ID: нужно положительное число.
err-invalid_since = «{ $since }» — не срок (<code>30m</code>, <code>1h</code>, <code>7d</code>) и не дата (<code>2026-12-01</code>).
