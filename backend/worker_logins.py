"""A Redis login of its own for each worker: an ACL user `fleet-worker-<name>` that reaches only that worker's keys,
queue and channels, with only the commands a worker runs. The control plane issues it (`issue`), says whether a
worker has one (`has_own_login`, `own_logins`) and deletes it with the worker (`revoke`).

What the login reaches (`rules_for`):
- read and write: the worker's own namespace (`fleet:worker:<name>` and `fleet:worker:<name>:*`: its info,
  owner, report, spec registry, rejected counters, proxy usage, leases, statuses, plugin statuses, event
  stream, operations' progress, and the messages it has taken but not acknowledged:
  `celery_app.app.unacked_keys`); its Celery queue (`worker.<name>` and Kombu's priority sub-queues), its
  remote-control queue, and the results of the tasks sent to it (`celery-task-meta-<name>:*`: every task id
  names its worker, `celery_app.contract.task_id_for`);
- read only: the control plane's public key, the plugins' version counter, `fleet:account:*` (assignments and
  plugin configurations, whose secret values are sealed) and every worker's leases (a lease script checks that
  no other worker holds an account);
- pub/sub: it listens to the remote-control broadcasts (`/<db>.celery.pidbox`: `celery inspect`, `control`)
  and nothing else; it publishes (a Redis 7 selector) Celery's events (`/<db>.celeryev/*`, read by Flower and
  `celery events` only) and the notices of its own results, and no broadcast: a worker's host cannot send
  `shutdown` to the fleet;
- shared, because every worker writes them or Celery's Redis transport needs them: `fleet:heartbeats` (an index
  for discovery: the backend judges a worker's liveness from its own report), `fleet:plugin:*` (plugins'
  key-value stores: plugin state, no credentials), `fleet:proxy:*:health` (each worker's latest check of a pool
  proxy, a field per worker), Kombu's `_kombu.binding*` (which queue an exchange routes to: queue names; a task
  goes to its worker's queue by name, never through them) and the reply queues of `celery inspect`
  (`*.reply.celery.pidbox`: workers' answers to an operator, no secrets).
So a worker host that is taken over gives away the accounts of that worker and can disturb the shared keys
above (forge a proxy check or an index entry; forge, copy or lose the answers to an operator's `celery
inspect`: disruption, not disclosure of a secret); it reads no other worker's registry, queue, results or
in-flight messages, pushes nothing onto another worker's queue, writes no other worker's status, lease,
operation or result, and stops no other worker. Administrative commands (CONFIG, FLUSHALL, ACL SETUSER,
MONITOR, DEBUG, ...) are refused to it, and so are KEYS and SCAN, which would list every key name of the fleet.

The password is made here (`secrets.token_urlsafe(32)`), sent to Redis in `ACL SETUSER` and handed back once in
the `IssuedLogin`; it is never logged, stored in the database or put into an event or the audit log. ACLs are
not replicated: with Redis Sentinel the login is set on the primary and on every replica the sentinels know, so
it still works after a failover. Where Redis has an ACL file (`aclfile`) it is saved there (`ACL SAVE`).
Needs Redis 7 (read-only key patterns, `%R~`, and selectors) and a control-plane login that may run ACL commands.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from redis import Redis
from redis.connection import parse_url
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from celery_app import keys
from celery_app.contract import TASK_ID_SEP
from common.errors import FleetError
from common.redis_target import SentinelTarget, open_sentinels, parse_target
from database import workers as workers_db
from database.audit import audited, named

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

USER_PREFIX = keys.WORKER_LOGIN_PREFIX
NODE_TIMEOUT = 3.0
UNANSWERED_SECONDS = 600.0  # after Redis would not say which workers have logins, how long it is not asked again
KOMBU_SEP = "\x06\x16"  # Kombu's separator: the priority sub-queues of `worker.w1` are `worker.w1` + SEP + digit
_NO_ACL_FILE = "not configured to use an ACL file"
NEWER_RULES = ("+client|setinfo",)  # rules a Redis 7.0 or 7.1 does not know: left out there
RESULT_KEY_PREFIX = "celery-task-meta-"  # Celery's Redis result backend: the result's key and its notice channel
BROADCAST_EXCHANGE = "celery.pidbox"  # remote control (`celery inspect`, `control.broadcast`): a worker listens
EVENT_EXCHANGE = "celeryev"  # Celery's events (worker-heartbeat, task-succeeded, ...): a worker sends them

# Commands: none, then the groups a worker uses, then the dangerous ones out again (later rules win), then the
# few single commands it needs from those.
COMMAND_RULES: tuple[str, ...] = (
    "-@all",
    *(
        f"+@{group}"
        for group in (
            "read",
            "write",
            "keyspace",
            "list",
            "hash",
            "string",
            "set",
            "sortedset",
            "stream",
            "pubsub",
            "scripting",
            "connection",
            "transaction",
        )
    ),
    "-@admin",
    "-@dangerous",
    "+info",
    "+wait",
    "+time",
    "+client|setinfo",  # Redis 7.2 and newer (left out where the server does not know it)
    "+client|setname",
    "+client|id",
    "+client|info",  # the address the worker shows (worker/address.py): its own connection only
    "+acl|whoami",
    "-flushall",
    "-flushdb",
    "-keys",
    "-scan",  # key names of the whole fleet; a worker reads its own keys by name
    "-randomkey",
    "-config",
    "-debug",
    "-shutdown",
    "-acl|setuser",
    "-acl|deluser",
    "-script|flush",
    "-function",
    "-publish",  # only to the channels the publishing selector names (`rules_for`): never a broadcast
    "-spublish",
)
# Shared keys every worker needs, and what it may only read (see the module's docstring for what each holds).
SHARED_RULES: tuple[str, ...] = (
    "~fleet:heartbeats",
    "~fleet:plugin:*",
    "~_kombu.binding*",
    "~*.reply.celery.pidbox",  # answers to `celery inspect` (an operator's tool) go onto the asker's reply queue
    "~fleet:proxy:*:health",  # each worker's latest check of a pool proxy (a field per worker)
    "%R~fleet:control:public_key",
    "%R~fleet:plugins:version",
    "%R~fleet:secret_canary",  # `run_worker.py --check` of a worker given SECRET_KEY: a ciphertext of a known value
    "%R~fleet:account:*",
    "%R~fleet:worker:*:lease:*",
)


class LoginError(FleetError):
    """Redis refused to issue, check or delete a worker's login; `code` says why."""


@dataclass(frozen=True)
class IssuedLogin:
    """What a worker host needs to log in as itself: shown once, kept nowhere."""

    worker: str
    username: str
    settings: dict[str, str] = field(repr=False)  # the .env's Redis lines, REDIS_URL first
    nodes: tuple[str, ...] = ()  # where it was set
    missed: tuple[str, ...] = ()  # data nodes it could not be set on, each with why
    saved: bool = False  # every node wrote it to its ACL file; else it lives in memory until Redis restarts

    @property
    def redis_url(self) -> str:
        return self.settings["REDIS_URL"]

    @property
    def env(self) -> str:
        """A `.env` for the worker host (no SECRET_KEY: a worker needs none)."""
        lines = [
            f"# The worker {self.worker}'s own Redis login ({self.username}). Keep this file mode 600.",
            f"WORKER_NAME={self.worker}",
            *(f"{name}={value}" for name, value in self.settings.items()),
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "redis_url": self.redis_url, "env": self.env}


def username_for(name: str) -> str:
    return f"{USER_PREFIX}{name}"


def rules_for(name: str, db: int = 0) -> list[str]:
    """The ACL rules of worker `name`'s login (after `reset on >password`) on Redis database `db` (Kombu names
    its pub/sub channels after it: `/0.celeryev/...`).

    The root may subscribe to the remote-control broadcasts and publish nowhere; a selector (Redis 7) may publish
    Celery's events and the notices of the worker's own results, and nothing else."""
    own = f"fleet:worker:{name}"
    queue = f"worker.{name}"
    results = f"{RESULT_KEY_PREFIX}{name}{TASK_ID_SEP}*"  # its own tasks' results only (`task_id_for`)
    keys = [f"~{own}", f"~{own}:*", f"~{queue}", f"~{queue}{KOMBU_SEP}*", f"~{name}@*.celery.pidbox*", f"~{results}"]
    listens = f"&/{db}.{BROADCAST_EXCHANGE}"  # Kombu PSUBSCRIBEs the very name: a pattern would not match it
    publishes = f"(+publish &/{db}.{EVENT_EXCHANGE}/* &{results})"
    return [*keys, *SHARED_RULES, listens, *COMMAND_RULES, publishes]


def _refusal(error: RedisError, where: str, password: str = "") -> LoginError:
    """What a Redis error on an ACL command means for the person who asked (the password, should Redis quote
    it, is masked)."""
    text = str(error).replace(password, "***") if password else str(error)
    if isinstance(error, NoPermissionError) or "NOPERM" in text:
        return LoginError(
            f"Redis at {where} refuses ACL commands to the control plane's login: give it a user that may run "
            "ACL (or the default user), or issue the login by hand",
            "acl_not_permitted",
            node=where,
        )
    if "unknown command" in text.lower() or "syntax error" in text.lower() or "%R" in text:
        return LoginError(
            f"Redis at {where} cannot issue a worker's own login: it needs Redis 7 or newer (ACL with read-only "
            "key patterns)",
            "acl_unsupported",
            node=where,
        )
    return LoginError(f"Redis at {where} refused the worker's login: {text.splitlines()[0] if text else error}")


def _set_user(client: Redis, command: list[str]) -> None:
    """ACL SETUSER, without the rules of newer servers that this one does not know."""
    try:
        client.execute_command(*command)
    except ResponseError as error:
        unknown = [rule for rule in NEWER_RULES if f"'{rule}'" in str(error)]
        if not unknown or isinstance(error, NoPermissionError):
            raise
        client.execute_command(*[part for part in command if part not in unknown])


def _address(host: object, port: object) -> str:
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def own_logins(redis: Redis, names: list[str]) -> dict[str, bool] | None:
    """Whether each worker has a login of its own (`ACL GETUSER`, in one round trip); None when Redis will not
    say (the login asking may not run ACL, or Redis is older than 6)."""
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.execute_command("ACL", "GETUSER", username_for(name))
    try:
        answers = pipe.execute()
    except ResponseError as error:  # NOPERM (NoPermissionError) or an unknown command
        log.debug("cannot tell which workers have their own Redis login: %s", error)
        return None
    return {name: bool(answer) for name, answer in zip(names, answers, strict=True)}


class WorkerLogins:
    """Issues, checks and deletes workers' Redis logins on the control plane's Redis (`target`, as
    `common.redis_target` spells it; with Sentinel, on every data node)."""

    def __init__(self, redis: Redis, target: str, sessions: sessionmaker[Session]) -> None:
        self.redis = redis
        self.target = target
        self.sessions = sessions  # the workers, and the audit log
        self._unanswered_until = 0.0  # monotonic time until which `has_own_login` does not ask (see there)

    # ---- issuing --------------------------------------------------------------------------------------

    @audited("worker.issue_login", named(("worker", "name")))
    def issue(self, name: str, actor: str) -> IssuedLogin:
        """A new login for a known worker (a new password if it had one: the old one stops working)."""
        with self.sessions() as session:
            workers_db.get_worker(session, name)  # WorkerNotFound for a name the fleet does not know
        password = secrets.token_urlsafe(32)
        user = username_for(name)
        command = ["ACL", "SETUSER", user, "reset", "on", f">{password}", *rules_for(name, self._db())]
        nodes: list[str] = []
        missed: list[str] = []
        saved = True
        for index, (where, client) in enumerate(self._data_nodes()):
            try:
                _set_user(client, command)
                saved = self._save(client) and saved
                nodes.append(where)
            except (ResponseError, NoPermissionError) as error:
                if index == 0:
                    raise _refusal(error, where, password) from None
                missed.append(f"{where}: {_refusal(error, where, password)}")
            except RedisError as error:
                if index == 0:
                    raise
                missed.append(f"{where}: unreachable ({str(error).splitlines()[0] if str(error) else error})")
            finally:
                if client is not self.redis:
                    client.close()
        log.info("issued the Redis login %s for worker %r on %s", user, name, ", ".join(nodes))
        for miss in missed:
            log.warning("the Redis login %s was not set on %s", user, miss)
        settings = self._settings(user, password, nodes[0])
        return IssuedLogin(name, user, settings, tuple(nodes), tuple(missed), saved)

    def _db(self) -> int:
        """The Redis database the fleet uses (the workers' Kombu names its channels after it)."""
        sentinel = parse_target(self.target)
        if sentinel is not None:
            return sentinel.db
        try:
            return int(parse_url(self.target).get("db") or 0)
        except ValueError:
            return 0

    def _save(self, client: Redis) -> bool:
        """ACL SAVE where Redis has an ACL file; False where it has none (the login is kept in memory only)."""
        try:
            client.execute_command("ACL", "SAVE")
        except ResponseError as error:
            if _NO_ACL_FILE in str(error):
                return False
            raise
        return True

    def _data_nodes(self) -> list[tuple[str, Redis]]:
        """The primary first (as the control plane's client reaches it), then each replica the sentinels name."""
        sentinel = parse_target(self.target)
        if sentinel is None:
            parts = urlsplit(self.target)
            where = (
                parts.path if parts.scheme == "unix" else _address(parts.hostname or "localhost", parts.port or 6379)
            )
            return [(where, self.redis)]
        primary, replicas = self._ask_sentinels(sentinel)
        found: list[tuple[str, Redis]] = [(_address(*primary), self._node(sentinel, primary))]
        found += [(_address(*replica), self._node(sentinel, replica)) for replica in replicas]
        return found

    def _ask_sentinels(self, sentinel: SentinelTarget) -> tuple[tuple[str, int], list[tuple[str, int]]]:
        errors: list[str] = []
        for address, client in open_sentinels(
            self.target, socket_timeout=NODE_TIMEOUT, socket_connect_timeout=NODE_TIMEOUT, decode_responses=True
        ):
            try:
                with client:
                    named_primary = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.master_name)
                    if not named_primary:
                        continue
                    replicas = client.sentinel_slaves(sentinel.master_name)
            except RedisError as error:
                errors.append(f"{_address(*address)}: {error}")
                continue
            primary = (str(named_primary[0]), int(named_primary[1]))
            return primary, [(str(r["ip"]), int(r["port"])) for r in replicas]
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError(
            f"no sentinel names a primary for {sentinel.master_name!r}" + (f" ({'; '.join(errors)})" if errors else "")
        )

    @staticmethod
    def _node(sentinel: SentinelTarget, address: tuple[str, int]) -> Redis:
        kwargs = sentinel.node_kwargs()
        kwargs.update(socket_timeout=NODE_TIMEOUT, socket_connect_timeout=NODE_TIMEOUT, decode_responses=True)
        return Redis(host=address[0], port=address[1], **kwargs)

    def _settings(self, user: str, password: str, primary: str) -> dict[str, str]:
        """REDIS_URL with the worker's user and password (and, with Sentinel, the sentinels' settings: REDIS_URL's
        host is then only for show, and is the `primary` found now)."""
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
        sentinel = parse_target(self.target)
        if sentinel is None:
            parts = urlsplit(self.target)
            host = parts.netloc.rpartition("@")[2]
            return {"REDIS_URL": urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, ""))}
        query = f"?{urlencode(sentinel.options)}" if sentinel.options else ""
        scheme = "rediss" if sentinel.tls else "redis"
        found = {
            "REDIS_URL": f"{scheme}://{userinfo}@{primary}/{sentinel.db}{query}",
            "REDIS_SENTINELS": ",".join(_address(*address) for address in sentinel.sentinels),
            "REDIS_MASTER_NAME": sentinel.master_name,
        }
        if sentinel.sentinel_password:
            found["REDIS_SENTINEL_PASSWORD"] = sentinel.sentinel_password
        return found

    # ---- checking and deleting ------------------------------------------------------------------------

    def has_own_login(self, name: str) -> bool | None:
        """Whether worker `name` has a login of its own; None when Redis will not say (the control plane's login
        may not run ACL, or Redis is older than 6)."""
        if time.monotonic() < self._unanswered_until:
            return None
        found = own_logins(self.redis, [name])
        if found is None:  # not asked again for a while: each refusal is an entry in Redis's ACL log
            self._unanswered_until = time.monotonic() + UNANSWERED_SECONDS
            return None
        return found[name]

    @audited("worker.revoke_login", named(("worker", "name")))
    def revoke(self, name: str, actor: str) -> bool:
        """Delete worker `name`'s login on every data node; True if one existed on the primary."""
        existed = False
        for index, (where, client) in enumerate(self._data_nodes()):
            try:
                deleted = client.execute_command("ACL", "DELUSER", username_for(name))
                self._save(client)
                existed = existed or (index == 0 and bool(deleted))
            except (ResponseError, NoPermissionError) as error:
                if index == 0:
                    raise _refusal(error, where) from None
                log.warning("the Redis login %s was not deleted on %s: %s", username_for(name), where, error)
            except RedisError as error:
                if index == 0:
                    raise
                log.warning("the Redis login %s was not deleted on %s: %s", username_for(name), where, error)
            finally:
                if client is not self.redis:
                    client.close()
        return existed
