"""Network guard: refuses any connection to a non-loopback address (tests must never reach Telegram).

The test session imports `install()` directly; subprocesses started by the tests get this directory on
PYTHONPATH with FLEET_NETGUARD=1, so Python imports it at start-up as `sitecustomize`. Every refused attempt
is also appended to the file named by FLEET_NETGUARD_LOG, which the test session checks after each test.
FLEET_NETGUARD_ALLOW=CIDR,… lets through the links a test built itself (the network-namespace fleet test's veth
subnets): only networks of at most 256 addresses inside the private ranges count; anything else stays refused.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket

_ALLOWED_HOSTNAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkGuardError(ConnectionRefusedError):
    pass


_PRIVATE_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@functools.cache
def _allowed_links(setting: str) -> tuple[ipaddress.IPv4Network, ...]:
    """The networks FLEET_NETGUARD_ALLOW names that may be a test's own link: small, inside a private range."""
    links = []
    for item in setting.split(","):
        try:
            network = ipaddress.ip_network(item.strip())
        except ValueError:
            continue
        private = any(network.subnet_of(r) for r in _PRIVATE_RANGES if network.version == r.version)
        if private and network.num_addresses <= 256:
            links.append(network)
    return tuple(links)  # type: ignore[arg-type]


def _is_loopback(host: object) -> bool:
    """Whether `host` is loopback, or an address on a link the test allowed (FLEET_NETGUARD_ALLOW)."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    text = str(host).strip("[]").split("%", 1)[0]
    if text.lower() in _ALLOWED_HOSTNAMES:
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address in link for link in _allowed_links(os.environ.get("FLEET_NETGUARD_ALLOW", "")))


def _refuse(what: str) -> None:
    log_path = os.environ.get("FLEET_NETGUARD_LOG")
    if log_path:
        with open(log_path, "a") as handle:
            handle.write(f"pid {os.getpid()}: {what}\n")
    raise NetworkGuardError(f"network guard: {what} refused (tests may reach only loopback addresses)")


def _check_address(family: int, address: object) -> None:
    if family == getattr(socket, "AF_UNIX", None):
        return
    if isinstance(address, tuple) and address and not _is_loopback(address[0]):
        _refuse(f"connection to {address[0]}:{address[1] if len(address) > 1 else '?'}")


def install() -> None:
    if getattr(socket, "_fleet_netguard", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_sendto = socket.socket.sendto
    original_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        _check_address(self.family, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        _check_address(self.family, address)
        return original_connect_ex(self, address)

    def sendto(self: socket.socket, data: bytes, *args: object) -> int:
        _check_address(self.family, args[-1])
        return original_sendto(self, data, *args)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if not _is_loopback(host):
            _refuse(f"name lookup of {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket._fleet_netguard = True  # type: ignore[attr-defined]


if os.environ.get("FLEET_NETGUARD") == "1":
    install()


class _BlockedImports:
    """FLEET_BLOCKED_IMPORTS=a,b: those packages cannot be imported in this process (what a host lacks)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: not installed on this host)")


if os.environ.get("FLEET_BLOCKED_IMPORTS"):
    import sys

    sys.meta_path.insert(0, _BlockedImports(set(os.environ["FLEET_BLOCKED_IMPORTS"].split(","))))  # type: ignore[arg-type]
