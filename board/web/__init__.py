"""The board's Telegram Mini App: the page in `board/webapp/` and its JSON API, served by one aiohttp app.

`create_web_app(service, bot_token, ...)` builds it; `auth` proves who calls the API (validated `initData`),
`api` holds the handlers, `openapi` the document served at `/api/openapi.json`.
"""

from board.web.api import create_web_app

__all__ = ["create_web_app"]
