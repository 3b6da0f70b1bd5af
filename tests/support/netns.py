"""Workers on hosts that really are apart: each in a network namespace of its own, linked to this host by veths.

This host plays the control host (Redis, the backend, the CLI, the bot). Each `Host` is a namespace with two
links to it, each a veth pair on a /24 of its own inside 10.231.0.0/16 (the namespace's end is `.2`, ours `.1`):
- `control`: the worker's way to the fleet's Redis. Cutting it (`NetnsLab.cut`: our end down, the process left
  running) is the partition between a worker host and the control host;
- `internet`: its way to Telegram (the fake Telegram's state), which a worker host keeps when its link to the
  control host fails, so Telegram sees the clients the fence stops go.
Servers the namespaces reach listen on loopback and on our ends of the links (`listen_on`), never on 0.0.0.0;
the network guard lets the worker processes reach those links alone (`allowlist` → FLEET_NETGUARD_ALLOW).
Names carry this process's pid; `close()` deletes every namespace and veth it made, and a new lab first
deletes those left by test processes that died before their clean-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from tests.support.stack import ROOT, Stack
from worker.presence import pid_alive

SUBNETS = "10.231"  # the /16 whose /24s the links take
_OURS = re.compile(r"^(?:fleet-(\d+)-\d+|f[ci](\d+)h\d+)$")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    probe = f"fleet-{os.getpid()}-0"
    try:
        made = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`ip netns` cannot run here: {error}"
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


@dataclass(frozen=True)
class Link:
    """One veth pair: `host_if` with `host_address` here, `ns_if` with `ns_address` in the namespace."""

    host_if: str
    ns_if: str
    subnet: int  # the third octet: 10.231.<subnet>.0/24

    @property
    def network(self) -> str:
        return f"{SUBNETS}.{self.subnet}.0/24"

    @property
    def host_address(self) -> str:
        return f"{SUBNETS}.{self.subnet}.1"

    @property
    def ns_address(self) -> str:
        return f"{SUBNETS}.{self.subnet}.2"


@dataclass(frozen=True)
class Host:
    """A worker host: its namespace, its link to the control host and its link to the Internet."""

    namespace: str
    control: Link
    internet: Link

    @property
    def address(self) -> str:
        """What the control host sees this host as."""
        return self.control.ns_address

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


class NetnsLab:
    """Namespaces made for one test; `close()` removes them all, whatever happened in between."""

    def __init__(self, tag: int | None = None) -> None:
        self.tag = tag or os.getpid()
        self.hosts: list[Host] = []
        remove_leftovers()

    def add_host(self) -> Host:
        index = len(self.hosts) + 1
        control_subnet, internet_subnet = self._free_subnets(2)
        host = Host(
            namespace=f"fleet-{self.tag}-{index}",
            control=Link(f"fc{self.tag}h{index}", f"fc{self.tag}n{index}", control_subnet),
            internet=Link(f"fi{self.tag}h{index}", f"fi{self.tag}n{index}", internet_subnet),
        )
        self.hosts.append(host)  # recorded before it exists: close() removes what was half made
        ip("netns", "add", host.namespace)
        ip("-n", host.namespace, "link", "set", "lo", "up")
        for link in (host.control, host.internet):
            ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if)
            ip("link", "set", link.ns_if, "netns", host.namespace)
            ip("addr", "add", f"{link.host_address}/24", "dev", link.host_if)
            ip("-n", host.namespace, "addr", "add", f"{link.ns_address}/24", "dev", link.ns_if)
            ip("link", "set", link.host_if, "up")
            ip("-n", host.namespace, "link", "set", link.ns_if, "up")
        return host

    def _free_subnets(self, count: int) -> list[int]:
        """/24s of 10.231.0.0/16 no address of this host is on, starting at a place the pid picks (two test
        processes making labs at once start far apart)."""
        shown = ip("-o", "-4", "addr", "show").stdout
        used = {int(octet) for octet in re.findall(rf"inet {re.escape(SUBNETS)}\.(\d+)\.", shown)}
        used |= {link.subnet for host in self.hosts for link in (host.control, host.internet)}
        start = (self.tag % 60) * 4
        found = [s for s in ((start + step) % 250 + 1 for step in range(250)) if s not in used][:count]
        if len(found) < count:
            raise RuntimeError(f"no free /24 left in {SUBNETS}.0.0/16")
        return found

    @property
    def allowlist(self) -> str:
        """FLEET_NETGUARD_ALLOW for the processes of this test: every link of this lab, nothing more."""
        return ",".join(link.network for host in self.hosts for link in (host.control, host.internet))

    def cut(self, host: Host) -> None:
        """The partition: the host's link to the control host goes down; its processes keep running."""
        ip("link", "set", host.control.host_if, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.control.host_if, "up")

    def close(self) -> None:
        for host in self.hosts:
            ip("netns", "delete", host.namespace, check=False)  # takes the namespace's ends of its veths
            for link in (host.control, host.internet):
                ip("link", "delete", link.host_if, check=False)
        self.hosts = []


def remove_leftovers() -> None:
    """Namespaces and veths named by a test process that no longer runs (killed before its clean-up)."""
    names = ip("netns", "list", check=False).stdout.split()
    names += re.findall(r"^\d+: ([^:@\s]+)", ip("-o", "link", "show", check=False).stdout, re.MULTILINE)
    for name in names:
        match = _OURS.match(name)
        if match is None or pid_alive(int(match.group(1) or match.group(2))):
            continue
        if name.startswith("fleet-"):
            ip("netns", "delete", name, check=False)
        else:
            ip("link", "delete", name, check=False)


def listen_on(server_url: str, addresses: list[str], password: str) -> str:
    """Make the Redis at `server_url` (loopback, no password yet) require `password` and listen on loopback and
    `addresses` as well; returns its URL with the password, on loopback."""
    client = Redis.from_url(server_url)
    client.config_set("bind", " ".join(["127.0.0.1", *addresses]))
    client.config_set("requirepass", password)
    client.close()
    return server_url.replace("redis://", f"redis://:{password}@", 1)


def on_host(url: str, address: str) -> str:
    """`url` (a loopback Redis URL) as a process in a namespace reaches it: through our end of its link."""
    return url.replace("@127.0.0.1:", f"@{address}:", 1)


def spawn_in(
    stack: Stack, host: Host, script: str, *args: str, env: dict[str, str], log_name: str
) -> subprocess.Popen[bytes]:
    """Start an entry point as `Stack.spawn` does, in `host`'s namespace (`ip netns exec` execs it: same pid)."""
    log_path: Path = stack.workdir / f"{log_name}-{len(stack.processes)}.log"
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(
            [*host.exec_prefix(), sys.executable, str(ROOT / script), *args],
            cwd=stack.workdir,
            env={**stack.env, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    stack.processes.append(process)
    stack.logs[process.pid] = log_path
    return process
