"""The Telegram boundary: the fake matches Telethon; real Telethon clients only ever dial loopback."""

from __future__ import annotations

import inspect
import socket
import threading
from collections.abc import Iterator

import pytest
from redis import Redis
from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.sessions import StringSession

from celery_app.account_state import AccountStatus
from config import MTProtoEndpoint
from scripts.embedded_redis import free_port
from tests.support.fake_telegram import FakeClient
from tests.test_manager import live, wait_status
from worker import clients
from worker.account_manager import AccountManager
from worker.clients import ClientSpec, TelegramClientLike
from worker.telegram import telethon_factory

API_HASH = "0123456789abcdef0123456789abcdef"
USED = ["connect", "is_user_authorized", "get_me", "disconnect", "is_connected", "send_code_request", "sign_in"]


@pytest.mark.parametrize("name", USED)
def test_the_fake_has_telethons_signatures(name: str) -> None:
    real, fake = getattr(TelegramClient, name), getattr(FakeClient, name)
    assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(fake)
    real_params = list(inspect.signature(real).parameters.values())[1:]
    fake_params = list(inspect.signature(fake).parameters.values())[1:]
    assert [(p.name, p.kind) for p in fake_params] == [(p.name, p.kind) for p in real_params]
    assert name in dir(TelegramClientLike)


def test_the_calls_the_manager_makes_fit_telethon() -> None:
    inspect.signature(TelegramClient.sign_in).bind(None, phone="+1", code="12345", phone_code_hash="h")
    inspect.signature(TelegramClient.sign_in).bind(None, password="pw")
    inspect.signature(TelegramClient.send_code_request).bind(None, "+1")
    assert isinstance(inspect.getattr_static(TelegramClient, "disconnected"), property)
    assert isinstance(inspect.getattr_static(FakeClient, "disconnected"), property)


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers (a hung MTProto server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def _production_session() -> str:
    """A session that, left alone, would dial Telegram's production DC 2."""
    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(bytes(range(256)))
    return session.save()


def test_every_session_is_pointed_at_the_custom_endpoint(closed_port: int) -> None:
    factory = telethon_factory(MTProtoEndpoint(2, "127.0.0.1", closed_port, None))
    for session in ("", _production_session()):
        client = factory(ClientSpec(1, "+15550000001", 12345, API_HASH, session))
        assert (client.session.server_address, client.session.port) == ("127.0.0.1", closed_port)  # type: ignore[attr-defined]


@pytest.fixture
def real_manager(redis_client: Redis, closed_port: int) -> Iterator[AccountManager]:
    factory = telethon_factory(MTProtoEndpoint(2, "127.0.0.1", closed_port, None))
    manager = AccountManager(factory, redis_client, "real", "inst", 1, lease_ttl=5)
    manager.open()
    yield manager
    manager.shutdown(timeout=5)


def test_a_real_client_that_cannot_connect_is_reported_and_retried(
    real_manager: AccountManager, redis_client: Redis
) -> None:
    real_manager.start(ClientSpec(1, "+15550000001", 12345, API_HASH, _production_session()))
    state = wait_status(redis_client, 1, AccountStatus.ERROR, timeout=20, worker="real")
    assert state.detail.startswith("network:") and "retry 1" in state.detail and state.active


def test_a_real_client_against_a_hung_server_times_out(
    redis_client: Redis, silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients, "CONNECT_TIMEOUT", 1.0)
    manager = AccountManager(
        telethon_factory(MTProtoEndpoint(2, "127.0.0.1", silent_server, None)), redis_client, "real", "inst", 1, 5
    )
    manager.open()
    try:
        manager.start(ClientSpec(1, "+15550000001", 12345, API_HASH, _production_session()))
        state = wait_status(redis_client, 1, AccountStatus.ERROR, timeout=10, worker="real")
        assert "timed out" in state.detail
    finally:
        manager.shutdown(timeout=5)
    assert live(redis_client, 1, "real") is not None


def test_a_real_login_that_cannot_connect_says_so(real_manager: AccountManager) -> None:
    outcome = real_manager.send_code(real_manager.new_login_id(), ClientSpec(0, "+15550000001", 12345, API_HASH, ""))
    assert outcome.state == "failed" and outcome.error == "network" and "cannot reach Telegram" in outcome.message


def test_a_custom_server_public_key_is_loaded(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
    from telethon.crypto import rsa

    key = crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    path = tmp_path / "server.pub"
    path.write_bytes(pem)
    before = set(rsa._server_keys)
    telethon_factory(MTProtoEndpoint(2, "127.0.0.1", 1, str(path)))
    assert len(set(rsa._server_keys) - before) == 1
