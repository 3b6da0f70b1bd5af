"""The loopback MTProto server (tests/support/mtproto_server) against Telethon's own client code: the crypto
and key exchange piece by piece, then real `TelegramClient`s over TCP on 127.0.0.1 (log in, 2FA, reconnect,
and every fault the server can inject)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from telethon import TelegramClient, connection, errors
from telethon.crypto import AuthKey
from telethon.crypto import rsa as telethon_rsa
from telethon.extensions import BinaryReader
from telethon.network import MTProtoPlainSender, authenticator
from telethon.network.mtprotostate import MTProtoState
from telethon.password import compute_check
from telethon.sessions import StringSession
from telethon.tl import functions, types
from telethon.tl.core import MessageContainer

from tests.support.mtproto_server import ALL, MTProtoServer, ServerKey
from tests.support.mtproto_server.connection import server_msg_id
from tests.support.mtproto_server.crypto import (
    DH_PRIME,
    AuthKeyData,
    CryptoError,
    SrpVerifier,
    decrypt_from_client,
    encrypt_to_client,
    rsa_pad_wrap,
    srp_challenge,
    srp_check,
)
from tests.support.mtproto_server.handshake import Handshake
from tests.support.mtproto_server.store import ServerSession

API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"
PHONE, CODE = "+15550000001", "12345"
PHONE_2FA, PASSWORD = "+15550000002", "hunter2"
MTPROXY_SECRET = bytes(range(16))


class _Loggers(dict):
    """What Telethon's network classes take as `loggers`: a logger for any module name."""

    def __missing__(self, name: str) -> logging.Logger:
        return logging.getLogger(name)


LOGGERS = _Loggers()


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


@pytest.fixture(scope="session")
def server_key() -> ServerKey:
    """One RSA key pair for the test session, known to Telethon as a current (RSA_PAD-era) key."""
    key = ServerKey()
    telethon_rsa.add_key(key.public_pem, old=False)
    return key


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key, mtproxy_secret=MTPROXY_SECRET) as running:
        running.add_account(PHONE, code=CODE, first_name="Ann", last_name="Lee", username="ann")
        yield running


def make_client(server: MTProtoServer, session: str = "", **options: Any) -> TelegramClient:
    """A real Telethon client, pointed at the server before anything can dial Telegram."""
    string_session = StringSession(session or None)
    string_session.set_dc(server.dc_id, server.host, server.port)
    settings: dict[str, Any] = {
        "timeout": 3,
        "connection_retries": 1,
        "retry_delay": 0.1,
        "request_retries": 1,
        "flood_sleep_threshold": 0,
    }
    settings.update(options)
    return TelegramClient(string_session, API_ID, API_HASH, **settings)


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- crypto and key exchange, piece by piece ----------------------------------------------------------------


def test_message_encryption_round_trips_with_telethons_state() -> None:
    key = AuthKeyData(os.urandom(255) + b"\x01")
    state = MTProtoState(AuthKey(key.key), loggers=LOGGERS)
    state.salt = 1234
    buffer = io.BytesIO()
    msg_id = state.write_data_as_message(buffer, bytes(functions.PingRequest(77)), True)
    packet = state.encrypt_message_data(buffer.getvalue())

    plaintext = decrypt_from_client(key, packet)
    salt, session_id, got_id, seq_no, length = struct.unpack("<qqqii", plaintext[:32])
    assert (salt, session_id, got_id, seq_no) == (1234, state.id, msg_id, 1)
    assert BinaryReader(plaintext[32 : 32 + length]).tgread_object() == functions.PingRequest(77)

    session = ServerSession(state.id)
    body = bytes(types.Pong(msg_id=msg_id, ping_id=77))
    answer_id = server_msg_id(session, response=True)
    message = struct.pack("<qq", 1234, state.id) + struct.pack("<qii", answer_id, 1, len(body)) + body
    received = state.decrypt_message_data(encrypt_to_client(key, message))
    assert received.msg_id == answer_id and answer_id % 4 == 1
    assert received.obj == types.Pong(msg_id=msg_id, ping_id=77)

    tampered = packet[:-1] + bytes([packet[-1] ^ 1])
    with pytest.raises(CryptoError):
        decrypt_from_client(key, tampered)
    other_session = MTProtoState(AuthKey(key.key), loggers=LOGGERS)
    with pytest.raises(errors.SecurityError):  # Telethon checks our session_id
        other_session.decrypt_message_data(encrypt_to_client(key, message))


def test_both_rsa_paddings_decrypt(server_key: ServerKey) -> None:
    inner = bytes(types.PQInnerDataDc(b"\x01" * 8, b"\x02" * 4, b"\x03" * 4, 1, 2, 3, 2))
    assert server_key.decrypt_inner_data(rsa_pad_wrap(inner, server_key.n, server_key.e)).startswith(inner)
    legacy = telethon_rsa.encrypt(server_key.fingerprint, inner)  # what Telethon 1.45 sends
    assert legacy is not None
    assert server_key.decrypt_inner_data(legacy) == inner
    with pytest.raises(CryptoError):
        server_key.decrypt_inner_data(os.urandom(255).rjust(256, b"\0"))


def test_telethons_authenticator_agrees_on_the_auth_key(server_key: ServerKey) -> None:
    class InMemorySender:
        """Telethon's plain sender, minus the network: each request goes through the TL bytes both ways."""

        def __init__(self, handshake: Handshake) -> None:
            self.handshake = handshake

        async def send(self, request: Any) -> Any:
            received = BinaryReader(bytes(request)).tgread_object()
            return BinaryReader(bytes(self.handshake.answer(received))).tgread_object()

    for _ in range(3):  # a shared key with a leading zero byte ends in dh_gen_retry (1 in 256)
        handshake = Handshake(server_key, 2)
        try:
            auth_key, time_offset = run(authenticator.do_authentication(InMemorySender(handshake)))
        except (errors.SecurityError, AssertionError):
            continue
        assert handshake.auth_key is not None
        assert auth_key.key == handshake.auth_key.key and len(auth_key.key) == 256
        assert auth_key.key_id == handshake.auth_key.key_id
        assert abs(time_offset) <= 1
        return
    pytest.fail("no auth key in 3 attempts")


def test_srp_proof_from_telethon_checks_out() -> None:
    verifier = SrpVerifier.create(PASSWORD)
    challenge = srp_challenge(verifier)
    algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        verifier.salt1, verifier.salt2, 3, DH_PRIME.to_bytes(256, "big")
    )
    password = types.account.Password(
        new_algo=algo,
        new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
        secure_random=b"",
        has_password=True,
        current_algo=algo,
        srp_B=challenge.B_bytes,
        srp_id=challenge.srp_id,
    )
    proof = compute_check(password, PASSWORD)
    assert srp_check(verifier, challenge, proof.A, proof.M1)
    wrong = compute_check(password, "not it")
    assert not srp_check(verifier, challenge, wrong.A, wrong.M1)


def test_service_messages_over_tcp(server: MTProtoServer) -> None:
    """Key exchange over TCP with Telethon's authenticator, then the rules for encrypted messages: a wrong
    salt gets bad_server_salt, a new session new_session_created, a bad msg_id or seq_no a notification."""

    async def scenario() -> None:
        conn = connection.ConnectionTcpFull(server.host, server.port, server.dc_id, loggers=LOGGERS)
        await conn.connect(timeout=5)
        try:
            auth_key, time_offset = await authenticator.do_authentication(MTProtoPlainSender(conn, loggers=LOGGERS))
            record = server.store.keys[auth_key.key_id]
            assert record.auth_key.key == auth_key.key
            state = MTProtoState(auth_key, loggers=LOGGERS)
            state.time_offset = time_offset

            async def exchange(data: bytes, content_related: bool = True, raw: bytes | None = None) -> Any:
                buffer = io.BytesIO()
                msg_id = state.write_data_as_message(buffer, data, content_related)
                await conn.send(state.encrypt_message_data(raw if raw is not None else buffer.getvalue()))
                return msg_id, (await conn.recv())

            ping = bytes(functions.PingRequest(5))
            msg_id, reply = await exchange(ping)
            bad_salt = state.decrypt_message_data(reply).obj
            assert isinstance(bad_salt, types.BadServerSalt)
            assert (bad_salt.bad_msg_id, bad_salt.error_code, bad_salt.new_server_salt) == (msg_id, 48, record.salt)

            state.salt = bad_salt.new_server_salt
            msg_id, reply = await exchange(ping)
            container = state.decrypt_message_data(reply).obj
            assert isinstance(container, MessageContainer)
            created, pong = (message.obj for message in container.messages)
            assert isinstance(created, types.NewSessionCreated) and created.server_salt == record.salt
            assert pong == types.Pong(msg_id=msg_id, ping_id=5)

            odd_id = struct.pack("<qii", state._get_new_msg_id() + 1, 1, len(ping)) + ping
            _, reply = await exchange(ping, raw=odd_id)
            assert state.decrypt_message_data(reply).obj.error_code == 18
            even_seq = struct.pack("<qii", state._get_new_msg_id(), 2, len(ping)) + ping
            _, reply = await exchange(ping, raw=even_seq)
            assert state.decrypt_message_data(reply).obj.error_code == 34

            request = functions.InvokeWithLayerRequest(
                201,
                functions.InitConnectionRequest(1, "d", "s", "a", "en", "", "en", functions.help.GetConfigRequest()),
            )
            msg_id, reply = await exchange(bytes(request))
            result = state.decrypt_message_data(reply).obj
            assert result.req_msg_id == msg_id
            config = request.read_result(BinaryReader(result.body))
            assert isinstance(config, types.Config)
            assert [(o.id, o.ip_address, o.port) for o in config.dc_options] == [(2, "127.0.0.1", server.port)]
        finally:
            await conn.disconnect()

    run(scenario())


def test_an_unknown_auth_key_gets_404(server: MTProtoServer) -> None:
    async def scenario() -> None:
        session = StringSession()
        session.set_dc(server.dc_id, server.host, server.port)
        session.auth_key = AuthKey(b"\x01" * 256)
        client = TelegramClient(session, API_ID, API_HASH, timeout=3, connection_retries=1, retry_delay=0.1)
        try:
            with pytest.raises(errors.AuthKeyNotFound):  # the transport error -404, as Telegram sends it
                await client.connect()
        finally:
            await client.disconnect()

    run(scenario())


# --- real clients: logging in ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transport",
    [
        connection.ConnectionTcpFull,
        connection.ConnectionTcpIntermediate,
        connection.ConnectionTcpAbridged,
        connection.ConnectionTcpObfuscated,
    ],
)
def test_every_transport(server: MTProtoServer, transport: type) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE), connection=transport)
        try:
            await client.connect()
            assert (await client.get_me()).first_name == "Ann"
        finally:
            await client.disconnect()

    run(scenario())


def test_through_mtproxy_obfuscation(server: MTProtoServer) -> None:
    """The worker's MTProxy connection class (its randomized intermediate, keys salted with the secret)."""

    async def scenario() -> None:
        client = make_client(
            server,
            server.session_string(PHONE),
            connection=connection.ConnectionTcpMTProxyRandomizedIntermediate,
            proxy=(server.host, server.port, "dd" + MTPROXY_SECRET.hex()),
        )
        try:
            await client.connect()
            assert (await client.get_me()).username == "ann"
        finally:
            await client.disconnect()

    run(scenario())


def test_login_with_a_code(server: MTProtoServer) -> None:
    async def scenario() -> str:
        client = make_client(server)
        try:
            await client.connect()
            assert not await client.is_user_authorized()
            sent = await client.send_code_request(PHONE)
            assert sent.phone_code_hash and sent.type.length == len(CODE)
            with pytest.raises(errors.PhoneCodeInvalidError):  # the server wants the digits, as Telegram does
                await client.sign_in(PHONE, "12 345")
            with pytest.raises(errors.PhoneCodeInvalidError):
                await client.sign_in(PHONE, "54321")
            me = await client.sign_in(PHONE, CODE)
            assert (me.first_name, me.last_name, me.phone) == ("Ann", "Lee", "15550000001")
            assert await client.is_user_authorized()
            return str(client.session.save())
        finally:
            await client.disconnect()

    saved = run(scenario())
    assert server.authorizations(PHONE) == 1
    methods = [call.method for call in server.calls(PHONE)]
    assert methods.count("auth.sendCode") == 1 and methods.count("auth.signIn") == 3

    async def reconnect() -> None:
        client = make_client(server, saved)
        try:
            await client.connect()
            assert await client.is_user_authorized()
            assert (await client.get_me()).first_name == "Ann"
        finally:
            await client.disconnect()

    run(reconnect())
    assert server.authorizations(PHONE) == 1 and server.peak_connections(PHONE) == 1
    device = server.init_connection(PHONE)
    assert device is not None and device["api_id"] == API_ID


def test_login_with_2fa(server: MTProtoServer) -> None:
    server.add_account(PHONE_2FA, code="54321", password=PASSWORD, first_name="Bob")

    async def scenario() -> None:
        client = make_client(server)
        try:
            await client.connect()
            await client.send_code_request(PHONE_2FA)
            with pytest.raises(errors.SessionPasswordNeededError):
                await client.sign_in(PHONE_2FA, "54321")
            with pytest.raises(errors.PasswordHashInvalidError):
                await client.sign_in(password="wrong")
            me = await client.sign_in(password=PASSWORD)
            assert me.first_name == "Bob"
            assert (await client.get_me()).first_name == "Bob"
        finally:
            await client.disconnect()

    run(scenario())
    methods = [call.method for call in server.calls(PHONE_2FA)]
    assert methods.count("account.getPassword") == 2 and methods.count("auth.checkPassword") == 2


def test_an_unknown_phone_is_unoccupied(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server)
        try:
            await client.connect()
            await client.send_code_request("+15559999999")
            with pytest.raises(errors.PhoneNumberUnoccupiedError):
                await client.sign_in("+15559999999", "11111")
        finally:
            await client.disconnect()

    run(scenario())


def test_log_out(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        await client.connect()
        assert await client.log_out()

    run(scenario())
    assert server.authorizations(PHONE) == 0


def test_gzip_requests_and_answers(server: MTProtoServer) -> None:
    request = functions.users.GetUsersRequest([types.InputUserSelf()] * 200)
    assert len(bytes(request)) > 512  # Telethon gzips it; the answer (200 users) is gzipped too

    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            users = await client(request)
            assert len(users) == 200 and {user.first_name for user in users} == {"Ann"}
        finally:
            await client.disconnect()

    run(scenario())


def test_help_methods_and_an_unknown_method(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            nearest = await client(functions.help.GetNearestDcRequest())
            assert (nearest.this_dc, nearest.nearest_dc) == (2, 2)
            config = await client(functions.help.GetConfigRequest())
            assert [(o.ip_address, o.port) for o in config.dc_options] == [("127.0.0.1", server.port)]
            with pytest.raises(errors.RPCError) as caught:
                await client(functions.account.GetWallPapersRequest(hash=0))
            assert (caught.value.code, caught.value.message) == (400, "METHOD_NOT_SUPPORTED")
        finally:
            await client.disconnect()

    run(scenario())
    assert "account.getWallPapers" in [call.method for call in server.calls(PHONE)]


# --- real clients: faults ----------------------------------------------------------------------------------


def test_revoke_drops_the_live_connection_and_unregisters_the_key(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            assert await client.get_me()
            assert server.live_connections(PHONE) == 1
            server.revoke(PHONE)
            assert server.live_connections(PHONE) == 0
            with pytest.raises(errors.AuthKeyUnregisteredError):
                await client(functions.updates.GetStateRequest())
        finally:
            await client.disconnect()

    run(scenario())
    assert server.authorizations(PHONE) == 0


def test_ban(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            assert await client.get_me()
            server.ban(PHONE)
            with pytest.raises(errors.UserDeactivatedBanError):
                await client(functions.updates.GetStateRequest())
        finally:
            await client.disconnect()
        login = make_client(server)
        try:
            await login.connect()
            with pytest.raises(errors.PhoneNumberBannedError):
                await login.send_code_request(PHONE)
        finally:
            await login.disconnect()

    run(scenario())


def test_flood_wait(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            server.flood(PHONE, 1, 42)
            with pytest.raises(errors.FloodWaitError) as caught:
                await client(functions.updates.GetStateRequest())
            assert caught.value.seconds == 42
            assert await client.get_me()  # only the next call
            server.flood(PHONE, 5, 7, method="users.getFullUser")
            assert await client(functions.updates.GetDifferenceRequest(pts=1, date=None, qts=0))
            with pytest.raises(errors.FloodWaitError) as caught:
                await client(functions.users.GetFullUserRequest(types.InputUserSelf()))
            assert caught.value.seconds == 7
        finally:
            await client.disconnect()
        server.flood(ALL, 1, 9, method="auth.sendCode")
        server.flood(PHONE, 1, 11, method="auth.sendCode")  # a login names its phone: the account's rule applies
        for phone, seconds in (("+15551234567", 9), (PHONE, 11)):
            login = make_client(server)  # each: Telethon remembers flood waits per method and client
            try:
                await login.connect()
                with pytest.raises(errors.FloodWaitError) as caught:
                    await login.send_code_request(phone)
                assert caught.value.seconds == seconds
            finally:
                await login.disconnect()

    run(scenario())


def test_a_second_live_connection_of_a_key_is_refused(server: MTProtoServer) -> None:
    server.refuse_duplicates = True
    session = server.session_string(PHONE)

    async def scenario() -> None:
        first, second = make_client(server, session), make_client(server, session)
        try:
            await first.connect()
            assert await first.get_me()
            with pytest.raises(errors.AuthKeyDuplicatedError):
                await second.connect()
            assert await first.get_me()  # the first one is unaffected
        finally:
            await second.disconnect()
            await first.disconnect()

    run(scenario())
    assert server.duplicates == ["15550000001"]
    assert server.peak_connections(PHONE) == 2


def test_drop_all_and_telethon_reconnects(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            assert await client.get_me()
            server.drop_all()
            assert server.live_connections(PHONE) == 0
            await wait_until(lambda: server.live_connections(PHONE) == 1)
            assert (await client.get_me()).first_name == "Ann"
            assert client.is_connected()
        finally:
            await client.disconnect()

    run(scenario())
    assert server.peak_connections(PHONE) == 1


def test_a_stalled_server_times_out(server: MTProtoServer) -> None:
    async def scenario() -> None:
        client = make_client(server, server.session_string(PHONE))
        try:
            await client.connect()
            server.stall(True)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get_me(), 1)
        finally:
            await client.disconnect()
        fresh = make_client(server)
        try:
            with pytest.raises((asyncio.TimeoutError, ConnectionError)):
                await asyncio.wait_for(fresh.connect(), 1)
        finally:
            await fresh.disconnect()
        server.stall(False)
        again = make_client(server, server.session_string(PHONE))
        try:
            await again.connect()
            assert await again.get_me()
        finally:
            await again.disconnect()

    run(scenario())
