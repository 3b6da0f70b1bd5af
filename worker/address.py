"""The address a worker shows admins when `WORKER_ADDRESS` is not set: the one Redis sees it connect from.

Redis says it (`CLIENT INFO`'s `addr`), on the connection the worker uses, whether Redis is one server or a
primary found through Sentinel, behind NAT or not: on a host with several interfaces, or a worker in a network
namespace of its own, it is the address the control host sees, which the host name is not. A connection over
loopback or a Unix socket says nothing about the host, so the host name is shown then, as it is when Redis
will not say (a Redis before 6.2, an ACL user denied CLIENT INFO).
"""

from __future__ import annotations

import ipaddress
import socket

from redis import Redis
from redis.exceptions import RedisError


def seen_by_redis(redis: Redis) -> str | None:
    """This client's address as Redis sees it, or None when Redis does not say or it is not an IP address."""
    try:
        addr = str(redis.client_info().get("addr", ""))
    except RedisError:
        return None
    host = addr.rpartition(":")[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a Unix socket's path, or nothing
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def own_address(redis: Redis, fallback: str | None = None) -> str:
    """The address to show for this worker: the one Redis sees, unless loopback; else the host name."""
    found = seen_by_redis(redis)
    if found is None or ipaddress.ip_address(found).is_loopback:
        return fallback or socket.gethostname()
    return found
