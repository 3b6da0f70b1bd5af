"""The OpenAPI 3 description of the Mini App's HTTP API, served at `GET /api/openapi.json`.

It is built from the same constants the service enforces (categories, length limits, per-user limits), so it
cannot drift from them; the test suite fuzzes the running API against it.
"""

from __future__ import annotations

from typing import Any

from board.service import CATEGORIES, PER_PAGE
from config import BoardLimits
from database.board_models import AD_TEXT_MAX, INVITE_MAX, REASON_MAX, TITLE_MAX, AdStatus

MAX_PAGE = 10_000
AD_ID_MAX = 24

_ERROR_CODES = {
    400: "Bad input: malformed JSON, a wrong type or an unknown field, an unknown or repeated query parameter, an "
    "address over 4 KiB (`bad_request`); an empty or too long text, an unknown category, a text refused as spam "
    "(with `field`, the input at fault).",
    401: "No valid `Authorization: tma <initData>`: missing, forged, stale or from the future (`unauthorized`).",
    403: "Not allowed: banned by a moderator, not your ad, your own ad.",
    404: "No such ad (or it is hidden: reporting it answers the same), or no such API path.",
    409: "Conflicts with what exists: the ad is closed or expired, you already wrote to it or reported it, its "
    "author is banned already (`already_handled`), it can no longer be reopened (`reopen_expired`).",
    429: "Too much: too many requests (`rate_limited`), first messages or reports today, or open ads.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(success: int, schema: dict[str, Any], description: str, *errors: int) -> dict[str, Any]:
    answers: dict[str, Any] = {str(success): _json(schema, description)}
    for status in sorted({401, 429, *errors}):
        answers[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return answers


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_AD_ID = {
    "name": "ad_id",
    "in": "path",
    "required": True,
    "description": "The ad's opaque id.",
    "schema": {"type": "string", "minLength": 1},
}


def openapi_document(limits: BoardLimits) -> dict[str, Any]:
    """The whole document for a board running with `limits`."""
    text = {"type": "string"}
    ad = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "title", "text", "category", "status", "created_at", "expires_at", "mine", "invited"],
        "properties": {
            "id": {"type": "string", "description": "Opaque id."},
            "title": text,
            "text": text,
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "status": {
                "type": "string",
                "enum": [status.value for status in AdStatus],
                "description": "`reported` (hidden by reports until reviewed) and `hidden` (by a moderator) are shown "
                "to the author only.",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": "string", "format": "date-time"},
            "mine": {"type": "boolean", "description": "The caller wrote this ad."},
            "invited": {"type": "boolean", "description": "The caller has already written to this ad."},
            "closed_at": {"type": "string", "format": "date-time", "nullable": True},
            "reopen_until": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "One's own closed ad can be reopened until then.",
            },
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "A stable code, e.g. `unauthorized`, `title_too_long`."},
                "message": {"type": "string", "description": "What to show the user, in their language."},
                "field": {"type": "string", "description": "The input at fault, when one is."},
            },
        },
        "Ad": ad,
        "AdsPage": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ads", "page", "pages", "total"],
            "properties": {
                "ads": {"type": "array", "items": _ref("Ad"), "maxItems": PER_PAGE},
                "page": {"type": "integer", "minimum": 0},
                "pages": {"type": "integer", "minimum": 1},
                "total": {"type": "integer", "minimum": 0},
            },
        },
        "MyAds": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ads"],
            "properties": {"ads": {"type": "array", "items": _ref("Ad")}},
        },
        "NewAd": {
            "type": "object",
            "additionalProperties": False,
            "required": ["title", "text", "category"],
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
                "text": {"type": "string", "minLength": 1, "maxLength": AD_TEXT_MAX},
                "category": {"type": "string", "enum": list(CATEGORIES)},
            },
        },
        "NewInvite": {
            "type": "object",
            "additionalProperties": False,
            "required": ["message"],
            "properties": {"message": {"type": "string", "minLength": 1, "maxLength": INVITE_MAX}},
        },
        "InviteCreated": {
            "type": "object",
            "additionalProperties": False,
            "required": ["invite_id"],
            "properties": {"invite_id": {"type": "string"}},
        },
        "NewReport": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": REASON_MAX}},
        },
        "ReportCreated": {
            "type": "object",
            "additionalProperties": False,
            "required": ["report_id"],
            "properties": {"report_id": {"type": "string"}},
        },
        "Categories": {
            "type": "object",
            "additionalProperties": False,
            "required": ["categories"],
            "properties": {
                "categories": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["id", "name"],
                        "properties": {"id": {"type": "string", "enum": list(CATEGORIES)}, "name": text},
                    },
                }
            },
        },
        "Me": {
            "type": "object",
            "additionalProperties": False,
            "required": ["lang", "banned", "limits"],
            "properties": {
                "lang": {"type": "string", "enum": ["ru", "en"]},
                "banned": {"type": "boolean"},
                "limits": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "title_max",
                        "text_max",
                        "message_max",
                        "reason_max",
                        "ads_per_user",
                        "invites_per_day",
                        "reports_per_day",
                        "ad_days",
                        "reopen_minutes",
                    ],
                    "properties": {
                        name: {"type": "integer", "minimum": 1}
                        for name in (
                            "title_max",
                            "text_max",
                            "message_max",
                            "reason_max",
                            "ads_per_user",
                            "invites_per_day",
                            "reports_per_day",
                            "ad_days",
                            "reopen_minutes",
                        )
                    },
                },
            },
        },
    }
    error_responses = {f"E{status}": _json(_ref("Error"), description) for status, description in _ERROR_CODES.items()}
    paths: dict[str, Any] = {
        "/api/me": {
            "get": {
                "operationId": "me",
                "summary": "The caller's language, ban status and the board's limits.",
                "responses": _responses(200, _ref("Me"), "The caller."),
            }
        },
        "/api/categories": {
            "get": {
                "operationId": "categories",
                "summary": "The categories, with names in the caller's language.",
                "responses": _responses(200, _ref("Categories"), "All categories."),
            }
        },
        "/api/ads": {
            "get": {
                "operationId": "listAds",
                "summary": f"Open ads, newest first, {PER_PAGE} a page; filtered by category and text.",
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "description": "Words the title or text contain (each word a prefix of one of theirs; case "
                        "and ё/е do not matter).",
                        "schema": {"type": "string", "maxLength": TITLE_MAX},
                    },
                    {
                        "name": "category",
                        "in": "query",
                        "description": "Only this category.",
                        "schema": {"type": "string", "enum": list(CATEGORIES)},
                    },
                    {
                        "name": "page",
                        "in": "query",
                        "description": "Page number, from 0.",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
                    },
                ],
                "responses": _responses(200, _ref("AdsPage"), "One page of ads.", 400),
            },
            "post": {
                "operationId": "createAd",
                "summary": f"Post an ad (it stays open {limits.ad_days} days; at most {limits.ads_per_user} open).",
                "requestBody": _body("NewAd"),
                "responses": _responses(201, _ref("Ad"), "The new ad.", 400, 403),
            },
        },
        "/api/me/ads": {
            "get": {
                "operationId": "myAds",
                "summary": "The caller's own ads (open, closed, hidden, expired), newest first.",
                "responses": _responses(200, _ref("MyAds"), "The caller's ads."),
            }
        },
        "/api/ads/{ad_id}": {
            "parameters": [_AD_ID],
            "get": {
                "operationId": "getAd",
                "summary": "One ad (a hidden one only to its author).",
                "responses": _responses(200, _ref("Ad"), "The ad.", 404),
            },
            "delete": {
                "operationId": "closeAd",
                "summary": "Close one's own ad (it can be reopened for a short while: see `reopen_until`).",
                "responses": _responses(200, _ref("Ad"), "The ad, now closed.", 403, 404),
            },
        },
        "/api/ads/{ad_id}/reopen": {
            "parameters": [_AD_ID],
            "post": {
                "operationId": "reopenAd",
                "summary": "Undo closing one's own ad, while `reopen_until` allows (it counts against the open ads).",
                "responses": _responses(200, _ref("Ad"), "The ad, back as it was.", 403, 404, 409),
            },
        },
        "/api/ads/{ad_id}/invite": {
            "parameters": [_AD_ID],
            "post": {
                "operationId": "inviteAd",
                "summary": "Write the one first message to an ad's author "
                f"(at most {limits.invites_per_day} a day); the author accepts or declines in the bot.",
                "requestBody": _body("NewInvite"),
                "responses": _responses(201, _ref("InviteCreated"), "Sent.", 400, 403, 404, 409),
            },
        },
        "/api/ads/{ad_id}/report": {
            "parameters": [_AD_ID],
            "post": {
                "operationId": "reportAd",
                "summary": f"Report an ad to the moderators (at most {limits.reports_per_day} a day).",
                "requestBody": _body("NewReport"),
                "responses": _responses(201, _ref("ReportCreated"), "Reported.", 400, 403, 404, 409),
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Anonymous board Mini App API",
            "version": "1.0.0",
            "description": "The HTTP API behind the board's Telegram Mini App. Every call proves who makes it with "
            "the Mini App's signed `initData` (`Authorization: tma <initData>`); no call takes or returns a "
            'Telegram id. Errors are `{"error": code, "message": text}` in the caller\'s language (with `"field"` '
            "naming the input at fault, when one is). Request bodies are JSON objects of at most 64 KiB with only "
            "the documented fields; query parameters are only the documented ones, each once.",
        },
        "servers": [{"url": "/"}],
        "security": [{"telegramInitData": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "telegramInitData": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`tma ` followed by `Telegram.WebApp.initData`, validated with the bot's token "
                    "and refused when older than a day or dated in the future.",
                }
            },
            "schemas": schemas,
            "responses": error_responses,
        },
    }
