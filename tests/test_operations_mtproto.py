"""The account operations (`worker.operations.perform`) with the real Telethon client, built by the worker's own
factory (worker/telegram.py) and logged in through the loopback MTProto server (tests/support/mtproto_server):
check, sessions, terminate-others, 2fa and profile, each asserted against what the server recorded. Then the
server's own side of them, with plain Telethon calls: Telegram's error names for each refusal."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from telethon import errors
from telethon.tl import functions, types

from celery_app.operations import OperationName
from config import MTProtoEndpoint
from sandbox.mtproto import SPAM_FREE, SPAM_LIMITED, SPAMBOT, MTProtoServer, ServerKey
from worker import operations
from worker.clients import ClientSpec
from worker.operation_failures import OperationFailed
from worker.operations import perform
from worker.telegram import telethon_factory

API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"
PHONE, CODE = "+15550008001", "24680"
OTHER = "+15550008002"  # another account, holding a username


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def png(width: int = 200, height: int = 200) -> bytes:
    """A real (grey) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    return ServerKey()


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key) as running:
        running.add_account(PHONE, code=CODE, first_name="Ann", last_name="Lee", username="ann_lee")
        running.add_account(OTHER, first_name="Bob", username="taken_name")
        yield running


@pytest.fixture
def factory(server: MTProtoServer, tmp_path: Path) -> Any:
    """The worker's client factory, pointed at the server as TG_MTPROTO_DC / TG_MTPROTO_PUBKEY would point it."""
    key_file = server.write_public_key(tmp_path / "mtproto.pub")
    return telethon_factory(MTProtoEndpoint(server.dc_id, server.host, server.port, key_file))


def make_client(factory: Any, session: str = "", phone: str = PHONE) -> Any:
    return factory(ClientSpec(account_id=1, phone=phone, api_id=API_ID, api_hash=API_HASH, session=session))


async def login(factory: Any, phone: str = PHONE, code: str = CODE, password: str | None = None) -> str:
    """A brand-new login through the server (code, and 2FA password if given); the session string."""
    client = make_client(factory, phone=phone)
    try:
        await client.connect()
        await client.send_code_request(phone)
        if password is None:
            await client.sign_in(phone, code)
        else:
            with pytest.raises(errors.SessionPasswordNeededError):
                await client.sign_in(phone, code)
            await client.sign_in(password=password)
        return str(client.session.save())
    finally:
        await client.disconnect()


@pytest.fixture
def session(factory: Any) -> str:
    return run(login(factory))


async def operate(factory: Any, session: str, name: OperationName, params: dict[str, Any] | None = None) -> Any:
    """Connect the account the way the worker does, run one operation, disconnect."""
    client = make_client(factory, session)
    try:
        await client.connect()
        return await perform(client, name, params or {})
    finally:
        await client.disconnect()


def failure(factory: Any, session: str, name: OperationName, params: dict[str, Any]) -> OperationFailed:
    with pytest.raises(OperationFailed) as caught:
        run(operate(factory, session, name, params))
    return caught.value


# --- check -------------------------------------------------------------------------------------------------------


def test_check_a_healthy_account(server: MTProtoServer, factory: Any, session: str) -> None:
    server.add_authorizations(PHONE, 2)
    report = run(operate(factory, session, OperationName.CHECK))
    assert report["verdict"] == "ok"
    assert report["authorized"] and not report["banned"] and not report["deleted"]
    assert not report["restricted"] and report["restriction"] is None
    assert (report["spam"], report["spam_text"]) == ("free", SPAM_FREE)
    assert report["premium"] is False and report["other_sessions"] == 2
    chat = server.chat(PHONE, "SpamBot")
    assert [(m.out, m.text) for m in chat] == [(True, "/start"), (False, SPAM_FREE)]
    assert server.calls(PHONE, "contacts.resolveUsername")  # @SpamBot found by its username


def test_check_a_restricted_premium_account(server: MTProtoServer, factory: Any, session: str) -> None:
    server.restrict(PHONE, "Your account was restricted for spam.")
    server.set_premium(PHONE)
    report = run(operate(factory, session, OperationName.CHECK))
    assert report["verdict"] == "restricted"
    assert report["restricted"] and report["restriction"] == "Your account was restricted for spam."
    assert report["premium"] is True and report["other_sessions"] == 0


def test_check_a_spam_limited_account(
    server: MTProtoServer, factory: Any, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "SPAMBOT_POLL", 0.1)
    server.set_spam(PHONE, "limited", delay=0.5)  # @SpamBot takes a moment: the operation polls for its answer
    report = run(operate(factory, session, OperationName.CHECK))
    assert report["verdict"] == "limited" and report["spam"] == "limited"
    assert report["spam_text"].startswith("I’m afraid some Telegram users found your messages annoying")
    assert len(server.calls(PHONE, "messages.getHistory")) >= 2
    assert [m.text for m in server.chat(PHONE)] == ["/start", SPAM_LIMITED]


def test_check_when_spambot_says_nothing(
    server: MTProtoServer, factory: Any, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "SPAMBOT_TIMEOUT", 0.6)
    monkeypatch.setattr(operations, "SPAMBOT_POLL", 0.1)
    server.set_spam(PHONE, "silent")
    report = run(operate(factory, session, OperationName.CHECK))
    assert (report["verdict"], report["spam"], report["spam_text"]) == ("ok", "unknown", "")


def test_check_a_revoked_and_a_banned_account(server: MTProtoServer, factory: Any, session: str) -> None:
    server.revoke(PHONE)
    report = run(operate(factory, session, OperationName.CHECK))
    assert (report["verdict"], report["authorized"], report["banned"]) == ("unauthorized", False, False)

    fresh = run(login(factory))

    async def banned_while_connected() -> dict[str, Any]:
        client = make_client(factory, fresh)
        try:
            # Connected first: a banned account's connect() itself raises USER_DEACTIVATED_BAN (Telethon asks
            # get_me() inside connect() when its update state is empty, as it always is for a StringSession).
            await client.connect()
            server.ban(PHONE)
            return await perform(client, OperationName.CHECK, {})
        finally:
            await client.disconnect()

    report = run(banned_while_connected())
    assert (report["verdict"], report["authorized"], report["banned"]) == ("banned", False, True)


# --- sessions and terminate-others ------------------------------------------------------------------------------


def test_sessions_then_terminate_others(server: MTProtoServer, factory: Any, session: str) -> None:
    hashes = server.add_authorizations(PHONE, 2)
    second = server.session_string(PHONE)  # a real second authorisation, connected while the others end
    server.backdate_logins(PHONE, 2 * 86400)  # the fleet's session is old enough to end the others

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        other = make_client(factory, second)
        await other.connect()
        try:
            assert await other.is_user_authorized()
            listed = await operate(factory, session, OperationName.SESSIONS)
            await wait_until(lambda: server.live_connections(PHONE) == 1)  # the operation's client has gone
            ended = await operate(factory, session, OperationName.TERMINATE_OTHERS)
            with pytest.raises((errors.AuthKeyUnregisteredError, ConnectionError)):
                await other.is_user_authorized()  # its connection was dropped, its key unregistered
            return listed, ended
        finally:
            await other.disconnect()

    listed, ended = run(scenario())
    views = listed["sessions"]
    assert len(views) == 4 and views[0]["current"] and not any(v["current"] for v in views[1:])
    assert {v["hash"] for v in views[1:]} >= {str(h) for h in hashes}
    assert {v["device"] for v in views[1:]} >= {"Samsung Galaxy S23", "MacBook Pro"}
    assert views[0]["device"] == server.init_connection(PHONE)["device_model"]  # the worker's device identity
    assert all("203.0.113.7" not in str(v) for v in views)  # a place, never an IP address
    assert ended == {"terminated": 3}

    left = server.sessions(PHONE)
    assert len(left) == 1 and left[0]["hash"] not in hashes
    assert server.authorizations(PHONE) == 1

    async def second_again() -> None:
        client = make_client(factory, second)
        try:
            await client.connect()
            with pytest.raises(errors.AuthKeyUnregisteredError):
                await client.is_user_authorized()
        finally:
            await client.disconnect()

    run(second_again())
    assert run(operate(factory, session, OperationName.TERMINATE_OTHERS)) == {"terminated": 0}
    assert run(operate(factory, session, OperationName.SESSIONS))["sessions"][0]["current"]


def test_terminate_others_from_a_fresh_session_is_refused_before_asking(
    server: MTProtoServer, factory: Any, session: str
) -> None:
    others = server.add_authorizations(PHONE, 1)
    server.fresh_reset_window = 24 * 3600  # as Telegram: not within 24 hours of the login
    (current,) = [s for s in server.sessions(PHONE) if s["hash"] not in others]
    refused = failure(factory, session, OperationName.TERMINATE_OTHERS, {})
    assert refused.code == "session_too_fresh" and "possible from" in refused.message
    assert refused.detail.code == "too_fresh_to_end_until"
    logged_in = int(current["date_created"].timestamp())
    assert refused.detail.params["possible_at"] == logged_in + 24 * 3600  # a day after the login, to the second
    assert not server.calls(PHONE, "auth.resetAuthorizations")  # said before trying
    assert server.authorizations(PHONE) == 2


# --- 2fa -----------------------------------------------------------------------------------------------------------


def test_2fa_set_then_change(server: MTProtoServer, factory: Any, session: str) -> None:
    assert run(operate(factory, session, OperationName.TWO_FA)) == {"has_password": False, "changed": False}

    first = {"current_password": None, "new_password": "first secret", "hint": "the first"}
    assert run(operate(factory, session, OperationName.TWO_FA, first)) == {"has_password": True, "changed": True}
    assert server.has_password(PHONE) and server.password_matches(PHONE, "first secret")
    assert server.password_hint(PHONE) == "the first"
    assert run(operate(factory, session, OperationName.TWO_FA))["has_password"] is True

    wrong = {"current_password": "not it", "new_password": "second secret", "hint": ""}
    refused = failure(factory, session, OperationName.TWO_FA, wrong)
    assert refused.code == "wrong_password" and "wrong" in refused.message
    assert server.password_matches(PHONE, "first secret") and server.password_hint(PHONE) == "the first"

    right = {"current_password": "first secret", "new_password": "second secret", "hint": ""}
    assert run(operate(factory, session, OperationName.TWO_FA, right))["changed"] is True
    assert server.password_matches(PHONE, "second secret") and not server.password_matches(PHONE, "first secret")

    async def fresh_login() -> None:
        client = make_client(factory)
        try:
            await client.connect()
            await client.send_code_request(PHONE)
            with pytest.raises(errors.SessionPasswordNeededError):
                await client.sign_in(PHONE, CODE)
            with pytest.raises(errors.PasswordHashInvalidError):
                await client.sign_in(password="first secret")
            me = await client.sign_in(password="second secret")
            assert me.first_name == "Ann"
        finally:
            await client.disconnect()

    run(fresh_login())


def test_2fa_on_an_account_that_logged_in_with_one(server: MTProtoServer, factory: Any) -> None:
    server.add_account("+15550008003", code="11111", password="old one", first_name="Cy")
    session = run(login(factory, "+15550008003", "11111", password="old one"))
    change = {"current_password": "old one", "new_password": "new one", "hint": "new"}
    assert run(operate(factory, session, OperationName.TWO_FA, change))["changed"] is True
    assert server.password_matches("+15550008003", "new one")


# --- profile -------------------------------------------------------------------------------------------------------


def test_profile_names_bio_username_and_photo(server: MTProtoServer, factory: Any, session: str) -> None:
    image = png()
    params = {"first_name": "Anna", "last_name": "Leigh", "bio": "Ships things.", "username": "anna_l", "photo": image}
    result = run(operate(factory, session, OperationName.PROFILE, params))
    assert result["changed"] == ["first_name", "last_name", "bio", "username", "photo"]
    assert result["identity"] == {"name": "Anna Leigh", "username": "anna_l"}
    profile = server.profile(PHONE)
    assert (profile["first_name"], profile["last_name"], profile["about"]) == ("Anna", "Leigh", "Ships things.")
    assert profile["username"] == "anna_l"
    (photo,) = server.photos(PHONE)
    assert (photo.kind, photo.width, photo.height, photo.data) == ("png", 200, 200, image)
    assert server.calls(PHONE, "upload.saveFilePart")

    async def as_seen() -> None:
        client = make_client(factory, session)
        try:
            await client.connect()
            me = await client.get_me()
            assert (me.first_name, me.last_name, me.username) == ("Anna", "Leigh", "anna_l")
            assert me.photo is not None and me.photo.photo_id == photo.id
            full = await client(functions.users.GetFullUserRequest(types.InputUserSelf()))
            assert full.full_user.about == "Ships things."
        finally:
            await client.disconnect()

    run(as_seen())
    # the same again: nothing Telegram refuses (USERNAME_NOT_MODIFIED is not a failure)
    again = run(operate(factory, session, OperationName.PROFILE, {"username": "anna_l", "bio": ""}))
    assert again["changed"] == ["bio"] and server.profile(PHONE)["about"] == ""


def test_profile_refusals_change_nothing(server: MTProtoServer, factory: Any, session: str) -> None:
    before = server.profile(PHONE)

    taken = failure(factory, session, OperationName.PROFILE, {"first_name": "Zed", "username": "Taken_Name"})
    assert taken.code == "username_taken" and taken.message == "the username @Taken_Name is already taken"
    spambot = failure(factory, session, OperationName.PROFILE, {"username": "spambot"})
    assert spambot.code == "username_taken"
    invalid = failure(factory, session, OperationName.PROFILE, {"username": "ab_c"})  # Telegram: 5 at least
    assert invalid.code == "username_invalid" and "@ab_c" in invalid.message

    long_bio = failure(factory, session, OperationName.PROFILE, {"bio": "x" * 71})
    assert long_bio.code == "bio_too_long"

    not_image = failure(factory, session, OperationName.PROFILE, {"photo": b"GIF89a" + bytes(100)})
    assert not_image.code == "photo_invalid" and "JPEG or PNG" in not_image.message
    assert not server.calls(PHONE, "upload.saveFilePart")  # refused before anything was sent

    broken = failure(factory, session, OperationName.PROFILE, {"photo": b"\xff\xd8\xff\xe0" + bytes(500)})
    assert broken.code == "photo_invalid" and "could not process" in broken.message
    assert server.calls(PHONE, "photos.uploadProfilePhoto")

    assert server.profile(PHONE) == before and server.photos(PHONE) == []
    assert server.profile(OTHER)["username"] == "taken_name"


def test_profile_flood_wait_propagates(server: MTProtoServer, factory: Any, session: str) -> None:
    server.flood(PHONE, 1, 33, method="account.updateProfile")
    with pytest.raises(errors.FloodWaitError) as caught:
        run(operate(factory, session, OperationName.PROFILE, {"first_name": "Later"}))
    assert caught.value.seconds == 33
    assert server.profile(PHONE)["first_name"] == "Ann"


# --- the server's side, with plain Telethon calls -----------------------------------------------------------------


def test_server_authorization_and_profile_errors(server: MTProtoServer, factory: Any, session: str) -> None:
    (kept, ended) = server.add_authorizations(PHONE, 2)

    async def scenario() -> None:
        client = make_client(factory, session)
        try:
            await client.connect()
            assert await client(functions.account.ResetAuthorizationRequest(ended)) is True
            with pytest.raises(errors.HashInvalidError):
                await client(functions.account.ResetAuthorizationRequest(ended))
            with pytest.raises(errors.HashInvalidError):
                await client(functions.account.ResetAuthorizationRequest(0))  # not the current one
            listed = await client(functions.account.GetAuthorizationsRequest())
            assert [a.hash for a in listed.authorizations] == [0, kept] and listed.authorizations[0].current

            with pytest.raises(errors.FirstNameInvalidError):
                await client(functions.account.UpdateProfileRequest(first_name="  "))
            with pytest.raises(errors.AboutTooLongError):
                await client(functions.account.UpdateProfileRequest(about="y" * 71))
            server.set_premium(PHONE)
            await client(functions.account.UpdateProfileRequest(about="y" * 140))  # Premium: 140
            with pytest.raises(errors.UsernameNotModifiedError):
                await client(functions.account.UpdateUsernameRequest("ann_lee"))
            with pytest.raises(errors.UsernameOccupiedError):
                await client(functions.account.UpdateUsernameRequest("TAKEN_NAME"))
            for bad in ("1abcde", "abcd", "abc__de", "abcde_", "a" * 33):
                with pytest.raises(errors.UsernameInvalidError):
                    await client(functions.account.UpdateUsernameRequest(bad))
            assert await client(functions.account.CheckUsernameRequest("free_name")) is True
            assert await client(functions.account.CheckUsernameRequest("taken_name")) is False
            user = await client(functions.account.UpdateUsernameRequest(""))
            assert user.username is None

            uploaded = await client.upload_file(b"plain text, not an image", file_name="x.jpg")
            with pytest.raises(errors.ImageProcessFailedError):
                await client(functions.photos.UploadProfilePhotoRequest(file=uploaded))
            assert await client(functions.upload.SaveFilePartRequest(42, 0, b"\x89PNG"))
            missing = types.InputFile(id=42, parts=2, name="y.png", md5_checksum="")
            with pytest.raises(errors.FilePartMissingError) as caught:
                await client(functions.photos.UploadProfilePhotoRequest(file=missing))
            assert caught.value.which == 1
            big = png(1200, 900)
            part = 512 * 1024  # as Telethon sends a file over 10 MB, here for a small one
            chunks = [big[i : i + part] for i in range(0, len(big), part)] or [big]
            for number, chunk in enumerate(chunks):
                request = functions.upload.SaveBigFilePartRequest(77, number, len(chunks), chunk)
                assert await client(request) is True
            answer = await client(
                functions.photos.UploadProfilePhotoRequest(file=types.InputFileBig(77, len(chunks), "big.png"))
            )
            assert (answer.photo.sizes[0].w, answer.photo.sizes[0].h) == (1200, 900)
            photos = await client(functions.photos.GetUserPhotosRequest(types.InputUserSelf(), 0, 0, 10))
            assert [p.id for p in photos.photos] == [answer.photo.id]
        finally:
            await client.disconnect()

    run(scenario())
    hashes = [s["hash"] for s in server.sessions(PHONE)]
    assert len(hashes) == 2 and kept in hashes and ended not in hashes
    assert server.profile(PHONE)["about"] == "y" * 140 and server.profile(PHONE)["username"] is None


def test_server_private_chats_and_updates(server: MTProtoServer, factory: Any, session: str) -> None:
    server.set_spam(PHONE, "free", delay=1.0)

    async def scenario() -> None:
        client = make_client(factory, session)
        try:
            await client.connect()
            with pytest.raises(errors.UsernameNotOccupiedError):
                await client(functions.contacts.ResolveUsernameRequest("nobody_here"))
            bot = await client.get_entity("@spambot")
            assert (bot.id, bot.bot, bot.username) == (SPAMBOT.user_id, True, "SpamBot")
            sent = await client.send_message("SpamBot", "/start")
            assert sent.id == 1 and sent.out
            assert [m.message for m in await client.get_messages("SpamBot", limit=5)] == ["/start"]  # not yet
            state = await client(functions.updates.GetStateRequest())
            await asyncio.sleep(1.05)
            answer = (await client.get_messages("SpamBot", limit=1))[0]
            assert (answer.id, answer.out, answer.sender_id, answer.message) == (2, False, SPAMBOT.user_id, SPAM_FREE)
            difference = await client(functions.updates.GetDifferenceRequest(pts=state.pts, date=state.date, qts=0))
            assert [m.message for m in difference.new_messages] == [SPAM_FREE]
            assert difference.state.pts == state.pts + 1
            older = await client.get_messages("SpamBot", limit=5, offset_id=2)
            assert [m.id for m in older] == [1]

            await client.send_message("taken_name", "hello Bob")  # another account: it arrives in Bob's chat
            server.set_spam(PHONE, "limited")
            with pytest.raises(errors.PeerFloodError):  # a limited account may not write first
                await client.send_message("taken_name", "hello again")
            with pytest.raises(errors.PeerIdInvalidError):
                peer = types.InputPeerUser(SPAMBOT.user_id, SPAMBOT.access_hash + 1)
                await client(functions.messages.SendMessageRequest(peer, "hi", random_id=5))
        finally:
            await client.disconnect()

    run(scenario())
    assert [(m.out, m.text) for m in server.chat(OTHER, PHONE)] == [(False, "hello Bob")]


def test_server_the_bots_answer_arrives_when_due(server: MTProtoServer, factory: Any, session: str) -> None:
    """@SpamBot's answer arrives once due: seen by the account's next request, or by `chat` (nothing is pushed)."""
    server.set_spam(PHONE, "free", delay=1.0, reply="custom answer")

    async def scenario() -> None:
        client = make_client(factory, session)
        try:
            await client.connect()
            await client.send_message("SpamBot", "/start")
        finally:
            await client.disconnect()

    run(scenario())
    assert [m.text for m in server.chat(PHONE)] == ["/start"]
    time.sleep(1.05)
    assert [m.text for m in server.chat(PHONE)] == ["/start", "custom answer"]
