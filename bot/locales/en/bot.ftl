## The admin bot's texts in English. Project Fluent syntax: https://projectfluent.org
## The same ids and placeables as ru/bot.ftl (tests/test_bot_texts.py checks it). Counts select CLDR plural
## forms: [one] 1 · [other] everything else.
## A leading space is written {" "} (Fluent trims the whitespace that starts a pattern).

refused = ⛔ This bot is for administrators only.

## Main menu

menu-title =
    🛰 <b>Fleet control</b>
    Choose a section:
menu-sandbox = 🧪 <b>SANDBOX</b>: a demo fleet on the Telegram sandbox, not the real Telegram
menu-workers = 🖥 Workers
menu-accounts = 📱 Accounts
menu-add_account = ➕ Add account
menu-summary = 📊 Fleet summary
menu-language = 🌐 Language / Язык
menu-board = 📋 Board
menu-proxies = 🔌 Proxies
menu-admins = 👥 Admins
menu-audit = 📜 Audit log

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
board-report-reporter = Reporter: <code>{ $handle }</code>{ $banned } · report weight { $weight } · { $dismissed } of their reports dismissed
board-report-reason = Reason: { $reason }
board-report-no_reason = none given
board-report-ad = Ad: <b>{ $title }</b> · { $status } · { $reports } { $reports ->
        [one] report
       *[other] reports
    }
board-report-ad_text = <b>Ad text:</b>
board-report-invite_text = <b>Invitation:</b>
board-report-messages = <b>Last messages in the chat:</b>
board-report-no_messages = <i>no messages kept</i>
board-target-ad = ad
board-target-invite = invitation
board-target-chat = chat
board-target-reporter = false reports
board-report-false_reports = The board itself reports: { $n } of this person's { $n ->
        [one] reports was
       *[other] reports were
    } dismissed.
board-ad_status-open = open
board-ad_status-closed = closed by its author
board-ad_status-reported = hidden by reports until reviewed
board-ad_status-hidden = hidden by a moderator
board-ad_status-expired = expired
board-btn-hidden = 🙈 Hidden ads
board-btn-unhide = ↩️ Unhide { $n }
board-btn-yes = ✅ Yes
board-btn-ban_reporter = ⛔ Ban the reporter
board-btn-dismiss_reporter = 🧹 Dismiss all their reports
board-btn-restore = ♻️ Restore what they hid
board-ban_reporter-confirm =
    Ban <code>{ $handle }</code> for false reports? Their open reports ({ $reports }) are dismissed and the ads they hid ({ $ads }) come back.
    <b>A ban is final: there is no unban.</b>
board-dismiss_reporter-confirm = Dismiss every open report by <code>{ $handle }</code> ({ $reports })? Ads hidden only by them come back.
board-restore-confirm = Bring back the ads hidden by <code>{ $handle }</code>'s reports ({ $ads }) and settle every report on them?
board-done-ban_reporter = ⛔ Reporter banned: { $reports } { $reports ->
        [one] report
       *[other] reports
    } dismissed, { $ads } { $ads ->
        [one] ad
       *[other] ads
    } back.
board-done-dismiss_reporter = 🧹 { $reports } { $reports ->
        [one] report
       *[other] reports
    } dismissed, { $ads } { $ads ->
        [one] ad
       *[other] ads
    } back.
board-done-restore = ♻️ { $ads } { $ads ->
        [one] ad
       *[other] ads
    } back, { $reports } { $reports ->
        [one] report
       *[other] reports
    } settled.
board-done-unhide = ↩️ Ad «{ $title }» is open again.
board-hidden-title = 🙈 <b>Ads hidden by moderators</b> ({ $n })
board-hidden-none = No hidden ads.
board-hidden-line = { $n }. <b>{ $title }</b> — by <code>{ $handle }</code>
board-ban-confirm =
    Ban <code>{ $handle }</code>? Their ads will be hidden, their chats ended (their partners are told), and every open report against them closed.
    <b>A ban is final: there is no unban.</b>
board-done-ban = ⛔ <code>{ $handle }</code> is banned.
board-done-dismiss = ✅ Report dismissed.
board-done-hide = 🙈 Ad «{ $title }» hidden.
board-err-report_not_found = Report not found.
board-err-no_ad = This report has no ad.
board-err-report_closed = Another moderator has already settled this report.
board-err-report_closed_by_you = You have already settled this report.
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
worker-key = 🔑 Key: <code>{ $fingerprint }</code>
worker-key_untrusted = 🔑 ⚠️ Presents key <code>{ $pending }</code> instead of the pinned <code>{ $pinned }</code>: no work until an owner trusts it (<code>run_cli.py workers trust { $name }</code>)
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
worker-login_own = 🔐 Own Redis login
worker-login_shared = 🔓 Shared Redis login: whoever holds this server can reach every worker's keys and queues
worker-btn-login = 🔐 Redis login
worker-btn-issue_login = 🔐 Issue
worker-login-confirm = Issue worker <b>{ $name }</b> a Redis login of its own? It reaches only this worker's keys and queue. The password is shown once and stored nowhere.
worker-login-rotates = ⚠️ It has one already: the current password stops working at once. Put the new settings on its server and restart the worker there.
worker-login-issued =
    🔐 Redis login of worker <b>{ $name }</b> (user <code>{ $user }</code>). Shown only now and stored nowhere: copy it, then delete this message.

    <code>REDIS_URL={ $url }</code>

    <code>.env</code> for its server (<code>chmod 600</code>, no <code>SECRET_KEY</code> needed):
    <pre>{ $env }</pre>
worker-login-missed = ⚠️ Not set on: { $nodes }. Issue it again once they are back, or copy Redis's ACL file there.
worker-login-unsaved = ⚠️ Redis has no ACL file (<code>aclfile</code>): the login is lost when Redis restarts.

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
account-password_on_file = 🔑 2FA password: on file
account-password_none = 🔑 2FA password: not on file
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

## Details the workers and the backend report, by code (`common.details`): every code has a text here

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
detail-lease_unconfirmed = not started yet: no Redis replica acknowledged its lease in time (the start is retried)
detail-worker_full = refused: worker '{ $worker }' runs as many accounts as it may ({ $limit }, WORKER_MAX_ACCOUNTS)
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
detail-account_elsewhere = the account is running on worker '{ $worker }'
detail-account_not_ready = the account's status on this worker is { $status }
detail-account_not_ready_because = the account's status on this worker is { $status } ({ $cause })
detail-invalid_parameters = invalid parameters: { $problems }
detail-photo_not_base64 = invalid parameters: photo is not valid base64
detail-secret_unreadable = cannot decrypt a secret: it is corrupted or was encrypted with another SECRET_KEY
detail-unknown_constructor = the server sent a reply this client cannot read (unknown constructor: another API layer?)
detail-worker_host = host { $host }
detail-worker_address = address { $address }
detail-key = key { $fingerprint }
detail-key_changed = key { $presented } instead of the pinned { $pinned }: no work until trusted
detail-on_worker = on { $worker }
detail-moved = { $before } -> { $after }
detail-secrets_wiped = secrets wiped
detail-exported_as = session exported as { $format }
detail-export_needs_user_id = { $format } needs the account's Telegram user id, which the fleet learns when the account first runs: start or check it once
detail-export_exists_now = its file appeared meanwhile; not replaced
detail-export_failed = could not write it: { $cause }
detail-status_change = { $status }: { $cause }
detail-status_is = { $status }
detail-username_taken = the username @{ $username } is already taken
detail-username_for_sale = the username @{ $username } is already taken (it can only be bought on fragment.com)
detail-first_name_refused = Telegram refused the first name (it must not be empty)
detail-last_name_refused = Telegram refused the last name
detail-bio_too_long = the bio is too long for Telegram (70 characters without Premium)
detail-photo_dimensions = Telegram refused the photo's dimensions: use a JPEG or PNG image of at least 160×160 pixels
detail-photo_too_small = the photo is too small: use a JPEG or PNG image of at least 160×160 pixels
detail-photo_unprocessable = Telegram could not process the photo: use a JPEG or PNG image of at least 160×160 pixels
detail-photo_format = Telegram refused the photo's format: use a JPEG or PNG image of at least 160×160 pixels
detail-photo_refused = Telegram refused the photo: use a JPEG or PNG image of at least 160×160 pixels
detail-photo_lost = the photo did not reach Telegram; try again
detail-photo_damaged = the photo did not reach Telegram intact; try again
detail-password_too_fresh = the 2FA password was set too recently for Telegram to allow a change; try again { $when }
detail-session_too_fresh = this session is too new for Telegram to allow a 2FA change; try again { $when }
detail-password_change_refused = Telegram refused the new 2FA settings; try again
detail-password_settings_changed = the 2FA settings changed meanwhile; try again
detail-password_changed_meanwhile = the 2FA password changed meanwhile; try again
detail-recovery_email_unconfirmed = Telegram asks to confirm a recovery email first
detail-password_needed = Telegram asks for the account's 2FA password first
detail-session_not_found = that session no longer exists
detail-telegram_refused = Telegram refused the request ({ $name })
detail-telegram_refused_plain = Telegram refused the request
detail-hint_is_password = the hint must not be the password itself
detail-field_not_text = the { $field } must be text
detail-first_name_empty = the first name must not be empty
detail-partly_changed = { $cause } ({ $changed } already changed)
detail-later = later
detail-in_seconds = in { $seconds } s
detail-in_minutes = in about { $minutes } minutes
detail-in_hours = in about { $hours } hours
detail-username_invalid = the username @{ $username } is not valid: 5 to 32 letters, digits or underscores, starting with a letter
detail-wrong_password = the current 2FA password is wrong
detail-current_password_needed = this account already has a 2FA password: give the current one to change it
detail-password_empty = the new 2FA password must not be empty
detail-too_fresh_to_end = this session is too new for Telegram to allow ending the others (it must be at least 24 hours old)
detail-too_fresh_to_end_until = this session is too new for Telegram to allow ending the others: possible from { $possible_at } (24 hours after its login)
detail-spambot_not_found = @SpamBot cannot be found on this Telegram server
detail-spambot_refused = @SpamBot could not be asked: { $cause }
detail-spambot_silent = @SpamBot did not answer within { $seconds } s
detail-photo_not_image = the photo is not a JPEG or PNG image
detail-photo_too_big = the photo is larger than { $mb } MB
detail-worker_lost = worker lost: { $worker } went away before it finished
detail-worker_deactivated = worker '{ $worker }' is deactivated; activate it or move the account
detail-op_worker_offline = worker '{ $worker }' is offline
detail-no_session = the account has no session: log in first
detail-no_worker = the account is not assigned to a worker
detail-op_timed_out = timed out after { $seconds } s
detail-unknown_operation = there is no operation named '{ $name }'
detail-operation_failed = { $operation }: { $cause }
detail-operation_outcome = { $operation } { $status }: { $cause }
detail-operation_lost = { $operation } { $cause }
detail-check_summary = { $summary }
detail-plugin_failed = { $plugin } failed: { $cause }
detail-plugin_blocked_loop = { $plugin } blocked its event loop: { $cause }
detail-plugin_unknown = unknown plugin: worker { $worker } does not have it
detail-plugin_not_importable = it could not be imported
detail-plugin_config_invalid = invalid configuration: { $problems }
detail-plugin_secret_unopened = its secret { $field } does not open with this worker's key (sealed for another worker)
detail-plugin_setup_timeout = setup did not finish within { $seconds } s
detail-plugin_setup_failed = setup failed: { $cause }
detail-plugin_blocked = blocked its event loop for { $seconds } s
detail-plugin_still_blocked = blocked its event loop for { $seconds } s (still blocked)
detail-plugin_event = { $plugin }: { $kind }: { $text }
detail-plugin_name = { $plugin }
detail-verdict_worse = { $before } → { $after }
detail-text = { $text }
detail-proxy_added = { $proxy } in group { $group }
detail-proxy_removed = { $proxy }
detail-proxy_set = proxy { $old } → { $new }
detail-proxy_none = none
detail-proxy_reassigned = proxy #{ $removed } ({ $removed_proxy }) removed: moved to #{ $to } ({ $to_proxy })
detail-proxy_dead = { $failures } checks in a row failed ({ $error }); { $accounts ->
    [one] { $accounts } account
   *[other] { $accounts } accounts
} behind it
detail-proxy_back = checks pass again ({ $ms } ms)
detail-proxy_failover = proxy #{ $dead } ({ $dead_proxy }) is dead: moved to #{ $to } ({ $to_proxy })
detail-proxy_no_spare = no live proxy of group { $group } has room: { $accounts ->
    [one] { $accounts } account stays
   *[other] { $accounts } accounts stay
} behind it
detail-proxy_stuck = proxy #{ $dead } ({ $dead_proxy }) is dead and group { $group } has no live proxy with room: the account stays on it
detail-probe_refused = the proxy refused the connection
detail-probe_timed_out = no answer in time
detail-probe_auth_failed = the proxy refused the credentials
detail-probe_handshake = the proxy hung up during its handshake (wrong credentials?)
detail-probe_proxy_refused = the proxy could not reach the data centre
detail-probe_unreachable = the proxy's address cannot be reached
detail-probe_bad_reply = the answer through the proxy was not Telegram's
detail-probe_unreadable = the proxy's URL cannot be read on the worker
detail-probe_error = the check failed

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
wizard-pool_app = Steps 4–5 skipped: the account gets an API app of the pool.
wizard-code =
    Step 6. Telegram sent a login code.
    ❗ Type it <b>with spaces</b>, like <code>1 2 3 4 5</code>: Telegram voids a code that is sent on in a message as is.
wizard-password = 🔐 Two-step verification is on. Send the password — the message will be deleted at once.
wizard-session =
    Step 6. Send the session string (Telethon or Pyrogram), or as a document: a <code>.session</code> file (Telethon or Pyrogram), a <code>.txt</code> holding session strings, or a <code>.zip</code> of a Telegram Desktop <code>tdata</code> folder.
wizard-passcode = 🔐 The tdata is locked with a local passcode. Send it — the message will be deleted at once.
wizard-phones = The file holds { $count } { $count ->
        [one] account
       *[other] accounts
    } without a phone number. Send { $count ->
        [one] its number
       *[other] their numbers, one a line, in this order
    }:
wizard-phone_line = • { $file } — Telegram user { $user }
wizard-report = Imported { $imported } of { $total }:
wizard-report_ok = ✅ { $file } → account #{ $id } ({ $phone })
wizard-report_failed = ❌ { $file }: { $error }
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
wizard-file_too_big = The file is too large for a session (a <code>.zip</code> may hold { $mb } MB at most).
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
alert-worker_key_changed = 🔑 Worker <b>{ $name }</b> presents another key{ $detail }. If you reinstalled it: <code>run_cli.py workers trust { $name }</code>
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
alert-board_reports = 🚩 { $n } new { $n ->
        [one] report
       *[other] reports
    } on the board: 📋 Board → Reports.
alert-account = { $icon } Account #{ $id }: { $status }{ $detail }
alert-proxy_dead = 🔴 Proxy #{ $id } is dead{ $detail }
alert-proxy_alive = 🟢 Proxy #{ $id } is back{ $detail }
alert-proxy_no_spare = ⚠️ Proxy #{ $id }: its accounts cannot move{ $detail }
alert-accounts = { $icon } { $n } { $n ->
        [one] account
       *[other] accounts
    }: { $status } (#{ $ids })

## Errors, by code (`common.errors`): every code has a text here

unavailable = ⚠️ Service unavailable: { $error }
internal_error = internal error
err-proxy_not_found = Proxy #{ $id } is not in the pool.
err-proxy_in_use = Proxy #{ $id } still carries { $count } account(s): reassign them to another proxy of its group first.
err-proxy_full = Proxy #{ $id } carries as many accounts as its cap allows ({ $cap }).
err-proxy_dead = Proxy #{ $id } is dead: choose a live one.
err-proxy_group_full = Group { $group } has no proxy that is not dead with room for { $count } more account(s).
err-proxy_group = A proxy group is 1-64 letters, digits, dots, dashes or underscores.
err-proxy_no_worker = No worker is online to check the proxies.
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
err-worker_key_untrusted = Worker { $worker } presents a key other than its pinned one: it gets no work until an owner trusts it (<code>run_cli.py workers trust { $worker }</code>).
err-worker_key_not_pending = Worker { $name } presents no new key to trust.
err-acl_not_permitted = Redis ({ $node }) does not let the control plane run ACL commands, so it cannot issue a worker's own login. Give the control plane a Redis user that may.
err-acl_unsupported = Redis ({ $node }) cannot issue a worker's own login: it needs Redis 7 or newer.
err-secret_key_mismatch = This bot's SECRET_KEY is not the one the rest of the fleet uses: what it stores, the backend and the workers cannot read.
err-worker_key_untrusted_start_later = Worker { $worker } presents a key other than its pinned one; the account can be asked to start once the key is trusted.
err-session = The session cannot be used: { $detail }
err-proxy =
    Invalid proxy: <code>socks5://user:pass@host:port</code>, <code>http://host:port</code> or <code>mtproxy://secret@host:port</code>.
err-account_not_found = Account { $id } not found.
err-account_exists = An account with this phone number already exists (#{ $id }).
err-worker_not_found = Worker { $name } not found.
err-worker_exists = Worker { $name } already exists.
err-invalid_worker_name = Worker names: letters, digits, <code>. _ -</code>, up to 64 characters.
err-invalid_address = Server address: an IP or a host name, e.g. <code>10.0.0.5</code>.
err-error = { $message }
err-invalid = { $message }
err-passcode = This Telegram Desktop folder is locked with a local passcode: send the passcode (the message is deleted once read).
err-worker_offline_start_later = Worker { $worker } is offline. Start it, or ask to start the account when the worker is back.
err-worker_deactivated_start_later = Worker { $worker } is deactivated by an admin. Activate it, or ask to start the account when the worker is back.
err-accounts_on_deactivated = Some accounts are on deactivated workers ({ $accounts }): activate the workers or move the accounts first.
err-worker_rejected_call = Worker { $worker } refused the request without running it ({ $reason }).
err-no_answer_will_retry = Worker { $worker } did not answer in time. The account stays marked to run; the backend will retry.
err-no_answer_stays_stopped = Worker { $worker } did not answer in time. The account stays marked to stop.
err-no_answer_not_removed = Worker { $worker } did not answer in time. The account is not removed: it may still be running.
err-start_refused = Worker { $worker } did not start account #{ $id }: { $problem }
err-restart_refused = Worker { $worker } did not restart account #{ $id }: { $problem }
err-accounts_not_found = No account with id { $ids }.
err-account_busy = Account #{ $id } with this phone number exists and is { $status }.
err-session_in_fleet = This session is account #{ $id } ({ $phone }) of the fleet already: one session cannot run in two places (Telegram revokes it).
err-app_not_found = App #{ $id } is not in the pool.
err-app_not_in_pool = API ID { $api_id } is not in the app pool: give its API hash too, or add it to the pool.
err-app_exists = API ID { $api_id } is in the pool already (app #{ $id }).
err-app_in_use = App #{ $id } still carries { $count } account(s): remove them first.
err-app_full = API ID { $api_id } carries as many accounts as its cap allows ({ $cap }).
err-app_hash_mismatch = This API hash is not the one the pool holds for API ID { $api_id }.
err-app_pool_empty = The app pool is empty: add an API app (<code>run_cli.py apps add</code>) or give an API ID and hash.
err-app_pool_exhausted = Every API app in the pool ({ $count }) is at its cap: add an app or raise a cap.
err-already_on_worker = Account #{ $id } is already on worker { $worker }.
err-no_session = Account #{ $id } has no session: log in first.
err-no_worker = Account #{ $id } is not assigned to a worker: move it to one first.
err-phone_required = The imported account's phone number is required.
err-phone_not_found = The session file names no phone number: name the file after it (<code>79991234567.session</code>) or add a <code>.json</code> with <code>"phone"</code>.
err-session_missing = Send a session string or a <code>.session</code> file.
err-session_unusable = Worker { $worker } cannot use this session: { $problem }
err-session_bot = This is a bot's session: the fleet runs user accounts. Nothing was imported.
err-session_unreadable =
    «{ $name }» is damaged or not a session: send a Telethon or Pyrogram <code>.session</code> file, a <code>.txt</code> with a session string, or a <code>.zip</code> of a <code>tdata</code> folder. Nothing was imported.
err-passcode_required = The tdata is locked with a local passcode.
err-passcode_wrong = Wrong local passcode. Send it again.
err-phones_count = Send { $count } phone numbers, one a line.
err-device = Invalid device identity: { $problem }
err-invalid_input = The worker refused the input: { $problem }
err-invalid_params = Invalid options: { $problems }
err-nothing_to_change = Nothing to change: give a first name, last name, bio, username or photo.
err-no_options = This operation takes no options.
err-password_empty = The new cloud password must not be empty.
err-photo_invalid = The photo is not a <code>JPEG</code> or <code>PNG</code> image.
err-photo_too_big = The photo is larger than { $mb } MB.
err-unknown_operation = There is no operation { $name }. Choose one of: { $known }.
err-invalid_config = The settings do not fit plugin { $plugin }: { $problems }
err-config_too_large = The settings are larger than { $kb } KB.
err-config_not_json = The settings are not valid <code>JSON</code> ({ $problem }).
err-config_not_object = The settings must be a <code>JSON</code> object.
err-unknown_plugin = There is no plugin { $name }. Available: { $known }.
err-plugin_broken = Plugin { $name } cannot be loaded: { $problem }
err-plugin_secret_not_stored = Account { $id } has no stored value of { $field } to keep (<code>***</code> keeps the stored one): give the value itself.
err-plugin_secret_unreadable = The stored secret settings of account { $id } do not open with this <code>SECRET_KEY</code>: give the values themselves.
err-plugin_secret_no_key = This process has no <code>SECRET_KEY</code>, which secret plugin settings need.

## Account operations (the card, a worker's accounts page), plugins, and their alerts

account-btn-check = 🩺 Check
account-btn-sessions = 📱 Sessions
account-btn-end_sessions = ✂️ End others
account-btn-two_fa = 🔐 2FA
account-btn-profile = 👤 Profile
account-btn-plugins = 🧩 Plugins
account-btn-export = 📤 Export

# Export from the account card: a session is a live credential
export-pick = 📤 Export the session of <b>{ $phone }</b>: choose a format.

    ⚠️ The file is a live credential: whoever has it can use the account.
export-confirm = Send the session of <b>{ $phone }</b> as { $format } to this chat?

    ⚠️ It is a live credential: anyone who gets the file can use the account. Save it somewhere safe, then delete it from the chat.
btn-yes_export = 📤 Yes, send it
export-caption = ⚠️ Live credential: the session of { $phone } ({ $format }). Anyone with this file can use the account: keep it private and delete it from this chat.
export-sidecar_caption = Its sidecar for the import: phone, API ID and hash, device, proxy.
export-sent = 📤 Session sent as { $format }. Delete the files from the chat once saved.
export-fmt-ts = Telethon string (.txt)
export-fmt-tf = Telethon .session
export-fmt-ps = Pyrogram string (.txt)
export-fmt-pf = Pyrogram .session
export-fmt-td = Telegram Desktop tdata (.zip)
account-btn-password = 🔑 Set or change the password
accounts-btn-check_all = 🩺 Check all
accounts-btn-end_sessions_all = ✂️ End other sessions for all
btn-yes_end = ✂️ Yes, end them
btn-no_password = 🆓 No password
btn-default_config = 📄 Default ({ $value })

check-never = 🩺 Not checked yet
check-line = 🩺 Check: { $verdict } · { $ago }{ $details }
check-spam = spam: { $status }
check-spam-free = no limits
check-spam-limited = limited
check-spam-unknown = unknown
check-spam-unknown_because = unknown ({ $reason })
check-restricted = restricted: { $reason }
check-other_sessions = { $n } other { $n ->
        [one] session
       *[other] sessions
    }
check-premium = Premium
verdict-ok = ✅ ok
verdict-limited = ⚠️ limited (spam)
verdict-restricted = 🔒 restricted by Telegram
verdict-unauthorized = 🚫 session revoked
verdict-banned = ⛔ banned

plugins-line = 🧩 Plugins: { $plugins }
plugin-state-running = 🟢 { $name }
plugin-state-failing = ⚠️ { $name } (failing: { $error })
plugin-state-blocked = 🐢 { $name } (blocks the event loop: { $error })
plugin-state-error = ❌ { $name } (did not load: { $error })
plugin-state-stopped = ⚪ { $name } (not running)

op-name-check = Check
op-name-sessions = Sessions
op-name-end_sessions = Ending other sessions
op-name-two_fa = Cloud password
op-name-profile = Profile
op-running = ⏳ { $op }…
op-timeout = ⌛ { $op }: the worker has not finished yet — refresh the card later.
op-flood = 🐢 { $op }: Telegram asked to wait { $seconds } s, it resumes by itself.
op-failed = ❌ { $op }: { $error }
op-lost = ❓ { $op }: { $error }
op-more = … and { $n } more
op-done-check = 🩺 Check: { $verdict }{ $details }
op-done-sessions = 📱 Other sessions: { $n }
op-done-no_sessions = 📱 No other sessions.
op-session = • { $device } — { $app } · { $place } · { $active }
op-done-ended = ✂️ Other sessions ended: { $n }
op-done-nothing_to_end = ✂️ No other sessions to end.
op-done-password_set = 🔐 A cloud password is set.
op-done-no_password = 🔐 No cloud password is set.
op-done-password_changed = 🔐 Cloud password changed.
op-done-profile = 👤 Profile changed: { $fields }
op-done-profile_same = 👤 Nothing changed in the profile.
op-end_sessions-confirm = End every other session of account <b>{ $phone }</b>? Only the fleet's own stays.

password-current =
    🔐 Send the <b>current</b> cloud password of { $phone }. The message is deleted as soon as the bot reads it.
    No password yet? Tap «No password».
password-new = 🔐 Send the <b>new</b> cloud password for { $phone }. The message is deleted at once.
password-repeat = 🔐 Send the new password for { $phone } <b>once more</b>.
password-mismatch = ❌ The passwords do not match. Send the new password for { $phone } again.

profile-pick = 👤 What to change in the profile of { $phone }?
profile-btn-first_name = First name
profile-btn-last_name = Last name
profile-btn-bio = Bio
profile-btn-username = Username
profile-btn-photo = 🖼 Photo
profile-field-first_name = first name
profile-field-last_name = last name
profile-field-bio = bio
profile-field-username = username
profile-field-photo = photo
profile-ask-first_name = 👤 Send the new first name for { $phone }.
profile-ask-last_name = 👤 Send the new last name for { $phone } (<code>-</code> to remove it).
profile-ask-bio = 👤 Send the new bio for { $phone }, up to 70 characters (<code>-</code> to remove it).
profile-ask-username = 👤 Send the new username for { $phone }: 5–32 letters, digits or underscores (<code>-</code> to remove it).
profile-ask-photo = 🖼 Send the new profile photo for { $phone } — as a photo or as a file (<code>JPEG</code> or <code>PNG</code>).
profile-expect_photo = Please send a photo — as a photo or as a file. Or /cancel.

plugins-title = 🧩 <b>Plugins</b> of { $phone }
plugins-none = No plugins are installed on this server.
plugins-hint = Tap a plugin to enable or disable it.
plugins-broken = cannot be used: { $error }
plugins-missing = not installed on this server
plugins-gone = This plugin is no longer on the server.
plugins-enabled = ✅ Plugin <b>{ $name }</b> enabled.
plugins-disabled = ⏹ Plugin <b>{ $name }</b> disabled.
plugins-config-ask = 🧩 Send the configuration of plugin <b>{ $name }</b> for { $phone } as a <code>JSON</code> object.
plugins-config-fields = Fields: { $fields } (* required)

batch-header = 🖥 <b>{ $worker }</b>
batch-progress = { $op }: { $done }/{ $total } done · ✅ { $ok } · ⚠️ { $warn } · ❌ { $bad }
batch-waiting = 🐢 Waiting as Telegram asked: { $n } (they resume by themselves)
batch-line = { $icon } { $phone }: { $text }
batch-finished = ✅ All done.
batch-timeout = ⌛ Not all have finished — the rest of the results will be on the accounts' cards.
batch-end_sessions-confirm = ✂️ End every other session of { $count } { $count ->
        [one] account
       *[other] accounts
    } on worker <b>{ $worker }</b>? Only the fleet's own sessions stay.
batch-check-confirm = 🩺 Check { $count } { $count ->
        [one] account
       *[other] accounts
    } on worker <b>{ $worker }</b>? Each account asks Telegram and @SpamBot once.
btn-yes_check = 🩺 Yes, check

alert-verdict_worse = ⚠️ Account { $account }: check got worse: { $before } → { $after }
alert-verdicts_worse = ⚠️ Check got worse on { $n } { $n ->
        [one] account
       *[other] accounts
    } (#{ $ids })
alert-plugin = 🔔 { $plugin } · { $account }: { $text }
alert-plugin_more = 🔔 And more messages from plugins: { $n }
alert-plugin_error = ❌ Plugin <b>{ $plugin }</b> failing on account { $account }: { $error }
alert-plugin_blocked = 🐢 Plugin <b>{ $plugin }</b> blocks the event loop of account { $account }: { $error }
alert-plugin_errors = ❌ Plugins failing on { $n } { $n ->
        [one] account
       *[other] accounts
    }: { $items }

err-no_accounts = No accounts match.
err-export_out = The export folder { $path } cannot be used.
err-export_exists = { $count } file(s) to be written exist already, e.g. { $path }.
err-export_skipped = Account #{ $id } was not exported: { $reason }.

## Proxies: the pool's list, a proxy's card, checks and removal

proxies-title = 🔌 <b>Proxies</b> — page { $page }/{ $pages }, { $total } in all
proxies-empty =
    🔌 The pool has no proxies yet. Add them from the console, for example:
    <code>python run_cli.py proxies add socks5://user:pass@host:port --group eu</code>
    A group is a region: the accounts of a proxy that dies move only to proxies of the same group.
proxies-row =
    { $state } <b>#{ $id }</b> <code>{ $proxy }</code>
    group { $group } · { $latency } · accounts { $load } · checked: { $checked }
proxies-btn-check_all = 🔎 Check all
proxies-checking = ⏳ Checking every proxy ({ $count }) from the workers…
proxies-checked = 🔎 Proxies checked: { $total } — { $ok } passed, { $failed } failed.
proxy-state-alive = 🟢 alive
proxy-state-slow = 🟡 slow
proxy-state-dead = 🔴 dead
proxy-state-unknown = ⚪ unknown
proxy-latency = { $ms } ms
proxy-load = { $accounts }/{ $cap }
proxy-load-uncapped = { $accounts }/∞
proxy-card =
    🔌 <b>Proxy #{ $id }</b> — { $state }
    Address: <code>{ $proxy }</code>
    Group: { $group }
    Accounts: { $load }
    Latency: { $latency }
    Last check: { $checked }
proxy-last_error = Last error: { $error } ({ $failures } in a row)
proxy-events = <b>Recent events:</b>
proxy-event = • { $when } — { $kind }{ $detail }{ $count ->
        [1] {""}
       *[other] {" "}(×{ $count })
    }
proxy-event-added = added
proxy-event-removed = removed
proxy-event-dead = 🔴 dead
proxy-event-alive = 🟢 back
proxy-event-no_spare = ⚠️ its accounts cannot move
proxy-btn-check = 🔎 Check
proxy-btn-remove = 🗑 Remove
proxy-btn-reassign = 🚚 Remove and move its accounts ({ $count })
proxy-checking = ⏳ Checking the proxy: a worker connects through it…
proxy-check-ok = ✅ Check passed: { $latency } (worker { $worker }).
proxy-check-failed = ❌ Check failed: { $error } (worker { $worker }).
proxy-remove-confirm = Remove proxy #{ $id } <code>{ $proxy }</code> from the pool?
proxy-reassign-confirm =
    Remove proxy #{ $id } <code>{ $proxy }</code> and move its accounts ({ $count }) to other proxies of group { $group }?
    Running accounts restart on their new proxy.
proxy-removed = 🗑 Proxy #{ $id } removed.
proxy-moved = Accounts moved: { $count }.
proxy-moved-line = • account #{ $account } → { $after }

## Bot commands (Telegram's command menu)

cmd-start = Main menu
cmd-workers = Workers
cmd-accounts = Accounts
cmd-add = Add an account
cmd-proxies = Proxies
cmd-summary = Fleet summary
cmd-language = Language
cmd-board = Board: statistics and reports
cmd-cancel = Cancel the current action
cmd-admins = Admins and their roles
cmd-audit = Audit log
cmd-mute = Mute alerts for a while

## Roles: who may do what

role-refused = ⛔ Your role does not allow this.
role-owner = Owner
role-operator = Operator
role-viewer = Viewer
role-moderator = Moderator
role-shell = command line
role-system = system
role-owner-about = everything, secrets included: session export, passwords, admins, the audit log
role-operator-about = workers, accounts, operations, plugins, proxies
role-viewer-about = sees what an operator sees, changes nothing
role-moderator-about = the board's section only

## Admins (owners only)

admins-title = 👥 <b>Admins</b> ({ $n })
admins-line = { $icon } { $role } · <code>{ $id }</code>{ $name }{ $source }
admins-from_env = {" "}— from ADMIN_IDS, changed only there
admins-btn-add = ➕ Add an admin
admin-card =
    { $icon } <b>{ $name }</b>
    Telegram ID: <code>{ $id }</code>
    Role: { $role } — { $about }
    Added by: { $by }, { $at }
admin-btn-role = Make: { $icon } { $role }
admin-btn-remove = 🗑 Remove from admins
admin-btn-no_name = No name
admin-remove-confirm = Remove admin <b>{ $name }</b> (<code>{ $id }</code>, { $role })? They lose access to the bot at once.
admin-removed = 🗑 Admin { $name } removed.
admin-role_set = ✅ New role: { $role }.
admin-added = ✅ Admin added.
admin-add-tg_id = ➕ Send the new admin's Telegram ID — a number (any bot that tells users their ID shows it).
admin-add-role = Which role for <code>{ $id }</code>?
admin-add-name = What to call <code>{ $id }</code> ({ $role }) in the list and the log? Send a name or tap “No name”.
admin-add-pick_role = Pick a role with a button, or /cancel.

## Audit log (owners only)

audit-title = 📜 <b>Audit log</b> (newest first, times in UTC)
audit-filter-actor = Who: <code>{ $value }</code>
audit-filter-target = Target: <code>{ $value }</code>
audit-empty = No entries.
audit-hint = Filters: <code>/audit account:17</code>, <code>/audit worker:fra-1</code>, <code>/audit actor bot:123</code> — or the 👤 and 🎯 buttons.
audit-row =
    <code>{ $at }</code> { $who } · { $role }
    { $action } → { $targets } { $outcome }
audit-more = and { $n } more
audit-btn-older = Older ▶️
audit-btn-newest = ◀️ Newest
audit-btn-all = ✖️ No filter

## Muting alerts (/mute)

mute-set = 🔕 Alerts muted until { $until }. To unmute earlier: <code>/mute off</code>
mute-on = 🔕 Alerts are muted until { $until }. To unmute: <code>/mute off</code>
mute-off_now = 🔔 Alerts are on. To mute them for a while: <code>/mute 2h</code> (or <code>30m</code>, <code>1d</code>).
mute-ended = 🔔 Alerts are on again.
mute-usage = “{ $given }” is not a period. For example: <code>/mute 30m</code>, <code>/mute 2h</code>, <code>/mute 1d</code> or <code>/mute off</code>.

err-admin_not_found = There is no admin with Telegram ID { $tg_id }.
err-admin_exists = Telegram ID { $tg_id } is an admin already.
err-admin_from_env = { $tg_id } is an owner by ADMIN_IDS: change them only there.
err-invalid_role = There is no role { $role }. The roles: <code>owner</code>, <code>operator</code>, <code>viewer</code>, <code>moderator</code>.
err-invalid_tg_id = That is not a Telegram ID: it is a positive number.
err-invalid_since = “{ $since }” is neither a period (<code>30m</code>, <code>1h</code>, <code>7d</code>) nor a date (<code>2026-12-01</code>).
