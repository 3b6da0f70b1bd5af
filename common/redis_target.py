"""Where the fleet's Redis is, as one string, and the one place that opens clients to it.

A target is either a single server's URL, as REDIS_URL spells it (`redis://`, `rediss://`, `unix://`), or a
primary found through Redis Sentinel, as `config` composes it from REDIS_URL, REDIS_SENTINELS,
REDIS_MASTER_NAME and REDIS_SENTINEL_PASSWORD:

    redis+sentinel://[user:password@]host:port,host:port,.../<master name>/<db>[?options]
    rediss+sentinel://...   TLS to the data nodes (REDIS_URL was rediss://)

The user, password, db and options (`ssl_ca_certs`, `ssl_cert_reqs`, ...) are REDIS_URL's, for the primary and
replicas; the sentinels themselves are spoken to in plain TCP, with `sentinel_password` (an option) if they
ask for one. Everything else in the project passes the target around as a string and opens clients here:
`open_redis` (redis-py, sync), `open_async_redis` (redis.asyncio: the bots' FSM storage) and
`celery_connection` (Celery's broker and result backend, through Kombu's `sentinel://` transport). A
Sentinel-backed client asks the sentinels for the primary on every new connection, so after a failover it
reconnects to the new primary by itself once the sentinels have promoted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

Address = tuple[str, int]
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme: TLS to the data nodes
SENTINEL_PASSWORD_OPTION = "sentinel_password"  # noqa: S105 - the option's name, not a password
DEFAULT_SENTINEL_PORT = 26379
_CERT_REQS = {"none": "CERT_NONE", "optional": "CERT_OPTIONAL", "required": "CERT_REQUIRED"}  # REDIS_URL's spellings


@dataclass(frozen=True)
class SentinelTarget:
    """A primary named `master_name`, found by asking `sentinels`; how to log in to it and select `db`."""

    sentinels: tuple[Address, ...]
    master_name: str
    db: int = 0
    tls: bool = False
    userinfo: str = ""  # REDIS_URL's `user:password`, still URL-quoted
    options: tuple[tuple[str, str], ...] = ()  # REDIS_URL's query: TLS files, timeouts
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def username(self) -> str | None:
        user = self.userinfo.partition(":")[0]
        return unquote(user) if user else None

    @property
    def password(self) -> str | None:
        _user, colon, password = self.userinfo.partition(":")
        return unquote(password) if colon else None

    def node_kwargs(self, asynchronous: bool = False) -> dict[str, Any]:
        """redis-py connection arguments for the primary and replicas (as REDIS_URL would give them)."""
        if asynchronous:
            from redis.asyncio.connection import parse_url
        else:
            from redis.connection import parse_url
        scheme = "rediss" if self.tls else "redis"
        auth = f"{self.userinfo}@" if self.userinfo else ""
        query = f"?{urlencode(self.options)}" if self.options else ""
        kwargs: dict[str, Any] = parse_url(f"{scheme}://{auth}sentinel-managed/{self.db}{query}")
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        if kwargs.pop("connection_class", None) is not None:  # rediss: redis-py's SSLConnection
            kwargs["ssl"] = True
        return kwargs

    def sentinel_kwargs(self, **client_kwargs: Any) -> dict[str, Any]:
        """Connection arguments for the sentinels: the client's socket options and the sentinels' password."""
        kwargs = {key: value for key, value in client_kwargs.items() if key.startswith("socket_")}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def tls_settings(self) -> dict[str, Any] | None:
        """The TLS options for Celery's `broker_use_ssl` / `redis_backend_use_ssl` (None without TLS): the
        certificate verified unless REDIS_URL said otherwise."""
        if not self.tls:
            return None
        import ssl  # not at import: `config` imports this module, and the CLI's --help must stay quick

        options = dict(self.options)
        asked = options.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
        settings: dict[str, Any] = {"ssl_cert_reqs": getattr(ssl, _CERT_REQS.get(asked, "CERT_REQUIRED"))}
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if name in options:
                settings[name] = options[name]
        return settings


# --- composing and reading targets -----------------------------------------------------------------------


def parse_sentinels(text: str) -> tuple[Address, ...]:
    """`host:port,host:port` (a bare host means port 26379; IPv6 in brackets) as addresses; ValueError naming
    the part that is not one."""
    addresses: list[Address] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        addresses.append(_address(part))
    if not addresses:
        raise ValueError("no sentinel address")
    return tuple(addresses)


def _address(part: str) -> Address:
    if part.startswith("["):
        host, bracket, rest = part[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") and rest[1:] else ("" if not rest else "x")
        if not bracket or not host:
            raise ValueError(part)
    else:
        host, colon, port_text = part.rpartition(":")
        if not colon:
            host, port_text = part, ""
        elif ":" in host or not port_text:
            raise ValueError(part)
    if not host or any(ch.isspace() or ch in "/@?#;," for ch in host):
        raise ValueError(part)
    if port_text == "":
        return host, DEFAULT_SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(part)
    return host, int(port_text)


def sentinel_target(
    redis_url: str, sentinels: tuple[Address, ...], master_name: str, sentinel_password: str | None = None
) -> str:
    """The target for a primary named `master_name` behind `sentinels`, logged in to and with the db and
    TLS of `redis_url` (its host and port are not used)."""
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("a Sentinel-managed Redis is reached over TCP: REDIS_URL must be redis:// or rediss://")
    options = parse_qsl(parts.query, keep_blank_values=True)
    db = parts.path.strip("/") or dict(options).get("db") or "0"
    options = [(key, value) for key, value in options if key != "db"]
    if sentinel_password:
        options.append((SENTINEL_PASSWORD_OPTION, sentinel_password))
    userinfo = parts.netloc.rpartition("@")[0]
    auth = f"{userinfo}@" if userinfo else ""
    hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in sentinels)
    query = f"?{urlencode(options, safe='/', quote_via=quote)}" if options else ""
    return f"{parts.scheme}+sentinel://{auth}{hosts}/{quote(master_name, safe='')}/{db}{query}"


def parse_target(target: str) -> SentinelTarget | None:
    """The Sentinel target `target` names, or None when it is a single server's URL."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES:
        return None
    location, _, query = rest.partition("?")
    netloc, _, path = location.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    master, _, db = path.partition("/")
    options = parse_qsl(query, keep_blank_values=True)
    sentinel_password = dict(options).get(SENTINEL_PASSWORD_OPTION)
    if not master:
        raise ValueError("a Sentinel target names its primary: .../<master name>/<db>")
    db_text = db.strip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"the db of a Sentinel target is a number, got {db_text!r}")
    return SentinelTarget(
        sentinels=parse_sentinels(hosts),
        master_name=unquote(master),
        db=int(db_text),
        tls=SENTINEL_SCHEMES[scheme],
        userinfo=userinfo,
        options=tuple((key, value) for key, value in options if key != SENTINEL_PASSWORD_OPTION),
        sentinel_password=sentinel_password or None,
    )


def uses_tls(target: str) -> bool:
    sentinel = parse_target(target)
    return sentinel.tls if sentinel else urlsplit(target).scheme == "rediss"


def first_host(target: str) -> Address | None:
    """A host the target reaches over the network (the first sentinel, or the server), None for a socket."""
    sentinel = parse_target(target)
    if sentinel:
        return sentinel.sentinels[0]
    parts = urlsplit(target)
    try:
        return (parts.hostname, parts.port or 6379) if parts.hostname else None
    except ValueError:
        return None


# --- opening clients -------------------------------------------------------------------------------------


def open_redis(target: str, **kwargs: Any) -> Redis:
    """A redis-py client for `target`: `Redis.from_url` for a single server, else one on the primary the
    sentinels name (`Sentinel.master_for`), which finds the new primary after a failover by itself."""
    from redis import Redis

    sentinel = parse_target(target)
    if sentinel is None:
        return Redis.from_url(target, **kwargs)
    from redis.sentinel import Sentinel

    manager = Sentinel(
        list(sentinel.sentinels), sentinel_kwargs=sentinel.sentinel_kwargs(**kwargs), **sentinel.node_kwargs()
    )
    return manager.master_for(sentinel.master_name, redis_class=Redis, **kwargs)


def open_async_redis(target: str, **kwargs: Any) -> AsyncRedis:
    """As `open_redis`, for asyncio (redis.asyncio)."""
    from redis.asyncio import Redis as AsyncRedis

    sentinel = parse_target(target)
    if sentinel is None:
        return AsyncRedis.from_url(target, **kwargs)
    from redis.asyncio.sentinel import Sentinel

    manager = Sentinel(
        list(sentinel.sentinels),
        sentinel_kwargs=sentinel.sentinel_kwargs(**kwargs),
        **sentinel.node_kwargs(asynchronous=True),
    )
    return manager.master_for(sentinel.master_name, redis_class=AsyncRedis, **kwargs)


def open_sentinels(target: str, **kwargs: Any) -> list[tuple[Address, Redis]]:
    """A plain client to each sentinel of a Sentinel target (for diagnostics); empty for a single server."""
    from redis import Redis

    sentinel = parse_target(target)
    if sentinel is None:
        return []
    options = {**kwargs, **sentinel.sentinel_kwargs(**kwargs)}
    return [(address, Redis(host=address[0], port=address[1], **options)) for address in sentinel.sentinels]


@dataclass(frozen=True)
class CeleryConnection:
    """Celery's broker and result backend settings for a target."""

    broker_url: str
    backend_url: str
    broker_options: dict[str, Any]  # merged into broker_transport_options
    backend_options: dict[str, Any]  # merged into result_backend_transport_options
    tls: dict[str, Any] | None  # broker_use_ssl and redis_backend_use_ssl; None: leave Celery's own reading


def celery_connection(target: str, **sentinel_socket: Any) -> CeleryConnection:
    """A single server: its URL for both, as ever. Sentinel: Kombu's `sentinel://` transport and Celery's
    Sentinel result backend (`sentinel://[:password@]host:port/db;...`), with the master name, the sentinels'
    password and socket options (`socket_timeout=...`: a sentinel that stops answering must not hang a call) in
    the transport options, and TLS (which a `sentinel://` URL cannot say) as settings."""
    sentinel = parse_target(target)
    if sentinel is None:
        return CeleryConnection(target, target, {}, {}, None)
    auth = f"{sentinel.userinfo}@" if sentinel.userinfo else ""
    url = ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{sentinel.db}"
        for host, port in sentinel.sentinels
    )
    options = {"master_name": sentinel.master_name, "sentinel_kwargs": sentinel.sentinel_kwargs(**sentinel_socket)}
    return CeleryConnection(url, url, dict(options), dict(options), sentinel.tls_settings())


def describe_redis_error(error: BaseException, target: str | None = None) -> str:
    """A Redis error in one line for people: redis-py's "no master found" carries the repr of every sentinel
    client it asked (pages of connection settings); this names the primary and the sentinels asked instead."""
    from redis.sentinel import MasterNotFoundError

    if isinstance(error, MasterNotFoundError):
        parsed = parse_target(target) if target else None
        if parsed is not None:
            asked = ", ".join(f"{host}:{port}" for host, port in parsed.sentinels)
            return f"no sentinel names a primary for {parsed.master_name!r} (asked {asked})"
        return "no sentinel names a primary"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
