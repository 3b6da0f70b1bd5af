"""The bot's routers, one per area; `bot.app` assembles them in order (fallback last)."""
