## The board's texts in English. Project Fluent syntax: https://projectfluent.org
## Ids are the keys `board.texts.t` takes with dots as dashes (`error.ad_limit` is `error-ad_limit`).

## error

error-unknown_user = Open the bot first: /start
error-banned = A moderator has banned you: you cannot do this.
error-ad_not_found = Ad not found.
error-invite_not_found = Invitation not found.
error-chat_not_found = Chat not found.
error-report_not_found = Report not found.
error-own_ad = This is your own ad.
error-not_your_ad = This is not your ad.
error-ad_closed = The ad is closed or has expired.
error-already_invited = You have already written to this ad's author: the first message is sent once.
error-invite_limit = You have sent { $limit } { $limit ->
        [one] first message
       *[other] first messages
    } today. Try again tomorrow.
error-ad_limit = You already have { $limit } open { $limit ->
        [one] ad
       *[other] ads
    }: close one to post another.
error-invite_decided = This invitation has already been answered.
error-chat_ended = This chat has ended.
error-already_reported = You have already reported this.
error-bad_category = Unknown category.
error-title_empty = Write a title.
error-title_too_long = The title is longer than { $limit } { $limit ->
        [one] character
       *[other] characters
    }.
error-text_empty = Write the ad's text.
error-text_too_long = The text is longer than { $limit } { $limit ->
        [one] character
       *[other] characters
    }.
error-message_empty = The message is empty.
error-message_too_long = The message is longer than { $limit } { $limit ->
        [one] character
       *[other] characters
    }.
error-reason_too_long = The reason is longer than { $limit } { $limit ->
        [one] character
       *[other] characters
    }.
error-query_too_long = The search is longer than { $limit } { $limit ->
        [one] character
       *[other] characters
    }.
error-spam_link = Links and @mentions are not allowed.
error-spam_stop_word = The text contains forbidden words.
error-spam_repeated = This looks like spam: too much repetition.
error-spam_flood = You are sending too many similar texts.
error-no_ad = The report has no ad.
error-report_closed = This report has already been settled.
error-unauthorized = Open the board from Telegram: the sign-in data is missing, forged or stale.
error-bad_request = Bad request.
error-rate_limited = Too many requests. Wait a little.
error-not_found = Not found.

## category

category-services = Services
category-jobs = Jobs
category-sale = For sale
category-housing = Housing
category-dating = Dating
category-other = Other

## bot

bot-welcome = 
    👋 <b>Anonymous bulletin board</b>

    Browse ads and post your own in the Mini App. You may write one first message to an ad's author; if they accept it, an anonymous chat opens here: nobody sees your name or account.
bot-open_board = 📋 Open the board
bot-keyboard_hint = The “📋 Board” button below opens the board too.
bot-keyboard_button = 📋 Board
bot-menu_button = Board
bot-no_webapp = The board's web address is not configured: the Mini App is unavailable. Chat commands work.
bot-help = Commands: /mychats — your chats, /endchat — end a chat, /block — end and block, /report — report a chat. Everything else you write goes to your partner.
bot-unknown_command = Unknown command. /start — the beginning, /mychats — your chats.
bot-unknown_button = This button is out of date.
bot-banned = A moderator has banned you from the board.
bot-unavailable = The service is temporarily unavailable. Try again a little later.

## cmd

cmd-start = The board and a welcome
cmd-mychats = My anonymous chats
cmd-endchat = End a chat
cmd-block = End a chat and block
cmd-report = Report a chat

## invite

invite-new = 
    📨 <b>A new message about your ad “{ $title }”</b>

    { $message }
invite-accept = ✅ Accept
invite-decline = ❌ Decline
invite-report = 🚩 Report
invite-sent = ✉️ Your message went to the author of “{ $title }”. If they accept it, a chat opens here.
invite-accepted_author = ✅ Chat opened: <b>{ $partner }</b>. Write here — they get it all anonymously.
invite-accepted_guest = ✅ The author of “{ $title }” accepted your message. Chat opened: <b>{ $partner }</b>. Write here — your messages reach them anonymously.
invite-declined = Invitation declined. The sender will not be told.
invite-reported = 🚩 Report sent; the invitation is declined.
invite-bad_data = Could not read the data from the board. Open the board again and retry.

## chat

chat-partner = Partner { $alias } · { $title }
chat-none = You have no active chats. Open the board and write to an ad's author.
chat-list = 
    💬 <b>Your chats</b>
    { $chats }

    To write to a particular chat, reply to one of its messages.
chat-choose_send = Which chat should this message go to? (Replying to a chat's message picks the chat.)
chat-choose_end = Which chat should end?
chat-choose_block = Which chat should end with the partner blocked?
chat-choose_report = Which chat do you report?
chat-sent = ➡️ Sent: { $partner }
chat-pending_gone = This message was already sent or is out of date.
chat-ended_by_you = Chat ended: { $partner }.
chat-ended_by_partner = 🔚 { $partner } ended the chat.
chat-blocked = ⛔ { $partner } is blocked: the chat has ended and they cannot write to you again.
chat-reported = 🚩 Your report on “{ $partner }” went to the moderators.
chat-partner_gone = 🔚 { $partner } is unreachable: the chat has ended.
chat-ended_banned = 🔚 A moderator ended the chat: { $partner }.

## relay

relay-contact_refused = Contacts are not relayed: that would reveal who you are.
relay-unsupported = Not relayed. You can send text, photos, videos, voice, files, stickers, locations.
relay-failed = The message could not be delivered. Try again.

## error

error-report_limit = You have sent { $limit } { $limit ->
        [one] report
       *[other] reports
    } today. Try again tomorrow.
error-already_handled = The moderators are already dealing with this.
error-reopen_expired = An ad can be reopened only within { $minutes } { $minutes ->
        [one] minute
       *[other] minutes
    } of closing it.
error-invite_withdrawn = The sender can no longer be reached.
error-ad_not_hidden = The ad is not hidden.
error-author_banned = The ad's author is banned: it cannot come back.
error-report_closed_by_you = You have already settled this report.
error-no_reporter = The board itself filed this report: it has no reporter.
error-internal = Something went wrong on our side. Try again later.

## relay

relay-not_copied = ⚠️ This message cannot reach your partner ({ $partner }): Telegram would not copy it.
relay-not_delivered = ⚠️ Not delivered: the chat with { $partner } has ended.
relay-uncertain = ⚠️ This message may not have arrived: the bot restarted while sending it. Send it again if needed.

## ban

ban-notice = ⛔ A moderator has banned you from the board. Your ads are hidden and your chats ended. The decision is final.
