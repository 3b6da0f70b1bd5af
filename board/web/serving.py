"""Serving the board's aiohttp app: request lines up to 64 KiB reach the app (which answers an address over
`URL_LIMIT` with its own JSON 400), and what aiohttp still refuses before the app — a malformed or larger
request — is logged as one line, without a traceback or the request's content."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

MAX_REQUEST_LINE = 64 * 1024


class _BadRequestLine(logging.Filter):
    """aiohttp logs a request it could not parse with a traceback quoting the request: keep one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            record.msg = "refused a malformed HTTP request (%s)"
            record.args = (type(error).__name__,)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_filter = _BadRequestLine()


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner for the board's app (no access log: it would record who asked for what)."""
    server_log = logging.getLogger("aiohttp.server")
    if _filter not in server_log.filters:
        server_log.addFilter(_filter)
    return web.AppRunner(app, access_log=None, max_line_size=MAX_REQUEST_LINE)
