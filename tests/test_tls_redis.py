"""A Redis that other servers reach: TLS (`rediss://`) with a password, the server's certificate verified.

A real `redis-server` with a TLS port and a certificate from a test CA; the worker trusts that CA through
SSL_CERT_FILE (as it would a company CA) and refuses the server without it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backend.dispatch import TaskDispatcher
from celery_app.contract import TaskName
from tests.support.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.processes
PASSWORD = "tls-test-password"


def _certificate(subject: str, issuer_key: object, key: object, issuer: str, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


def _write(path: Path, key: object, certificate: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _write(tmp_path / "ca", ca_key, _certificate("fleet test CA", ca_key, ca_key, "fleet test CA", ca=True))
    _write(tmp_path / "server", server_key, _certificate("127.0.0.1", ca_key, server_key, "fleet test CA", ca=False))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "server.crt"), "--tls-key-file", str(tmp_path / "server.key"),
         "--tls-ca-cert-file", str(tmp_path / "ca.crt"), "--tls-auth-clients", "no", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    if process.poll() is not None:
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        if os.environ.get("CI"):
            pytest.fail(f"redis-server with TLS did not start: {output[-500:]}")
        pytest.skip(f"this redis-server cannot serve TLS: {output[-200:]}")
    yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", tmp_path / "ca.crt"
    process.terminate()
    process.wait(10)


def test_a_worker_over_tls_with_a_password_verifies_the_server(
    stack: Stack, tls_redis: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = tls_redis
    trusting = {"REDIS_URL": url, "SSL_CERT_FILE": str(ca)}
    untrusting = subprocess.run(
        [sys.executable, str(ROOT / "run_worker.py"), "--check"],
        cwd=stack.workdir,
        env={**stack.env, "REDIS_URL": url, "WORKER_NAME": "w1"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert untrusting.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusting.stdout
    assert PASSWORD not in untrusting.stdout + untrusting.stderr
    stack.start_worker("w1", **trusting)
    listed = stack.cli("list", "--json", env=trusting)
    wait_until(
        lambda: '"status": "online"' in stack.cli("list", "--json", env=trusting).stdout, 60, message="w1 online"
    )
    assert PASSWORD not in listed.stdout
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    answer = TaskDispatcher(url).call("w1", TaskName.PING, timeout=30)  # the control plane's side, results included
    assert answer["name"] == "w1"
