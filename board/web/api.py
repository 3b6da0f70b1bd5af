"""The Mini App's aiohttp application: its static page and the JSON API over `BoardService`.

Handlers are thin: prove the caller (`auth`), parse and type-check the input, call one service method in a
worker thread (the service is synchronous), render JSON. Every refusal is `{"error": code, "message": text}`
with the text in the caller's language; input the API cannot read is a 400, never a 500. The caller is always
the user the validated initData names: no endpoint takes a user id, and no answer carries a Telegram id.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from board.errors import BoardError, not_found
from board.service import CATEGORIES, BoardService, UserRef
from board.services.ad_states import REOPEN_WINDOW
from board.texts import lang_of, t
from board.web.auth import Unauthorized, authenticate, claimed_language
from board.web.openapi import AD_ID_MAX, MAX_PAGE, openapi_document
from database.board_models import AD_TEXT_MAX, INVITE_MAX, REASON_MAX, TITLE_MAX, ReportTarget

log = logging.getLogger(__name__)

WEBAPP_DIR = Path(__file__).resolve().parent.parent / "webapp"
TELEGRAM_SCRIPT_URL = "https://telegram.org/js/telegram-web-app.js"
LOCAL_SCRIPT_PATH = "/telegram-web-app.js"
# The page's scripts, in the order index.html loads them.
WEBAPP_SCRIPTS = ("i18n.js", "telegram.js", "views.js", "api.js", "app.js")
BODY_LIMIT = 64 * 1024
URL_LIMIT = 4096  # longer addresses are refused as bad requests (the server reads up to 64 KiB of one)
DEFAULT_REQUESTS_PER_MINUTE = 120

Wake = Callable[[], None]
_dumps = functools.partial(json.dumps, ensure_ascii=False)

USER_KEY = web.RequestKey("board_user", UserRef)
LANG_KEY = web.RequestKey("board_lang", str)
_PAGE = re.compile(r"[0-9]{1,5}")
_INTERNAL = {
    "ru": "Внутренняя ошибка. Попробуйте позже.",
    "en": "Something went wrong on our side. Try again later.",
}
_STATIC_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_CSP = (
    "default-src 'self'; script-src 'self' https://telegram.org; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


def _json_response(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def bad_request() -> BoardError:
    return BoardError("bad_request", 400)


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute on average, bursts up to the same number."""

    MAX_CALLERS = 50_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(max(1, per_minute))
        self.rate = self.capacity / 60.0
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # caller -> (tokens, when)

    def allow(self, caller: int) -> bool:
        now = self.clock()
        tokens, when = self._buckets.get(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if len(self._buckets) >= self.MAX_CALLERS and caller not in self._buckets:
            self._forget_idle(now)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            return False
        self._buckets[caller] = (tokens - 1.0, now)
        return True

    def _forget_idle(self, now: float) -> None:
        full_after = self.capacity / self.rate
        for caller, (_, when) in list(self._buckets.items()):
            if now - when >= full_after:
                del self._buckets[caller]
        if len(self._buckets) >= self.MAX_CALLERS:  # a flood of distinct callers: start over rather than grow
            self._buckets.clear()


def _safe_text(value: str) -> bool:
    """Text the database can store: no NUL (PostgreSQL refuses it) and no lone surrogates (not UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _json_body(request: web.Request, fields: tuple[str, ...]) -> dict[str, str]:
    """The request's JSON object, holding only `fields`, each a string (missing ones are "")."""
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        raise bad_request()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise bad_request() from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # malformed JSON, undecodable bytes, absurd nesting
        raise bad_request() from None
    if not isinstance(data, dict) or not set(data) <= set(fields):
        raise bad_request()
    values: dict[str, str] = {}
    for name in fields:
        value = data.get(name, "")
        if not isinstance(value, str) or not _safe_text(value):
            raise bad_request()
        values[name] = value
    return values


def _ad_id(request: web.Request) -> str:
    value = request.match_info["ad_id"]
    if not value or len(value) > AD_ID_MAX or not _safe_text(value):
        raise not_found("ad")
    return value


def _only_query(request: web.Request, names: tuple[str, ...] = ()) -> None:
    """Refuse query parameters the endpoint does not know, or repeats: a typo should not pass silently."""
    keys = [key for key, _value in request.query.items()]  # every occurrence (`.keys()` folds repeats)
    if len(keys) != len(set(keys)) or not set(keys) <= set(names):
        raise bad_request()


def _query_text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not _safe_text(value):
        raise bad_request()
    return value


def _error(lang: str, error: BoardError) -> web.Response:
    message = t(lang, f"error.{error.code}", **error.values)
    body: dict[str, object] = {"error": error.code, "message": message}
    if error.field:
        body["field"] = error.field
    return _json_response(body, status=error.status)


def _language_asked(request: web.Request) -> str:
    """The language to refuse an unproven caller in: what their initData claims, else Accept-Language."""
    claimed = claimed_language(request.headers.get("Authorization"))
    if claimed is None:
        claimed = request.headers.get("Accept-Language", "").split(",")[0].strip()
    return lang_of(claimed or "ru")


@dataclass
class BoardApi:
    service: BoardService
    bot_token: str
    on_enqueued: Wake | None
    max_age: float
    limiter: RateLimiter
    clock: Callable[[], float]
    index_html: bytes
    webapp_dir: Path
    telegram_script: Path | None

    # ---- middleware --------------------------------------------------------------------------------------

    @web.middleware
    async def errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        """Every failure as JSON in the caller's language; nothing unexpected leaks out as an HTML page."""
        try:
            if len(request.raw_path) > URL_LIMIT:
                raise bad_request()
            return await handler(request)
        except BoardError as error:
            return _error(request.get(LANG_KEY) or _language_asked(request), error)
        except web.HTTPNotFound:
            return _error(request.get(LANG_KEY) or _language_asked(request), BoardError("not_found", 404))
        except web.HTTPMethodNotAllowed as refusal:
            response = _error(request.get(LANG_KEY) or _language_asked(request), BoardError("bad_request", 405))
            response.headers["Allow"] = ",".join(sorted(refusal.allowed_methods))
            return response
        except web.HTTPRequestEntityTooLarge:
            return _error(request.get(LANG_KEY) or _language_asked(request), bad_request())
        except web.HTTPException:
            raise
        except Exception:
            log.exception("board API: %s %s failed", request.method, request.path)
            lang = request.get(LANG_KEY) or _language_asked(request)
            return _json_response({"error": "internal", "message": _INTERNAL[lang]}, status=500)

    @web.middleware
    async def caller(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        """Every /api call but the OpenAPI document proves its caller; `request[USER_KEY]` is who that is."""
        if not request.path.startswith("/api/") or request.path == "/api/openapi.json":
            return await handler(request)
        try:
            identity = authenticate(
                self.bot_token, request.headers.get("Authorization"), max_age=self.max_age, clock=self.clock
            )
        except Unauthorized as refusal:
            log.info("board API: refused %s %s: %s", request.method, request.path, refusal.reason)
            raise BoardError("unauthorized", 401) from None
        if not self.limiter.allow(identity.tg_id):
            request[LANG_KEY] = lang_of(identity.language_code)
            raise BoardError("rate_limited", 429)
        user = await asyncio.to_thread(self.service.user, identity.tg_id, identity.language_code)
        request[USER_KEY] = user
        request[LANG_KEY] = user.lang
        return await handler(request)

    # ---- API ---------------------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        _only_query(request)
        return _json_response(openapi_document(self.service.limits))

    async def me(self, request: web.Request) -> web.Response:
        _only_query(request)
        user = request[USER_KEY]
        limits = self.service.limits
        return _json_response(
            {
                "lang": user.lang,
                "banned": user.banned,
                "limits": {
                    "title_max": TITLE_MAX,
                    "text_max": AD_TEXT_MAX,
                    "message_max": INVITE_MAX,
                    "reason_max": REASON_MAX,
                    "ads_per_user": limits.ads_per_user,
                    "invites_per_day": limits.invites_per_day,
                    "reports_per_day": limits.reports_per_day,
                    "ad_days": limits.ad_days,
                    "reopen_minutes": int(REOPEN_WINDOW.total_seconds() // 60),
                },
            }
        )

    async def categories(self, request: web.Request) -> web.Response:
        _only_query(request)
        lang = request[LANG_KEY]
        return _json_response({"categories": [{"id": c, "name": t(lang, f"category.{c}")} for c in CATEGORIES]})

    async def list_ads(self, request: web.Request) -> web.Response:
        _only_query(request, ("q", "category", "page"))
        q = _query_text(request, "q") or ""
        category = _query_text(request, "category")
        page_text = request.query.get("page", "0")
        if not _PAGE.fullmatch(page_text) or int(page_text) > MAX_PAGE:
            raise bad_request()
        page = await asyncio.to_thread(self.service.list_ads, request[USER_KEY], q, category, int(page_text))
        return _json_response(page.to_json())

    async def create_ad(self, request: web.Request) -> web.Response:
        _only_query(request)
        body = await _json_body(request, ("title", "text", "category"))
        ad = await asyncio.to_thread(
            self.service.create_ad, request[USER_KEY], body["title"], body["text"], body["category"]
        )
        return _json_response(ad.to_json(), status=201)

    async def get_ad(self, request: web.Request) -> web.Response:
        _only_query(request)
        ad = await asyncio.to_thread(self.service.get_ad, request[USER_KEY], _ad_id(request))
        return _json_response(ad.to_json())

    async def close_ad(self, request: web.Request) -> web.Response:
        _only_query(request)
        ad = await asyncio.to_thread(self.service.close_ad, request[USER_KEY], _ad_id(request))
        return _json_response(ad.to_json())

    async def reopen_ad(self, request: web.Request) -> web.Response:
        _only_query(request)
        ad = await asyncio.to_thread(self.service.reopen_ad, request[USER_KEY], _ad_id(request))
        return _json_response(ad.to_json())

    async def my_ads(self, request: web.Request) -> web.Response:
        _only_query(request)
        ads = await asyncio.to_thread(self.service.my_ads, request[USER_KEY])
        return _json_response({"ads": [ad.to_json() for ad in ads]})

    async def invite(self, request: web.Request) -> web.Response:
        """The first message is stored with its delivery to the author queued, in one transaction (the outbox);
        the answer is the same whoever the author is and whatever stands between the two."""
        _only_query(request)
        ad_id = _ad_id(request)
        body = await _json_body(request, ("message",))
        sent = await asyncio.to_thread(self.service.send_invite, request[USER_KEY], ad_id, body["message"])
        if self.on_enqueued is not None:
            self.on_enqueued()
        return _json_response({"invite_id": sent.invite_id}, status=201)

    async def report(self, request: web.Request) -> web.Response:
        _only_query(request)
        ad_id = _ad_id(request)
        body = await _json_body(request, ("reason",))
        report_id = await asyncio.to_thread(
            self.service.report, request[USER_KEY], ReportTarget.AD, ad_id, body["reason"]
        )
        return _json_response({"report_id": report_id}, status=201)

    # ---- the page ----------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        headers = {**_STATIC_HEADERS, "Content-Security-Policy": _CSP}
        return web.Response(body=self.index_html, content_type="text/html", charset="utf-8", headers=headers)

    def static(self, name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        path = self.webapp_dir / name

        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={**_STATIC_HEADERS, "Content-Type": content_type})

        return serve

    async def telegram_stub(self, request: web.Request) -> web.StreamResponse:
        assert self.telegram_script is not None
        return web.FileResponse(
            self.telegram_script, headers={**_STATIC_HEADERS, "Content-Type": "text/javascript; charset=utf-8"}
        )


def _api_headers() -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")

    return on_prepare


def create_web_app(
    service: BoardService,
    bot_token: str,
    *,
    on_enqueued: Wake | None = None,
    max_age: float = 86400.0,
    webapp_dir: Path | None = None,
    telegram_script: Path | None = None,
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The Mini App's page (`/`, its `WEBAPP_SCRIPTS`, `/style.css`) and its API (`/api/...`) on one aiohttp app.

    `on_enqueued` is called after a first message is stored (with its delivery queued in the outbox), so the
    bot's outbox looks at once instead of at its next poll.
    `max_age`: how old a signed initData may be, in seconds. `telegram_script`: a local file served as
    `/telegram-web-app.js` and loaded by the page instead of Telegram's script (tests use a stub).
    `requests_per_minute`: each caller's API rate limit. `clock`: the time initData freshness is judged by.
    """
    directory = webapp_dir or WEBAPP_DIR
    index_html = (directory / "index.html").read_text(encoding="utf-8")
    if telegram_script is not None:
        index_html = index_html.replace(TELEGRAM_SCRIPT_URL, LOCAL_SCRIPT_PATH)
    api = BoardApi(
        service=service,
        bot_token=bot_token,
        on_enqueued=on_enqueued,
        max_age=max_age,
        limiter=RateLimiter(requests_per_minute),
        clock=clock,
        index_html=index_html.encode("utf-8"),
        webapp_dir=directory,
        telegram_script=telegram_script,
    )
    app = web.Application(middlewares=[api.errors, api.caller], client_max_size=BODY_LIMIT)
    app.on_response_prepare.append(_api_headers())
    app.router.add_get("/api/openapi.json", api.openapi)
    app.router.add_get("/api/me", api.me)
    app.router.add_get("/api/categories", api.categories)
    app.router.add_get("/api/ads", api.list_ads)
    app.router.add_post("/api/ads", api.create_ad)
    app.router.add_get("/api/me/ads", api.my_ads)
    app.router.add_get("/api/ads/{ad_id}", api.get_ad)
    app.router.add_delete("/api/ads/{ad_id}", api.close_ad)
    app.router.add_post("/api/ads/{ad_id}/reopen", api.reopen_ad)
    app.router.add_post("/api/ads/{ad_id}/invite", api.invite)
    app.router.add_post("/api/ads/{ad_id}/report", api.report)
    app.router.add_get("/", api.index)
    for script in WEBAPP_SCRIPTS:
        app.router.add_get(f"/{script}", api.static(script, "text/javascript; charset=utf-8"))
    app.router.add_get("/style.css", api.static("style.css", "text/css; charset=utf-8"))
    if telegram_script is not None:
        app.router.add_get(LOCAL_SCRIPT_PATH, api.telegram_stub)
    return app
