"""The audit log (`AuditEntry`): who did what to which targets, with which parameters and how it ended.

A service method that changes state is wrapped in `@audited(action, targets=…, params=…)`: it records one row
when the outermost audited call returns or raises (an audited call made inside another — a bulk stop stopping
each account — is part of the outer one's row). The actor is the method's `actor` argument; the role they
acted in and their name come from `acting` (the bot sets it per update, the CLI per invocation), or from the
actor's kind (`cli:` a shell user, `backend` the system). Parameters are recorded with secrets masked.

Reading (`audit_entries`) and retention (`prune_audit`) are here too; nothing updates a row (the database's
trigger refuses it) and nothing but retention deletes one.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from common.redaction import safe_detail
from common.roles import SHELL_ROLE, SYSTEM_ROLE
from database.models import AuditEntry, utcnow

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

MASK = "***"
MAX_PARAMS = 2000  # characters of a row's parameters (JSON); longer is cut with an ellipsis
MAX_TARGETS_LISTED = 5000
# A parameter (or a key of a mapping given as one) whose name says it holds a secret is never written.
_SECRET_NAME = re.compile(r"pass|secret|token|hash|key|session|phone|code|url|cred|auth", re.IGNORECASE)
_TABLE = AuditEntry.__table__


@dataclass(frozen=True)
class Acting:
    """Who is acting in this context: their role and a name to show (an admin's, or `--as NAME`)."""

    role: str
    name: str = ""
    actor: str = ""  # for calls that take no `actor` argument (a login's later steps)


acting: ContextVar[Acting | None] = ContextVar("audit_acting", default=None)
_inside: ContextVar[bool] = ContextVar("audit_inside", default=False)


@contextlib.contextmanager
def acting_as(role: str, name: str = "", actor: str = "") -> Iterator[None]:
    token = acting.set(Acting(role, name, actor))
    try:
        yield
    finally:
        acting.reset(token)


def role_of(actor: str) -> Acting:
    """The role and name to record for `actor`: what the context says, else what its kind implies."""
    current = acting.get()
    if current is not None:
        return current
    if actor.startswith("cli"):
        return Acting(SHELL_ROLE)
    return Acting(SYSTEM_ROLE)


def masked(value: Any, name: str = "") -> Any:
    """A parameter as it may be written: secrets by name masked, text made safe (phones masked, short)."""
    if name and _SECRET_NAME.search(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        return [masked(v) for v in items[:50]] + ([f"… {len(items) - 50} more"] if len(items) > 50 else [])
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return safe_detail(str(value), limit=200)


def targets_text(targets: Iterable[str]) -> str:
    unique = list(dict.fromkeys(str(t) for t in targets if t is not None and str(t)))[:MAX_TARGETS_LISTED]
    return " " + " ".join(t.replace(" ", "_") for t in unique) + " "


def error_outcome(error: BaseException) -> str:
    code = getattr(error, "code", None)
    return f"error:{code}" if isinstance(code, str) and code else f"error:{type(error).__name__}"


def record_audit(
    session: Session,
    actor: str,
    action: str,
    targets: Iterable[str] = (),
    params: Mapping[str, Any] | None = None,
    outcome: str = "ok",
    at: datetime | None = None,
) -> None:
    """Append one row in the caller's transaction (the backend's own actions record this way)."""
    who = role_of(actor)
    text = json.dumps(masked(dict(params or {})), ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > MAX_PARAMS:
        text = text[: MAX_PARAMS - 1] + "…"
    session.execute(
        insert(_TABLE),
        [
            {
                "at": at or utcnow(),
                "actor": actor[:128],
                "actor_name": who.name[:64],
                "role": who.role[:16],
                "action": action[:48],
                "targets": targets_text(targets),
                "params": text,
                "outcome": outcome[:64],
            }
        ],
    )


TargetsOf = Callable[[Mapping[str, Any], Any], Iterable[str]]


def named(*pairs: tuple[str, str]) -> TargetsOf:
    """Targets from arguments: `named(("account", "account_id"))` gives `account:17`; an argument holding
    several values (a list of ids) gives one target each; a None argument none."""

    def targets(arguments: Mapping[str, Any], _result: Any) -> list[str]:
        found: list[str] = []
        for kind, name in pairs:
            value = arguments.get(name)
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            found += [f"{kind}:{item}" for item in values if item is not None and item != ""]
        return found

    return targets


def plus_results(base: TargetsOf, kind: str, attribute: str) -> TargetsOf:
    """`base`'s targets and one per item of the (list) result, by `attribute` (`account_id` of each result)."""

    def targets(arguments: Mapping[str, Any], result: Any) -> list[str]:
        items = result if isinstance(result, list) else []
        return [*base(arguments, result), *(f"{kind}:{getattr(item, attribute)}" for item in items)]

    return targets


def audited(
    action: str | Callable[[Mapping[str, Any]], str],
    targets: TargetsOf | None = None,
    params: Sequence[str] = (),
    outcome: Callable[[Any], str] | None = None,
    shown: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record one audit row per outermost call of the wrapped service method (its owner has `sessions`).

    `targets(arguments, result)` names what it acted on (`result` is None when it raised); `params` are the
    argument names to record; `outcome(result)` says how a returned call ended when not simply `ok`; `action`
    may depend on the arguments (`worker.activate` or `worker.deactivate` from one method); `shown(owner,
    params)` gives the parameters as they may be written where their names do not tell what is secret (a
    plugin's secret configuration keys), before the masking by name."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _inside.get():
                return method(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            owner = arguments.pop("self")
            token = _inside.set(True)
            try:
                result = method(*args, **kwargs)
            except Exception as error:
                _write(owner, action, arguments, None, error_outcome(error), targets, params, shown)
                raise
            finally:
                _inside.reset(token)
            _write(owner, action, arguments, result, outcome(result) if outcome else "ok", targets, params, shown)
            return result

        wrapper.audited = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _write(
    owner: Any,
    action: str | Callable[[Mapping[str, Any]], str],
    arguments: Mapping[str, Any],
    result: Any,
    ending: str,
    targets: TargetsOf | None,
    names: Sequence[str],
    shown: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    current = acting.get()
    actor = str(arguments.get("actor") or (current.actor if current else "") or "backend")
    try:
        named = list(targets(arguments, result)) if targets else []
    except Exception:  # noqa: BLE001 - a result without what targets expected (it raised half way)
        named = []
    recorded = {name: arguments.get(name) for name in names if name in arguments}
    if shown is not None:
        recorded = shown(owner, recorded)
    if callable(action):
        action = action(arguments)
    sessions: sessionmaker[Session] = owner.sessions
    with sessions.begin() as session:
        record_audit(session, actor, action, named, recorded, ending)


# --- reads and retention -----------------------------------------------------------------------------------


def audit_entries(
    session: Session,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[AuditEntry]:
    """Newest first. `actor` matches the actor (`bot:123`, `cli:ops`) or the recorded name, as a whole or a
    part; `target` matches one target as a whole word (`account:17`, `worker:fra-1`)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor:
        pattern = f"%{_like(actor)}%"
        by_actor = AuditEntry.actor.ilike(pattern, escape="\\")
        query = query.where(by_actor | AuditEntry.actor_name.ilike(pattern, escape="\\"))
    if target:
        query = query.where(AuditEntry.targets.like(f"% {_like(target.replace(' ', '_'))} %", escape="\\"))
    if action:
        query = query.where(AuditEntry.action.like(f"{_like(action)}%", escape="\\"))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return session.scalars(query).all()


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prune_audit(session: Session, older_than: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` rows recorded before `older_than` (retention); returns how many."""
    ids = session.scalars(select(AuditEntry.id).where(AuditEntry.at < older_than).limit(limit)).all()
    if ids:
        session.execute(delete(_TABLE).where(_TABLE.c.id.in_(ids)))
    return len(ids)
