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
