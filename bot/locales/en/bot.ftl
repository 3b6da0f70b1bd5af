## The admin bot's texts in English. Project Fluent syntax: https://projectfluent.org
## The same ids and placeables as ru/bot.ftl (tests/test_bot_texts.py checks it). Counts select CLDR plural
## forms: [one] 1 · [other] everything else.
## A leading space is written {" "} (Fluent trims the whitespace that starts a pattern).

refused = ⛔ This bot is for administrators only.

## Main menu

menu-title =
    🛰 <b>Fleet control</b>
    Choose a section:
menu-workers = 🖥 Workers
menu-accounts = 📱 Accounts
menu-add_account = ➕ Add account
menu-summary = 📊 Fleet summary
menu-language = 🌐 Language / Язык
menu-board = 📋 Board

## Board

board-off = 📋 The board is not connected to this bot.
board-title-today = 📋 <b>Board — the last 24 hours</b>
board-title-week = 📋 <b>Board — the last 7 days</b>
board-stats =
    Ads: { $ads_posted } posted · { $ads_open } open now
    Invitations: { $invites_sent } sent · { $invites_accepted } accepted · { $invites_declined } declined
    Accept rate: { $accept_rate }
    Active chats: { $chats_active }
    Reports: { $reports_open } open · { $reports_new } new
board-by_day = <b>By day</b> (ads · invitations · ✅ accepted · ❌ declined)
board-day = { $day }: { $ads } · { $invites } · ✅ { $accepted } · ❌ { $declined }
board-btn-today = 📅 Today
board-btn-week = 📆 Week
board-btn-reports = 🚩 Reports ({ $n })
board-btn-board = 📋 Board
board-btn-ban = ⛔ Ban
board-btn-yes_ban = ⛔ Yes, ban
board-btn-dismiss = ✅ Dismiss
board-btn-hide = 🙈 Hide ad
board-queue-empty = 🚩 No open reports.
board-report-title = 🚩 <b>Report { $n } of { $total }</b> — { $target } · { $age }
board-report-reported = Reported: <code>{ $handle }</code>{ $banned }
board-report-banned = {" "}(already banned)
board-report-reporter = Reporter: <code>{ $handle }</code>
board-report-reason = Reason: { $reason }
board-report-no_reason = none given
board-report-ad = Ad: <b>{ $title }</b>
board-report-ad_text = <b>Ad text:</b>
board-report-invite_text = <b>Invitation:</b>
board-report-messages = <b>Last messages in the chat:</b>
board-report-no_messages = <i>no messages kept</i>
board-target-ad = ad
board-target-invite = invitation
board-target-chat = chat
board-ban-confirm =
    Ban <code>{ $handle }</code>? Their ads will be hidden, their chats ended, and every open report against them closed.
board-done-ban = ⛔ <code>{ $handle }</code> is banned.
board-done-dismiss = ✅ Report dismissed.
board-done-hide = 🙈 Ad «{ $title }» hidden.
board-err-report_not_found = Report not found.
board-err-no_ad = This report has no ad.
board-err-report_closed = Another moderator has already settled this report.
board-err = ⚠️ { $error }

## Buttons

btn-back = ⬅️ Back
btn-menu = 🏠 Menu
btn-refresh = 🔄 Refresh
btn-prev = ◀️
btn-next = ▶️
btn-cancel = ✖️ Cancel
btn-yes_remove = 🗑 Yes, remove
btn-add_worker = ➕ Add worker

## Workers

status-online = 🟢 Online
status-offline = 🔴 Offline
status-deactivated = ⏸ deactivated by an admin
workers-title = 🖥 <b>Workers</b> — page { $page }/{ $pages }, { $total } in all
workers-empty = 🖥 No workers yet. Start <code>run_worker.py</code> on a server or add a worker.
workers-row = { $icon } { $name } · { $running }/{ $total }
worker-card =
    🖥 <b>{ $name }</b> — { $status }
    Address: <code>{ $address }</code>
    Last heartbeat: { $heartbeat }
    Version: { $version } · uptime: { $uptime }
    Accounts: { $running } running of { $total }
worker-rejected = ⚠️ Malformed messages dropped from its queue: { $count }
worker-btn-accounts = 📱 Accounts
worker-btn-activate = ▶️ Activate
worker-btn-deactivate = ⏸ Deactivate
worker-btn-remove = 🗑 Remove
worker-activated = Worker { $name } activated
worker-deactivated = Worker { $name } deactivated: no accounts will be started there
worker-remove-confirm = Remove worker <b>{ $name }</b> from the list? This does not stop the server.
worker-removed = 🗑 Worker { $name } removed.
worker-add-name = Name of the new worker (letters, digits, <code>.</code>, <code>_</code>, <code>-</code>):
worker-add-address = Server address of worker <b>{ $name }</b> (IP or host name):
worker-added =
    ✅ Worker <b>{ $name }</b> added. It shows 🔴 until <code>run_worker.py</code> starts on the server with <code>WORKER_NAME={ $name }</code>.

## Times: how long ago, how long

ago-never = never
ago-seconds = { $n } s ago
ago-minutes = { $n } min ago
ago-hours = { $n } h ago
ago-days = { $n } d ago
duration-days = { $days }d { $hours }h
duration-hours = { $hours }h { $minutes }m
duration-minutes = { $minutes }m { $seconds }s

## Accounts

accounts-title = 📱 <b>Accounts</b> — page { $page }/{ $pages }, { $total } in all
accounts-title-worker = 📱 <b>Accounts on { $worker }</b> — page { $page }/{ $pages }, { $total } in all
accounts-empty = 📱 No accounts yet. Add one with «➕ Add account».
account-card =
    📱 <b>{ $phone }</b>
    👤 { $who }
    🖥 Worker: { $worker }
    Status: { $status }{ $detail }
account-device = 📲 Device: { $model }, { $system }; app { $app }; language { $language } (system { $system_lang })
account-flood_until = 🐢 Flood wait until { $until }
account-starting = ⏳ starting…
account-stopping = ⏳ stopping…
account-timeout = ⌛ The worker has not reported the outcome yet — refresh the card later.
account-btn-start = ▶️ Start
account-btn-stop = ⏹ Stop
account-btn-restart = 🔄 Restart
account-btn-move = 🔀 Move
account-btn-remove = 🗑 Remove
account-btn-when_back = ⏰ Start when it is back
account-unavailable = ⚠️ { $reason }
account-when_back = ⏰ Account { $id } will start when worker { $worker } is back.
account-move-pick = Move account { $phone } to which worker? (online and active only)
account-move-none = No other online worker to move it to.
account-moved = 🔀 Account moved from worker <b>{ $source }</b> to <b>{ $target }</b>.
account-moved-to = 🔀 Account moved to worker <b>{ $target }</b>.
account-moved-starting = It is starting there.
account-remove-confirm = Remove account <b>{ $phone }</b>? Its session will be wiped.
account-removed = 🗑 Account { $phone } removed, its session wiped.
account-error = ⚠️ { $error }
account-stopped = ⏹ Account stopped.

## Account statuses

st-running = 🟢 running
st-starting = ⏳ starting
st-stopping = ⏳ stopping
st-stopped = ⚪ stopped
st-login_pending = 🔑 waiting for login
st-error = ⚠️ error
st-unauthorized = 🚫 session revoked
st-banned = ⛔ banned
st-flood_wait = 🐢 flood wait
st-lost = ❓ lost
st-unknown = ❔ unknown

## Status details the workers and the backend report (fixed texts of our own code; others are shown as they are)

detail-imported = imported
detail-logged_in = logged in
detail-stopped = stopped
detail-restarting = restarting
detail-restarted = restarted
detail-restarted_pid = restarted (pid { $pid })
detail-worker_stopped = worker stopped
detail-lease_taken = its lease was taken over by another worker
detail-lease_elsewhere = lease held elsewhere
detail-not_running_here = not running on this worker
detail-parked_stopped = stopped (it was waiting to resume)
detail-connecting = connecting
detail-reconnecting = reconnecting (attempt { $attempt })
detail-queued = queued
detail-connect_turn = waiting for its turn to connect ({ $rate } per second)
detail-reconnect_turn = waiting for its turn to reconnect (attempt { $attempt }) ({ $rate } per second)
detail-starting = starting
detail-already_running = already running on this worker
detail-shutting_down = the worker is shutting down
detail-running_elsewhere = refused: the account is running on worker '{ $worker }'
detail-waiting_for_worker = waiting for worker '{ $worker }' to let go of the account
detail-session_not_authorized = the session is not authorized (revoked or logged out)
detail-not_authorized = not authorized
detail-auth_key_unregistered = the session was revoked or logged out (AUTH_KEY_UNREGISTERED)
detail-session_revoked = the session was revoked (SESSION_REVOKED)
detail-session_expired = the session expired (SESSION_EXPIRED)
detail-auth_key_invalid = the authorization key is invalid (AUTH_KEY_INVALID)
detail-auth_key_duplicated =
    AUTH_KEY_DUPLICATED: the session was used from two places at once; Telegram revoked it, log in again
detail-user_banned = the account is banned by Telegram (USER_DEACTIVATED_BAN)
detail-user_deactivated = the account was deleted or deactivated (USER_DEACTIVATED)
detail-phone_banned = the phone number is banned (PHONE_NUMBER_BANNED)
detail-flood = Telegram asks to wait { $seconds } s
detail-network = network: { $cause }
detail-retry = { $detail }; retry { $attempt } in { $delay } s
detail-could_not_start = could not start: { $cause }
detail-telegram_error = Telegram error { $code }{ $name }
detail-closed = the server closed the connection
detail-invalid_packet = the server answered with an invalid packet
detail-reset = the connection was reset
detail-aborted = the connection was aborted
detail-refused = connection refused
detail-broken = the connection broke
detail-timed_out = timed out
detail-checksum = a corrupted packet arrived
detail-security = a packet failed the security checks
detail-unknown_key = the server does not know this authorization key
detail-unassigned = not assigned to a worker
detail-worker_offline = worker { $worker } is offline
detail-worker_offline_silent = worker { $worker } is offline (silent for { $seconds } s)
detail-worker_silent = worker { $worker } silent for { $seconds } s
detail-no_report = no report from worker { $worker } yet
detail-not_running_on = not running on worker { $worker }
detail-no_heartbeat_yet = no heartbeat yet
detail-no_heartbeat = no heartbeat for { $seconds } s
detail-no_redis = no contact with Redis for { $seconds } s

## The add-account wizard

wizard-worker =
    ➕ <b>New account</b>
    Step 1. Choose a worker (online and active only):
wizard-no_workers = No worker is online. Start one and try again.
wizard-method = Step 2. How do you want to add it?
wizard-method-login = 🔑 Log in with a code
wizard-method-import = 📦 Import a session
wizard-phone = Step 3. Phone number in international format, e.g. <code>+79991234567</code>:
wizard-api_id = Step 4. API ID (a number from my.telegram.org):
wizard-api_hash = Step 5. API hash (32 characters from my.telegram.org):
wizard-code =
    Step 6. Telegram sent a login code.
    ❗ Type it <b>with spaces</b>, like <code>1 2 3 4 5</code>: Telegram voids a code that is sent on in a message as is.
wizard-password = 🔐 Two-step verification is on. Send the password — the message will be deleted at once.
wizard-session = Step 6. Send the Telethon session string, or the <code>.session</code> file as a document.
wizard-sending_code = ⏳ Requesting the code…
wizard-checking = ⏳ Checking…
wizard-retry =
    ❌ { $error }
    Try again, or /cancel.
wizard-failed =
    ❌ { $error }
    The login was stopped. Start again with «➕ Add account».
wizard-done = ✅ Account added.
wizard-expect_text = Please send text. Try again, or /cancel.
wizard-file_too_big = The file is too large for a Telethon session.
cancelled = Cancelled.
nothing_to_cancel = Nothing to cancel.
unknown_button = This button is out of date. Open the menu again: /start
unknown_input = I did not understand that. Open the menu: /start

## Fleet summary

summary =
    📊 <b>Fleet summary</b>
    Workers: 🟢 { $online } · 🔴 { $offline }{ $deactivated }
    Accounts: { $accounts }
summary-deactivated = {" "}· ⏸ { $n } deactivated
summary-no_accounts = none

## Language

language-pick = Choose a language / Выберите язык:
language-set = Language: English 🇬🇧

## Alerts

alert-worker_offline = 🔴 Worker <b>{ $name }</b> is offline{ $detail }
alert-worker_online = 🟢 Worker <b>{ $name }</b> is back online{ $detail }
alert-worker_offline-again = 🔴 Worker <b>{ $name }</b> is offline{ $detail }, { $repeats ->
        [one] once
       *[other] { $repeats } times
    } within the hour
alert-worker_online-again = 🟢 Worker <b>{ $name }</b> is back online{ $detail }, { $repeats ->
        [one] once
       *[other] { $repeats } times
    } within the hour
alert-workers_offline = 🔴 { $n } { $n ->
        [one] worker
       *[other] workers
    } went offline at once: { $names }
alert-workers_online = 🟢 { $n } { $n ->
        [one] worker is
       *[other] workers are
    } back online: { $names }
alert-account = { $icon } Account #{ $id }: { $status }{ $detail }
alert-accounts = { $icon } { $n } { $n ->
        [one] account
       *[other] accounts
    }: { $status } (#{ $ids })

## Errors

unavailable = ⚠️ Service unavailable: { $error }
internal_error = internal error
err-phone = Invalid phone number. Use international format, e.g. <code>+79991234567</code>.
err-api_id = The API ID is a number from my.telegram.org, e.g. <code>123456</code>.
err-api_hash = The API hash is 32 hexadecimal characters from my.telegram.org.
err-login_code = The code is 5 or 6 digits. Type it with spaces, like <code>1 2 3 4 5</code>.
err-invalid_code = Wrong code. Type it with spaces, like <code>1 2 3 4 5</code>.
err-code_expired = The code has expired (or was sent on through Telegram as is). Request a new one.
err-wrong_password = Wrong two-step verification password.
err-invalid_phone = Telegram does not accept this phone number.
err-banned = This phone number is banned by Telegram.
err-api_id_invalid = Telegram rejects this API ID / API hash pair.
err-flood_wait = Telegram asks to wait before trying again.
err-network = The worker cannot reach Telegram.
err-unknown_login = This login has expired or was cancelled. Start again.
err-timeout = The worker did not answer in time.
err-no_answer = Worker { $worker } did not answer in time.
err-worker_offline = Worker { $worker } is offline.
err-worker_deactivated = Worker { $worker } is deactivated by an admin.
err-worker_still_online = Worker { $name } is online; stop it before removing it.
err-worker_has_accounts = Worker { $name } still has accounts; move or remove them first.
err-session = The session cannot be used: { $detail }
err-proxy =
    Invalid proxy: <code>socks5://user:pass@host:port</code>, <code>http://host:port</code> or <code>mtproxy://secret@host:port</code>.
err-account_not_found = Account { $id } not found.
err-account_exists = An account with this phone number already exists (#{ $id }).
err-worker_not_found = Worker { $name } not found.
err-worker_exists = Worker { $name } already exists.
err-invalid_worker_name = Worker names: letters, digits, <code>. _ -</code>, up to 64 characters.
err-invalid_address = Server address: an IP or a host name, e.g. <code>10.0.0.5</code>.

## Bot commands (Telegram's command menu)

cmd-start = Main menu
cmd-workers = Workers
cmd-accounts = Accounts
cmd-add = Add an account
cmd-summary = Fleet summary
cmd-language = Language
cmd-board = Board: statistics and reports
cmd-cancel = Cancel the current action
