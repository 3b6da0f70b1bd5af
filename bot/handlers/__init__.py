"""The bot's routers, one per area, each made by its module's `build_router()`; `bot.app` assembles them in order
(errors first, fallback last)."""
