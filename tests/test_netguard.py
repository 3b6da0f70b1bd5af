"""The guard that keeps every test (and every process a test starts) on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netguard.sitecustomize import NetworkGuardError
from tests.support.stack import NETGUARD_DIR


def test_non_loopback_connections_are_refused_in_process(netguard_log: Path) -> None:
    before = netguard_log.read_text()
    with socket.socket() as sock, pytest.raises(NetworkGuardError):
        sock.connect(("149.154.167.51", 443))  # a Telegram data centre
    with pytest.raises(NetworkGuardError):
        socket.getaddrinfo("api.telegram.org", 443)
    # These attempts were deliberate: take them out of the log so this test itself passes.
    netguard_log.write_text(before)


def test_loopback_is_allowed(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_subprocesses_are_guarded_too(tmp_path: Path) -> None:
    log = tmp_path / "violations.log"
    code = "import socket; s = socket.socket(); s.connect(('91.108.56.100', 443))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(NETGUARD_DIR), "FLEET_NETGUARD": "1", "FLEET_NETGUARD_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "network guard" in result.stderr
    assert "91.108.56.100:443" in log.read_text()


def _udp_connect(host: str) -> None:
    """Connects a UDP socket (nothing is sent): the guard's verdict, whatever the routes of this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
        except NetworkGuardError:
            raise
        except OSError:
            pass  # no route here: the guard let it through


def test_an_allowed_link_opens_that_link_and_nothing_else(netguard_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = netguard_log.read_text()
    monkeypatch.setenv("FLEET_NETGUARD_ALLOW", "10.231.77.0/24, 10.231.79.0/30")
    _udp_connect("10.231.77.1")
    _udp_connect("10.231.79.2")
    socket.getaddrinfo("10.231.77.2", 6379)
    for outside in ("10.231.78.1", "10.231.79.4", "149.154.167.51", "192.168.1.1"):
        with pytest.raises(NetworkGuardError):
            _udp_connect(outside)
    with pytest.raises(NetworkGuardError):
        socket.getaddrinfo("api.telegram.org", 443)  # names stay refused: only addresses on the link pass
    netguard_log.write_text(before)


@pytest.mark.parametrize(
    "setting",
    [
        "0.0.0.0/0",  # everything
        "149.154.160.0/20",  # Telegram's own network: not a private range
        "10.0.0.0/8",  # private, but far more than one link
        "10.231.77.1/24",  # not a network (host bits set)
        "::/0",
        "not-a-network",
    ],
)
def test_an_allowlist_that_is_not_a_small_private_link_is_ignored(
    netguard_log: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    before = netguard_log.read_text()
    monkeypatch.setenv("FLEET_NETGUARD_ALLOW", setting)
    for outside in ("149.154.167.51", "10.231.77.1", "10.1.2.3"):
        with pytest.raises(NetworkGuardError):
            _udp_connect(outside)
    netguard_log.write_text(before)


def test_subprocesses_honour_the_same_allowlist(tmp_path: Path) -> None:
    log = tmp_path / "violations.log"
    code = (
        "import socket\n"
        "for host in ('10.231.77.1', '91.108.56.100'):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    try:\n"
        "        s.connect((host, 9))\n"
        "    except OSError as error:\n"
        "        print(host, type(error).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PYTHONPATH": str(NETGUARD_DIR),
            "FLEET_NETGUARD": "1",
            "FLEET_NETGUARD_LOG": str(log),
            "FLEET_NETGUARD_ALLOW": "10.231.77.0/24",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "91.108.56.100 NetworkGuardError" in result.stdout, result.stderr
    assert "10.231.77.1 NetworkGuardError" not in result.stdout
    assert "91.108.56.100" in log.read_text() and "10.231.77.1" not in log.read_text()
