"""The loopback MTProto server (tests/support/mtproto_server) with real `TelegramClient`s over TCP on 127.0.0.1:
every transport, MTProxy, logging in (with 2FA), logging out, and every fault the server can inject. Its crypto,
piece by piece, is in test_mtproto_server_crypto.py."""

from __future__ import annotations

import asyncio

import pytest
from telethon import connection, errors
from telethon.tl import functions, types

from sandbox.mtproto import ALL, MTProtoServer
from tests.support import mtproto_harness
from tests.support.mtproto_harness import (
    API_ID,
    CODE,
    MTPROXY_SECRET,
    PASSWORD,
    PHONE,
    PHONE_2FA,
    make_client,
    run,
    wait_until,
)

# The harness's fixtures, both of them: a fixture finds the fixtures it needs in the test's own module.
server_key, server = mtproto_harness.FIXTURES


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
