"""`run_cli.py doctor`: checks configuration, the database and Redis, and says what is wrong with each.

With REDIS_SENTINELS the `failover` check shows the primary, the replicas and the sentinels as the sentinels
see them (backend.sentinel_survey); with a plain REDIS_URL it says there is no failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config import ConfigError, load_cli_settings, load_secret_key, mask_url

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    lines: tuple[str, ...] = ()  # the details, one per line, shown under the message
    details: dict[str, Any] | None = field(default=None)  # the same as data, for --json
    warning: bool = False  # ok, but worth a look (not counted as a problem)

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {"name": self.name, "ok": self.ok, "message": self.message}
        if self.warning:
            found["warning"] = True
        if self.details is not None:
            found["details"] = self.details
        return found


def _database_description(url: str, engine: object) -> str:
    """Which database: the SQLite file by its full path (and whether it holds anything), else the masked URL."""
    from sqlalchemy import func, select

    from database.models import Account, Worker

    where = mask_url(url)
    if url.startswith("sqlite:///"):
        where = f"SQLite file {url.removeprefix('sqlite:///').partition('?')[0]}"
    with engine.connect() as connection:  # type: ignore[attr-defined]
        workers = connection.scalar(select(func.count()).select_from(Worker)) or 0
        accounts = connection.scalar(select(func.count()).select_from(Account)) or 0
    if not workers and not accounts:
        return f"{where} (empty: no workers or accounts recorded yet)"
    return f"{where} ({workers} workers, {accounts} accounts)"


def _primary_of(redis: Redis) -> str:
    """`: primary HOST:PORT` for a Sentinel-managed client (the address it found), else nothing."""
    address = getattr(redis.connection_pool, "master_address", None)
    return f": primary {address[0]}:{address[1]}" if address else ""


def failover_check(target: str, redis: Redis | None) -> Check:
    """What the sentinels see (primary, replicas with their lag, sentinels reachable and agreeing), or that
    there is one Redis and no failover."""
    from backend.sentinel_survey import survey

    seen = survey(target, redis)
    if seen is None:
        return Check("failover", True, "single Redis, no failover", details={"mode": "single"})
    problems = seen.problems()
    message = seen.summary() + (f": {'; '.join(problems)}" if problems else "")
    return Check("failover", not problems, message, tuple(seen.lines()), seen.to_json())


def run_checks() -> list[Check]:
    checks: list[Check] = []
    try:
        settings = load_cli_settings()
    except ConfigError as error:
        return [Check("config", False, str(error))]
    checks.append(Check("config", True, f"offline after {settings.timing.offline_after:g} s"))
    try:
        load_secret_key()
        checks.append(Check("secret", True, "SECRET_KEY set"))
    except ConfigError as error:
        checks.append(Check("secret", False, f"{error} (needed by workers and account commands)"))

    from backend.connections import ServiceUnavailable, connect_database, connect_redis

    engine = None
    try:
        engine, _sessions = connect_database(settings.database_url)
        from database.engine import current_revision

        described = _database_description(settings.database_url, engine)
        checks.append(Check("database", True, f"{described}, schema {current_revision(engine)}"))
    except ServiceUnavailable as error:
        checks.append(Check("database", False, str(error)))

    try:
        redis = connect_redis(settings.redis_url)
        version = redis.info("server").get("redis_version", "?")
        checks.append(Check("redis", True, f"{mask_url(settings.redis_url)}{_primary_of(redis)} (server {version})"))
    except ServiceUnavailable as error:
        checks.append(Check("redis", False, str(error)))
        checks.append(failover_check(settings.redis_url, None))
        return checks
    checks.append(failover_check(settings.redis_url, redis))

    from celery_app import keys, presence

    leader = redis.get(keys.BACKEND_LEADER)
    checks.append(
        Check(
            "backend",
            bool(leader),
            "a backend is reconciling" if leader else "no backend running: start `python run_backend.py`",
        )
    )
    snapshot = presence.read_all_heartbeats(redis)
    online = [
        name
        for name, beat in snapshot.beats.items()
        if presence.liveness(beat, snapshot.now, settings.timing.offline_after) is presence.Liveness.ONLINE
    ]
    checks.append(Check("workers", True, f"{len(online)} online"))
    if engine is not None:
        checks.append(
            keys_check(engine, sorted(n for n, i in presence.read_infos(redis, online).items() if not i.public_key))
        )
        checks.append(logins_check(engine, redis))
    return checks


def logins_check(engine: Any, redis: Redis) -> Check:
    """Workers that log in to Redis with the shared login (no `fleet-worker-NAME` of their own): a warning, as is a
    control plane that may not ask (said once)."""
    from sqlalchemy import select

    from backend.worker_logins import own_logins
    from database.models import Worker

    with engine.connect() as connection:
        names = sorted(connection.scalars(select(Worker.name)))
    found = own_logins(redis, names)
    if found is None:
        return Check(
            "worker logins",
            True,
            "cannot tell which workers have their own Redis login: the control plane's Redis login may not run ACL "
            "commands (or Redis is older than 6)",
            warning=True,
        )
    shared = [name for name in names if not found[name]]
    if not shared:
        said = "every worker has its own Redis login" if names else "no workers recorded"
        return Check("worker logins", True, said, details={"shared": []})
    lines = tuple(f"shared Redis login: {name} (`run_cli.py workers login {name}` issues its own)" for name in shared)
    message = (
        f"{len(shared)} of {len(names)} worker(s) use the shared Redis login: each can reach every worker's keys "
        "and queues"
    )
    return Check("worker logins", True, message, lines, {"shared": shared}, warning=True)


def keys_check(engine: Any, keyless: list[str]) -> Check:
    """Workers presenting a key other than their pinned one (given no work), and online ones presenting none."""
    from sqlalchemy import select

    from database.models import Worker

    with engine.connect() as connection:
        untrusted = sorted(connection.scalars(select(Worker.name).where(Worker.pending_key.is_not(None))))
    lines = [
        f"untrusted key, given no work: {name} (`run_cli.py workers trust {name}` if you reinstalled it)"
        for name in untrusted
    ]
    lines += [f"no key presented (a worker from before keys): {name}" for name in keyless]
    if untrusted:
        return Check("worker keys", False, f"{len(untrusted)} worker(s) present an untrusted key", tuple(lines))
    said = (
        f"{len(keyless)} online worker(s) present no key" if keyless else "every online worker presents its pinned key"
    )
    return Check("worker keys", True, said, tuple(lines))
