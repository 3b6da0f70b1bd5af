## The board's texts in Russian (the default language). Project Fluent syntax: https://projectfluent.org
## Ids are the keys `board.texts.t` takes with dots as dashes (`error.ad_limit` is `error-ad_limit`).
## Counts select CLDR plural forms: [one] 1, 21, 101 · [few] 2-4, 22-24 · [many]/[other] 0, 5-20, 25-30, 11-14.
## HTML as Telegram's parse mode takes it (the Mini App's API shows the texts as plain text: no tags there);
## the values are escaped by the code that passes them.

## error

error-unknown_user = Сначала откройте бота: /start
error-banned = Вы заблокированы модератором и не можете этого сделать.
error-ad_not_found = Объявление не найдено.
error-invite_not_found = Приглашение не найдено.
error-chat_not_found = Чат не найден.
error-report_not_found = Жалоба не найдена.
error-own_ad = Это ваше объявление.
error-not_your_ad = Это не ваше объявление.
error-ad_closed = Объявление закрыто или истекло.
error-already_invited = Вы уже писали автору этого объявления: первое сообщение можно отправить один раз.
error-invite_limit = Сегодня вы уже отправили { $limit } { $limit ->
        [one] первое сообщение
        [few] первых сообщения
       *[other] первых сообщений
    }. Попробуйте завтра.
error-ad_limit = У вас уже { $limit } { $limit ->
        [one] открытое объявление
        [few] открытых объявления
       *[other] открытых объявлений
    }: закройте одно, чтобы разместить новое.
error-invite_decided = На это приглашение уже ответили.
error-chat_ended = Этот чат завершён.
error-already_reported = Вы уже пожаловались на это.
error-bad_category = Неизвестная категория.
error-title_empty = Напишите заголовок.
error-title_too_long = Заголовок длиннее { $limit } { $limit ->
        [one] символа
       *[other] символов
    }.
error-text_empty = Напишите текст объявления.
error-text_too_long = Текст длиннее { $limit } { $limit ->
        [one] символа
       *[other] символов
    }.
error-message_empty = Сообщение пустое.
error-message_too_long = Сообщение длиннее { $limit } { $limit ->
        [one] символа
       *[other] символов
    }.
error-reason_too_long = Причина длиннее { $limit } { $limit ->
        [one] символа
       *[other] символов
    }.
error-query_too_long = Запрос длиннее { $limit } { $limit ->
        [one] символа
       *[other] символов
    }.
error-spam_link = Ссылки и @упоминания не допускаются.
error-spam_stop_word = В тексте есть запрещённые слова.
error-spam_repeated = Текст похож на спам: много повторов.
error-spam_flood = Вы отправляете слишком много похожих текстов.
error-no_ad = В жалобе нет объявления.
error-report_closed = Эта жалоба уже рассмотрена.
error-unauthorized = Откройте доску из Telegram: данные входа не подтверждены или устарели.
error-bad_request = Неверный запрос.
error-rate_limited = Слишком много запросов. Подождите немного.
error-not_found = Не найдено.

## category

category-services = Услуги
category-jobs = Работа
category-sale = Продажа
category-housing = Жильё
category-dating = Знакомства
category-other = Другое

## bot

bot-welcome = 
    👋 <b>Анонимная доска объявлений</b>

    Смотрите объявления и размещайте свои в мини-приложении. Автору можно написать одно первое сообщение; если он примет его, здесь откроется анонимный чат: никто не увидит ни имени, ни аккаунта.
bot-open_board = 📋 Открыть доску
bot-keyboard_hint = Кнопка «📋 Доска» внизу тоже открывает доску.
bot-keyboard_button = 📋 Доска
bot-menu_button = Доска
bot-no_webapp = Адрес доски пока не настроен: мини-приложение недоступно. Команды чатов работают.
bot-help = Команды: /mychats — ваши чаты, /endchat — завершить чат, /block — завершить и заблокировать, /report — пожаловаться на чат. Всё остальное, что вы пишете, уходит собеседнику.
bot-unknown_command = Неизвестная команда. /start — начало, /mychats — ваши чаты.
bot-unknown_button = Эта кнопка устарела.
bot-banned = Вы заблокированы модератором доски.
bot-unavailable = Сервис временно недоступен. Попробуйте чуть позже.

## cmd

cmd-start = Доска и приветствие
cmd-mychats = Мои анонимные чаты
cmd-endchat = Завершить чат
cmd-block = Завершить чат и заблокировать
cmd-report = Пожаловаться на чат

## invite

invite-new = 
    📨 <b>Новое сообщение по вашему объявлению «{ $title }»</b>

    { $message }
invite-accept = ✅ Принять
invite-decline = ❌ Отклонить
invite-report = 🚩 Пожаловаться
invite-sent = ✉️ Сообщение отправлено автору объявления «{ $title }». Если он его примет, здесь откроется чат.
invite-accepted_author = ✅ Чат открыт: <b>{ $partner }</b>. Пишите сюда — собеседник получит всё анонимно.
invite-accepted_guest = ✅ Автор объявления «{ $title }» принял ваше сообщение. Чат открыт: <b>{ $partner }</b>. Пишите сюда — сообщения уйдут собеседнику анонимно.
invite-declined = Приглашение отклонено. Отправитель об этом не узнает.
invite-reported = 🚩 Жалоба отправлена, приглашение отклонено.
invite-bad_data = Не удалось прочитать данные из доски. Откройте доску заново и попробуйте ещё раз.

## chat

chat-partner = Собеседник { $alias } · { $title }
chat-none = У вас нет активных чатов. Откройте доску и напишите автору объявления.
chat-list = 
    💬 <b>Ваши чаты</b>
    { $chats }

    Чтобы писать в нужный чат, отвечайте (reply) на его сообщения.
chat-choose_send = В какой чат отправить это сообщение? (Ответ на сообщение из чата выбирает чат сам.)
chat-choose_end = Какой чат завершить?
chat-choose_block = Какой чат завершить с блокировкой собеседника?
chat-choose_report = На какой чат пожаловаться?
chat-sent = ➡️ Отправлено: { $partner }
chat-pending_gone = Это сообщение уже отправлено или устарело.
chat-ended_by_you = Чат завершён: { $partner }.
chat-ended_by_partner = 🔚 { $partner } завершил(а) чат.
chat-blocked = ⛔ { $partner } заблокирован(а): чат завершён, написать вам он(а) больше не сможет.
chat-reported = 🚩 Жалоба на чат «{ $partner }» отправлена модераторам.
chat-partner_gone = 🔚 { $partner } недоступен(на): чат завершён.
chat-ended_banned = 🔚 Чат завершён модератором: { $partner }.

## relay

relay-contact_refused = Контакты не пересылаются: это раскрыло бы вас.
relay-unsupported = Такое не пересылается. Можно: текст, фото, видео, голосовые, файлы, стикеры, геопозицию.
relay-failed = Не удалось доставить сообщение. Попробуйте ещё раз.

## error

error-report_limit = Сегодня вы уже отправили { $limit } { $limit ->
        [one] жалобу
        [few] жалобы
       *[other] жалоб
    }. Попробуйте завтра.
error-already_handled = Этим уже занимаются модераторы.
error-reopen_expired = Вернуть объявление можно только в { $minutes ->
        [one] первую { $minutes } минуту
        [few] первые { $minutes } минуты
       *[other] первые { $minutes } минут
    } после закрытия.
error-invite_withdrawn = Отправитель больше недоступен.
error-ad_not_hidden = Объявление не скрыто.
error-author_banned = Автор объявления забанен: вернуть его нельзя.
error-report_closed_by_you = Вы уже рассмотрели эту жалобу.
error-no_reporter = Эту жалобу подала сама доска: у неё нет автора.
error-internal = Внутренняя ошибка. Попробуйте позже.

## relay

relay-not_copied = ⚠️ Это сообщение нельзя переслать собеседнику ({ $partner }): Telegram отказался его копировать.
relay-not_delivered = ⚠️ Не доставлено: чат с собеседником { $partner } завершён.
relay-uncertain = ⚠️ Возможно, это сообщение не дошло: бот перезапускался, пока отправлял его. Повторите, если нужно.

## ban

ban-notice = ⛔ Модератор заблокировал вас на доске. Ваши объявления скрыты, чаты завершены. Это решение окончательное.
