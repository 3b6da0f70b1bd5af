"""The loopback MTProto server's crypto and key exchange (tests/support/mtproto_server) against Telethon's own
code, piece by piece: message encryption, both RSA paddings, the authenticator, SRP, service messages over TCP
and an unknown auth key. Real clients against it are in test_mtproto_server.py."""

from __future__ import annotations

import io
import os
import struct
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

from sandbox.mtproto import MTProtoServer, ServerKey
from sandbox.mtproto.connection import server_msg_id
from sandbox.mtproto.crypto import (
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
from sandbox.mtproto.handshake import Handshake
from sandbox.mtproto.store import ServerSession
from tests.support import mtproto_harness
from tests.support.mtproto_harness import API_HASH, API_ID, LOGGERS, PASSWORD, run

# The harness's fixtures, both of them: a fixture finds the fixtures it needs in the test's own module.
server_key, server = mtproto_harness.FIXTURES


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
