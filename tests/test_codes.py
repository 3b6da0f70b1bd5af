"""Every detail and error code the workers and the control plane can emit has words in both of the admin bot's
catalogues, and asks for no value its code does not carry: a new code without a text fails here, instead of
showing English (or nothing) to a Russian admin. Nothing is translated back from English prose. Pure: no Redis.
(The board bot's codes are walked the same way in test_board_text.py.)"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from bot.details import detail_text, error_text
from bot.texts import LANGUAGES, _catalogue, has_text
from common.details import ENGLISH, Detail, UnknownDetail, codes_in, detail
from common.errors import CODES, FleetError, UnknownErrorCode

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("worker", "backend", "database", "bot", "celery_app", "common", "run.py", "run_worker.py", "run_backend.py")
ERROR_CLASSES = {
    "FleetError",
    "AccountError",
    "LoginError",
    "WorkerUnavailable",
    "InvalidInput",
    "__init__",
}  # and super()s


def sources() -> list[Path]:
    found: list[Path] = []
    for name in PRODUCT:
        path = ROOT / name
        found += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return found


def fields(code: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(ENGLISH[code]) if name}


def literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def literals(node: ast.expr | None) -> list[str]:
    """The codes an argument names: a literal, or both of a conditional's."""
    if isinstance(node, ast.IfExp):
        return literals(node.body) + literals(node.orelse)
    found = literal(node)
    return [found] if found is not None else []


def calls() -> list[tuple[Path, ast.Call, str]]:
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if isinstance(name, str):
                    found.append((path, node, name))
    return found


def test_every_detail_code_has_words_in_both_catalogues_for_the_values_it_carries() -> None:
    variables = {lang: _catalogue.variables(lang) for lang in LANGUAGES}
    for code in ENGLISH:
        for lang in LANGUAGES:
            assert has_text(lang, f"detail.{code}"), (lang, code)
            asked = variables[lang][f"detail-{code}"]
            assert asked <= fields(code), (lang, code, asked - fields(code))


def test_every_error_code_has_words_in_both_catalogues() -> None:
    for code in CODES:
        for lang in LANGUAGES:
            assert has_text(lang, f"err.{code}"), (lang, code)


def test_every_code_the_code_emits_is_registered_and_every_value_a_text_asks_for_is_given() -> None:
    """Walk the product's source: each `detail("code", ...)`, each error raised with a literal code, and the
    code maps (Telethon errors, operation failures, logins, plugin states) name registered codes."""
    variables = {lang: _catalogue.variables(lang) for lang in LANGUAGES}
    seen_details: set[str] = set()
    seen_errors: set[str] = set()
    for path, node, name in calls():
        for first in literals(node.args[0]) if node.args and name == "detail" else []:
            assert first in ENGLISH, f"{path}:{node.lineno}: detail code {first!r} is not in common.details.ENGLISH"
            given = {k.arg for k in node.keywords if k.arg}
            if not any(k.arg is None for k in node.keywords):  # no **values: the names must be there
                assert fields(first) <= given, f"{path}:{node.lineno}: {first} needs {fields(first) - given}"
            seen_details.add(first)
        if name == "detail":
            continue
        if name in ERROR_CLASSES:
            codes = literals(node.args[1]) if len(node.args) > 1 else []
            codes = codes or [c for k in node.keywords if k.arg == "code" for c in literals(k.value)]
            for code in codes:
                assert code in CODES, f"{path}:{node.lineno}: error code {code!r} is not in common.errors.CODES"
                seen_errors.add(code)
                given = {k.arg for k in node.keywords if k.arg} | {"message"}
                if not any(k.arg is None for k in node.keywords):
                    for lang in LANGUAGES:
                        asked = variables[lang][f"err-{code}"]
                        assert asked <= given, f"{path}:{node.lineno}: err-{code} ({lang}) asks for {asked - given}"
    # The walk found what it must (details of the worker, the backend and the database; errors of each layer).
    assert {"flood", "retry", "worker_offline_silent", "status_change", "moved", "plugin_blocked"} <= seen_details
    assert {
        "no_session",
        "start_refused",
        "restart_refused",
        "worker_not_found",
        "invalid_config",
        "no_answer",
    } <= seen_errors

    from worker import failures, login, operation_failures

    mapped = {*failures.UNAUTHORIZED.values(), *failures.BANNED.values(), *failures._PLAIN_CAUSES.values()}
    mapped |= {said for _, said in operation_failures._FAILURES.values()}
    assert mapped <= set(ENGLISH), mapped - set(ENGLISH)
    assert {code for code, _, _ in login._LOGIN_ERRORS.values()} <= set(CODES)


def test_unregistered_codes_are_programming_errors() -> None:
    with pytest.raises(UnknownDetail):
        detail("no_such_detail")
    with pytest.raises(UnknownErrorCode):
        FleetError("words", "no_such_error")
    assert Detail.from_json({"c": "no_such_detail", "p": {}}) is None  # from the wire: ignored, never raised
    assert Detail.decode("not json") is None and Detail.decode("") is None


def sample(code: str) -> Detail:
    values: dict[str, object] = {}
    for _, name, spec, _ in string.Formatter().parse(ENGLISH[code]):
        if name:
            values[name] = 3.0 if spec and spec[-1] in "fg" else ("banned" if name == "status" else f"<{name}>")
    return Detail(code, values)


@pytest.mark.parametrize("code", sorted(ENGLISH))
def test_every_detail_renders_in_both_languages_and_survives_the_wire(code: str) -> None:
    said = sample(code)
    back = Detail.decode(said.encode())
    assert back == said and codes_in(back) == {code}
    for lang in LANGUAGES:
        text = detail_text(lang, back)
        assert "<" not in text.replace("<code>", "").replace("</code>", "")  # values escaped, no stray markup
    words = "".join(part for part, _, _, _ in string.Formatter().parse(ENGLISH[code]))
    if any(ch.isalpha() for ch in words):  # not only values: it has words of its own in Russian
        assert detail_text("ru", said) != detail_text("en", said), code


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_error_renders_in_both_languages(code: str) -> None:
    values = {name: f"<{name}>" for lang in LANGUAGES for name in _catalogue.variables(lang)[f"err-{code}"]}
    values.pop("message", None)
    error = FleetError("English words <b>", code, **values)
    for lang in LANGUAGES:
        text = error_text(lang, error)
        assert not any(f"<{name}>" in text for name in values), text  # values are escaped
        if code not in ("error", "invalid"):  # those two show the error's own words
            assert "English words" not in text, (lang, code, text)  # the catalogue's text, not the fallback
