"""What the sentinels say about the fleet's Redis: the primary, its replicas and the sentinels themselves.

`survey(target)` asks every sentinel of a Sentinel target (common.redis_target) which primary it names, and the
primary (through the sentinel-managed client, when one is open) how far behind each replica is. `run_cli.py
doctor` shows it; a plain REDIS_URL has nothing to survey (`survey` returns None: "single Redis, no failover").
Addresses only: no password is part of what is gathered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from common.redis_target import open_sentinels, parse_target

SENTINEL_TIMEOUT = 2.0


@dataclass(frozen=True)
class SentinelSeen:
    address: str
    reachable: bool
    primary: str | None = None  # the primary this sentinel names
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "reachable": self.reachable, "primary": self.primary, "error": self.error}


@dataclass(frozen=True)
class ReplicaSeen:
    address: str
    state: str  # online, or the sentinels' flags for it (s_down, disconnected, ...)
    link: str  # its link to the primary: ok / err
    lag_seconds: float | None = None  # since the primary last heard from it (None: the primary does not list it)
    bytes_behind: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": self.state,
            "link": self.link,
            "lag_seconds": self.lag_seconds,
            "bytes_behind": self.bytes_behind,
        }


@dataclass(frozen=True)
class SentinelSurvey:
    master_name: str
    sentinels: list[SentinelSeen]
    replicas: list[ReplicaSeen] = field(default_factory=list)
    primary: str | None = None  # the address most sentinels name
    agree: int = 0  # how many sentinels name it

    @property
    def reachable(self) -> int:
        return sum(1 for sentinel in self.sentinels if sentinel.reachable)

    @property
    def online_replicas(self) -> int:
        return sum(1 for replica in self.replicas if replica.state == "online")

    def problems(self) -> list[str]:
        """What would keep a failover from happening, or from being followed."""
        majority = len(self.sentinels) // 2 + 1
        found: list[str] = []
        if self.primary is None:
            found.append(f"no sentinel names a primary for {self.master_name!r}")
        elif self.agree < majority:
            found.append(f"only {self.agree} of {len(self.sentinels)} sentinels name {self.primary}")
        if self.reachable < majority:
            found.append(f"{self.reachable} of {len(self.sentinels)} sentinels reachable: a failover needs {majority}")
        if self.primary is not None and not self.online_replicas:
            found.append("no replica online: a failover would have nothing to promote")
        return found

    def summary(self) -> str:
        primary = self.primary or "none"
        return (
            f"Sentinel {self.master_name!r}: primary {primary} named by {self.agree}/{len(self.sentinels)} sentinels, "
            f"{self.online_replicas} of {len(self.replicas)} replica(s) online"
        )

    def lines(self) -> list[str]:
        rows = [f"primary   {self.primary or 'none'}"]
        for replica in self.replicas:
            lag = "lag ?" if replica.lag_seconds is None else f"lag {replica.lag_seconds:g} s"
            behind = "" if replica.bytes_behind is None else f", {replica.bytes_behind} bytes behind"
            rows.append(f"replica   {replica.address}  {replica.state}  link {replica.link}  {lag}{behind}")
        for sentinel in self.sentinels:
            if sentinel.reachable:
                agrees = "agrees" if sentinel.primary == self.primary else "DISAGREES"
                rows.append(f"sentinel  {sentinel.address}  reachable  names {sentinel.primary or 'none'} ({agrees})")
            else:
                rows.append(f"sentinel  {sentinel.address}  UNREACHABLE  {sentinel.error}")
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "sentinel",
            "master_name": self.master_name,
            "primary": self.primary,
            "sentinels_agreeing": self.agree,
            "sentinels_reachable": self.reachable,
            "sentinels": [sentinel.to_json() for sentinel in self.sentinels],
            "replicas": [replica.to_json() for replica in self.replicas],
            "problems": self.problems(),
        }


def _address(host: object, port: object) -> str:
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _short(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def survey(target: str, primary_client: Redis | None = None) -> SentinelSurvey | None:
    """Ask each sentinel of `target` (None for a single server); `primary_client`, a client on the primary,
    adds each replica's lag as the primary sees it."""
    sentinel_target = parse_target(target)
    if sentinel_target is None:
        return None
    name = sentinel_target.master_name
    seen: list[SentinelSeen] = []
    replica_states: dict[str, dict[str, Any]] = {}
    for address, client in open_sentinels(
        target, socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT, decode_responses=True
    ):
        shown = _address(*address)
        try:
            with client:
                named = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
                if not replica_states:
                    for replica in client.sentinel_slaves(name):
                        replica_states[_address(replica["ip"], replica["port"])] = replica
        except RedisError as error:
            seen.append(SentinelSeen(shown, reachable=False, error=_short(error)))
            continue
        seen.append(SentinelSeen(shown, reachable=True, primary=_address(named[0], named[1]) if named else None))
    votes = Counter(sentinel.primary for sentinel in seen if sentinel.primary)
    primary, agree = votes.most_common(1)[0] if votes else (None, 0)
    lags = _lags_seen_by_primary(primary_client)
    replicas = [_replica(address, state, lags.get(address)) for address, state in sorted(replica_states.items())]
    return SentinelSurvey(name, seen, replicas, primary, agree)


def _replica(address: str, state: dict[str, Any], lag: tuple[float, int] | None) -> ReplicaSeen:
    flags = [flag for flag in str(state.get("flags", "")).split(",") if flag and flag not in ("slave", "replica")]
    return ReplicaSeen(
        address=address,
        state=",".join(flags) or "online",
        link=str(state.get("master-link-status", "?")),
        lag_seconds=lag[0] if lag else None,
        bytes_behind=lag[1] if lag else None,
    )


def _lags_seen_by_primary(client: Redis | None) -> dict[str, tuple[float, int]]:
    """{replica address: (seconds since its last acknowledgement, bytes behind)} from the primary's INFO."""
    if client is None:
        return {}
    try:
        info: dict[str, Any] = client.info("replication")
    except RedisError:
        return {}
    offset = int(info.get("master_repl_offset", 0) or 0)
    lags: dict[str, tuple[float, int]] = {}
    for key, value in info.items():
        if key.startswith("slave") and isinstance(value, dict) and "ip" in value:
            lags[_address(value["ip"], value["port"])] = (
                float(value.get("lag", 0)),
                max(0, offset - int(value.get("offset", 0))),
            )
    return lags
