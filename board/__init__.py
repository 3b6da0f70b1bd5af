"""The anonymous board: ads in a Telegram Mini App, one first message per ad, anonymous chats relayed by a bot.

It shares `config.py`, the database and Redis with the fleet and nothing else: it never imports `bot/`,
`backend/` or `worker/`. `service` holds the rules; `web` the Mini App and its HTTP API; `bot` the Telegram
side (invitations, the relay, commands); `run_board.py` runs both in one process.
"""
