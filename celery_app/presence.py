"""Worker presence in Redis: registration, heartbeats and how liveness is read.

A worker owns its name through `keys.worker_owner(name)`, a key holding its instance id that expires after
WORKER_OFFLINE_AFTER unless heartbeats renew it; a second process cannot register a name that is owned.
Heartbeat times are Redis server time (Lua `TIME`), so a server whose clock is off is not judged by it.
Readers batch: one round trip returns every worker's last heartbeat (and, for the backend, the run id of the
Redis server that answered: a new one means a failover or a restart, whose heartbeats may have been lost).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields

from redis import Redis

from celery_app import keys


class Liveness(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def fence_after(offline_after: float) -> float:
    """Seconds without contact with Redis after which a worker stops all its clients (half a lease).

    Past this age of its last heartbeat a worker may have fenced itself: what it reported is no longer news.
    """
    return offline_after / 2


def liveness(last_heartbeat: float | None, now: float, offline_after: float) -> Liveness:
    """Online when the last heartbeat is no older than `offline_after` seconds."""
    if last_heartbeat is None or now - last_heartbeat > offline_after:
        return Liveness.OFFLINE
    return Liveness.ONLINE


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself when it registers (and answers to `ping`)."""

    name: str
    address: str
    host: str
    pid: int
    version: str
    started_at: float
    instance: str
    max_accounts: int = 0  # its capacity (WORKER_MAX_ACCOUNTS): it refuses starts beyond; 0: not said
    public_key: str = ""  # its key pair's public half (common.sealing); "": a worker from before keys

    def to_redis(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> WorkerInfo | None:
        try:
            return cls(
                name=raw["name"],
                address=raw.get("address", ""),
                host=raw.get("host", ""),
                pid=int(raw.get("pid", "0")),
                version=raw.get("version", ""),
                started_at=float(raw.get("started_at", "0")),
                instance=raw.get("instance", ""),
                max_accounts=int(raw.get("max_accounts", "0")),
                public_key=raw.get("public_key", ""),
            )
        except (KeyError, ValueError):
            return None

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_REGISTER = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] and current ~= ARGV[4] then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('ZADD', KEYS[3], now, ARGV[3])
local at = now
if ARGV[6] ~= '' then at = ARGV[6] end
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
local key = redis.call('HGET', KEYS[2], 'public_key') or ''
redis.call('HSET', KEYS[2], 'beat', now)
redis.call('HSET', KEYS[4], 'at', at, 'instance', ARGV[1], 'accounts', ARGV[5], 'server', server, 'key', key)
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return {1, ''}
"""

# A heartbeat renews the name, records the time and rewrites the report of what runs here, in one step; the
# report names the Redis server it was written on (its run id), so that one replicated from a primary that has
# failed over since is not read as news on the promoted one (`celery_app.report.read_reports`).
# The report's `at` is the Redis time taken just before the worker took its snapshot, when it passes one: a
# status hash written after the snapshot then always reads as newer than the report (see backend.observed).
_BEAT = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('ZADD', KEYS[2], now, ARGV[3])
local at = now
if ARGV[5] ~= '' then at = ARGV[5] end
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
redis.call('HSET', KEYS[3], 'at', at, 'instance', ARGV[1], 'accounts', ARGV[4], 'server', server)
redis.call('HSET', KEYS[4], 'beat', now)
redis.call('PEXPIRE', KEYS[3], ARGV[2])
if current then return 1 end
return 0
"""

_UNREGISTER = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


class BeatResult(enum.IntEnum):
    TAKEN = -1  # another process owns the name now: this one must stop
    REREGISTER = 0  # the ownership key was gone (Redis restarted or lost data): register again
    OK = 1


@dataclass(frozen=True)
class RegisterResult:
    registered: bool
    holder_instance: str | None = None


EMPTY_REPORT = "{}"


def register(
    redis: Redis,
    info: WorkerInfo,
    offline_after: float,
    take_over_from: str = "",
    report: str = EMPTY_REPORT,
    report_at: float | None = None,
) -> RegisterResult:
    """Claim the name for `info.instance` and publish its info, a first heartbeat and report, atomically."""
    flat: list[str] = []
    for key, value in info.to_redis().items():
        flat += [key, value]
    owner, holder = redis.eval(
        _REGISTER,
        4,
        keys.worker_owner(info.name),
        keys.worker_info(info.name),
        keys.HEARTBEATS,
        keys.worker_report(info.name),
        info.instance,
        int(offline_after * 1000),
        info.name,
        take_over_from,
        report,
        _time_arg(report_at),
        *flat,
    )
    if owner:
        return RegisterResult(True)
    return RegisterResult(False, holder.decode() if isinstance(holder, bytes) else str(holder))


def beat(
    redis: Redis,
    name: str,
    instance: str,
    offline_after: float,
    report: str = EMPTY_REPORT,
    report_at: float | None = None,
) -> BeatResult:
    """Renew ownership, record a heartbeat at Redis server time and rewrite the report (`celery_app.report`),
    stamped `report_at` (the Redis time before the snapshot) when given, else the heartbeat's time."""
    result = redis.eval(
        _BEAT,
        4,
        keys.worker_owner(name),
        keys.HEARTBEATS,
        keys.worker_report(name),
        keys.worker_info(name),
        instance,
        int(offline_after * 1000),
        name,
        report,
        _time_arg(report_at),
    )
    return BeatResult(int(result))


def _time_arg(at: float | None) -> str:
    return "" if at is None else f"{at:.6f}"


def unregister(redis: Redis, name: str, instance: str) -> bool:
    """Give up the name at a clean stop: the worker reads as offline at once."""
    return bool(
        redis.eval(_UNREGISTER, 3, keys.worker_owner(name), keys.HEARTBEATS, keys.worker_report(name), instance, name)
    )


def forget(redis: Redis, name: str) -> None:
    """Remove every trace of a worker name (used when an admin removes an offline worker): its keys, all of them
    under its own name (statuses, leases, events, ...)."""
    own = [keys.worker_info(name), *redis.scan_iter(match=f"{keys.worker_info(name)}:*", count=1000)]
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(keys.HEARTBEATS, name)
    pipe.delete(*own)
    pipe.execute()


def server_time(redis: Redis) -> float:
    seconds, micros = redis.time()
    return seconds + micros / 1_000_000


@dataclass(frozen=True)
class HeartbeatSnapshot:
    """Redis server time and every worker's last heartbeat, read in one round trip."""

    now: float
    beats: dict[str, float]
    primary: str = ""  # the run id of the Redis server that answered, when asked for (`with_primary`)

    def online(self, offline_after: float) -> list[str]:
        """The names of the workers heard from within `offline_after` seconds, sorted."""
        return sorted(
            name for name, beat in self.beats.items() if liveness(beat, self.now, offline_after) is Liveness.ONLINE
        )


# KEYS: the index. ARGV: the info key's prefix, then the names to read (none: every name in the index).
# Returns name, score, beat (the worker's own time of its last heartbeat, or false from a worker older than
# that) for each listed name that has registered: a name only in the index (anyone may write it) is nobody.
_READ_BEATS = """
local listed = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score then listed[#listed + 1] = ARGV[i]; listed[#listed + 1] = score end
  end
else
  listed = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
end
local reply = {}
for i = 1, #listed, 2 do
  local own = redis.call('HMGET', ARGV[1] .. listed[i], 'beat', 'name')
  if own[1] or own[2] then
    reply[#reply + 1] = listed[i]
    reply[#reply + 1] = listed[i + 1]
    reply[#reply + 1] = own[1]
  end
end
return reply
"""


def read_all_heartbeats(redis: Redis, with_primary: bool = False) -> HeartbeatSnapshot:
    """Every heartbeat and the server's time; with `with_primary`, from the same server, its run id."""
    return _read_beats(redis, [], with_primary)


def read_heartbeats(redis: Redis, names: list[str]) -> HeartbeatSnapshot:
    """The last heartbeat of each named worker that is in the index (`keys.HEARTBEATS`), at the time the worker
    wrote in its own keys: any worker may write the index, none another's keys, so a name put there by another
    reads at its own last heartbeat, and a name that never registered is not read at all."""
    if not names:
        return HeartbeatSnapshot(server_time(redis), {})
    return _read_beats(redis, names, False)


def _read_beats(redis: Redis, names: list[str], with_primary: bool) -> HeartbeatSnapshot:
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    pipe.eval(_READ_BEATS, 1, keys.HEARTBEATS, keys.worker_info(""), *names)
    if with_primary:
        pipe.info("server")
    (seconds, micros), flat, *server = pipe.execute()
    beats: dict[str, float] = {}
    for i in range(0, len(flat), 3):
        name, score, beat = _text(flat[i]), float(flat[i + 1]), flat[i + 2]
        # At its own time (a worker from before workers wrote it there: the index's).
        beats[name] = min(score, float(beat)) if beat else score
    primary = str(server[0].get("run_id", "")) if server else ""
    return HeartbeatSnapshot(seconds + micros / 1_000_000, beats, primary)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def present_key(redis: Redis, name: str, public_key: str) -> None:
    """A worker's new public key (after `workers rotate-key`), where its registration and its report say it."""
    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.worker_info(name), "public_key", public_key)
    pipe.hset(keys.worker_report(name), "key", public_key)
    pipe.execute()


def read_infos(redis: Redis, names: list[str]) -> dict[str, WorkerInfo]:
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.worker_info(name))
    infos: dict[str, WorkerInfo] = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        info = WorkerInfo.from_redis(decoded) if decoded else None
        if info is not None:
            infos[name] = info
    return infos
