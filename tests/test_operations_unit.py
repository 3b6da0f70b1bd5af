"""The account operations (`worker.operations`) against the fake Telegram's account API, one client at a time.

How Telegram's errors map to failures is tested in test_operation_failures.py, the fake itself in
test_fake_account_api.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from telethon import errors

from celery_app.operations import OperationName, Verdict, describe_result
from tests.support import fake_account_state, operations_harness
from tests.support.fake_account_state import account_state
from tests.support.fake_password import password_matches
from tests.support.fake_telegram import FakeClient, session_for
from tests.support.operations_harness import API_HASH, JPEG, PHONE, Telegram, failure, new_client, operate, png, seen
from worker import operations
from worker.clients import ClientSpec
from worker.operations import image_kind, spam_status

# The harness's fixture, requested by name.
telegram = operations_harness.telegram


# --- check ------------------------------------------------------------------------------------------------


def test_check_of_a_healthy_account(telegram: Telegram) -> None:
    telegram.account(sessions=2, premium=True)
    report = operate("check")
    assert report == {
        "authorized": True,
        "deleted": False,
        "banned": False,
        "restricted": False,
        "restriction": None,
        "spam": "free",
        "spam_text": "Good news, no limits are currently applied to your account. You’re free as a bird!",
        "spam_reason": None,
        "premium": True,
        "other_sessions": 2,
        "verdict": "ok",
    }
    assert json.loads(json.dumps(report)) == report
    assert describe_result("check", report) == "ok · spam: free · 2 other sessions · premium"
    assert seen() == ["GetAuthorizationsRequest", "send_message:SpamBot"]


def test_check_of_a_spam_limited_account(telegram: Telegram) -> None:
    telegram.account(spam="limited")
    report = operate("check")
    assert (report["spam"], report["verdict"]) == ("limited", Verdict.SPAM_LIMITED.value)
    assert report["spam_text"].startswith("I’m afraid some Telegram users found your messages annoying")
    assert "1 Jan 2030, 12:00 UTC" in report["spam_text"]  # dates are not mistaken for phone numbers
    assert len(report["spam_text"]) <= operations.SPAM_TEXT_MAX
    assert describe_result("check", report).startswith("limited · spam: limited")


def test_check_of_a_russian_spam_answer(telegram: Telegram) -> None:
    telegram.account(spam="limited_ru")
    assert operate("check")["verdict"] == "limited"
    telegram.account(phone="+15550005678", spam="free_ru")
    assert operate("check", phone="+15550005678")["spam"] == "free"


def test_check_of_a_restricted_account(telegram: Telegram) -> None:
    telegram.account(restricted="This account was restricted for spam.", spam="limited")
    report = operate("check")
    assert report["restricted"] and report["restriction"] == "This account was restricted for spam."
    assert report["verdict"] == Verdict.RESTRICTED.value
    assert "restricted: This account was restricted for spam." in describe_result("check", report)


def test_check_of_a_banned_account_is_a_report_not_an_error(telegram: Telegram) -> None:
    telegram.account(connect="banned")
    report = operate("check")
    assert report["banned"] and not report["authorized"] and report["verdict"] == Verdict.BANNED.value
    assert report["other_sessions"] is None and report["spam"] == "unknown"
    assert describe_result("check", report) == "banned"


def test_check_of_a_revoked_session(telegram: Telegram) -> None:
    telegram.account(connect="unauthorized")
    report = operate("check")
    assert not report["authorized"] and not report["banned"] and report["verdict"] == "unauthorized"


def test_check_of_a_deleted_account(telegram: Telegram) -> None:
    telegram.account(deleted=True)
    report = operate("check")
    assert report["deleted"] and report["verdict"] == Verdict.BANNED.value
    assert seen() == []  # nothing more is asked of a deleted account


def test_check_waits_for_a_slow_spambot(telegram: Telegram, monkeypatch: pytest.MonkeyPatch) -> None:
    telegram.account(spam="limited", spam_delay=0.3)
    monkeypatch.setattr(operations, "SPAMBOT_TIMEOUT", 30.0)
    assert operate("check")["spam"] == "limited"


def test_check_when_spambot_never_answers(telegram: Telegram, monkeypatch: pytest.MonkeyPatch) -> None:
    telegram.account(spam="silent", sessions=1)
    monkeypatch.setattr(operations, "SPAMBOT_TIMEOUT", 0.2)
    report = operate("check")
    assert (report["spam"], report["spam_text"], report["verdict"]) == ("unknown", "", "ok")
    assert report["other_sessions"] == 1


def test_check_an_old_answer_of_spambot_is_not_taken_for_the_new_one(
    telegram: Telegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram.account(spam="limited")
    assert operate("check")["spam"] == "limited"
    fake_account_state.update_state(PHONE, lambda state: state.update(spam="silent"))
    monkeypatch.setattr(operations, "SPAMBOT_TIMEOUT", 0.2)
    assert operate("check")["spam"] == "unknown"


def test_check_an_unrecognised_answer_is_unknown(telegram: Telegram) -> None:
    telegram.account(spam="Hello! Send /start to begin.")
    report = operate("check")
    assert (report["spam"], report["spam_text"], report["verdict"]) == ("unknown", "Hello! Send /start to begin.", "ok")


def test_check_lets_a_flood_wait_through_unchanged(telegram: Telegram) -> None:
    telegram.account(flood={"op_calls": 1, "seconds": 42})
    with pytest.raises(errors.FloodWaitError) as caught:
        operate("check")
    assert caught.value.seconds == 42
    assert account_state(PHONE)["flood_calls"] == 0
    assert operate("check")["verdict"] == "ok"  # the wait is over: it runs


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Good news, no limits are currently applied to your account. You’re free as a bird!", "free"),
        ("You're free as a bird!", "free"),
        ("Ваш аккаунт свободен от каких-либо ограничений.", "free"),
        ("Хорошие новости: на Ваш аккаунт не наложены ограничения.", "free"),
        ("I’m afraid some Telegram users found your messages annoying and forwarded them", "limited"),
        ("Your account is now limited until 29 May 2024, 12:43 UTC.", "limited"),
        ("К сожалению, Ваш аккаунт ограничен до 1 января.", "limited"),
        ("Hello!", "unknown"),
        ("", "unknown"),
    ],
)
def test_spambot_answers(text: str, status: str) -> None:
    assert spam_status(text) == status


# --- sessions, terminate-others -------------------------------------------------------------------------------


def test_sessions_lists_every_authorisation_without_ip_addresses(telegram: Telegram) -> None:
    telegram.account(sessions=3)
    result = operate("sessions")
    sessions = result["sessions"]
    assert len(sessions) == 3 + 1 and sessions[0]["current"] and not any(s["current"] for s in sessions[1:])
    assert sessions[0]["device"] == "Pixel 8"  # the fleet's own, as it presented itself
    pixel = next(s for s in sessions if s["device"] == "Pixel 7")
    assert pixel == {
        "hash": pixel["hash"],
        "current": False,
        "device": "Pixel 7",
        "platform": "Android",
        "system": "SDK 34",
        "app": "Telegram Android 10.14.5",
        "place": "Germany, Berlin",
        "created": 1_700_000_000,
        "last_active": 1_710_000_000,
    }
    assert isinstance(pixel["hash"], str) and int(pixel["hash"]) != 0
    assert [s["last_active"] for s in sessions[1:]] == sorted((s["last_active"] for s in sessions[1:]), reverse=True)
    assert "198.51.100" not in json.dumps(result) and "127.0.0.1" not in json.dumps(result)
    line = describe_result("sessions", result)
    assert line.startswith("3 other sessions: ") and "Pixel 7 (Telegram Android 10.14.5)" in line


def test_terminate_others_leaves_only_the_current_session(telegram: Telegram) -> None:
    telegram.account(sessions=3)
    result = operate("terminate-others")
    assert result == {"terminated": 3}
    assert describe_result("terminate-others", result) == "ended 3 other sessions"
    assert account_state(PHONE)["sessions"] == []
    remaining = operate("sessions")["sessions"]
    assert [s["current"] for s in remaining] == [True]
    assert describe_result("sessions", {"sessions": remaining}) == "no other sessions"
    again = operate("terminate-others")
    assert again == {"terminated": 0} and describe_result("terminate-others", again) == "no other sessions to end"
    assert seen().count("ResetAuthorizationsRequest") == 1


def test_terminate_others_from_a_session_too_new_changes_nothing(telegram: Telegram) -> None:
    telegram.account(sessions=2, fresh=True)
    error = failure("terminate-others")
    assert error.code == "session_too_fresh" and "possible from" in error.message
    assert error.detail.code == "too_fresh_to_end_until"
    assert len(account_state(PHONE)["sessions"]) == 2 and "ResetAuthorizationsRequest" not in seen()


def test_an_operation_on_a_banned_account_lets_the_error_through(telegram: Telegram) -> None:
    telegram.account(connect="banned", sessions=1)
    with pytest.raises(errors.UserDeactivatedBanError):
        operate("terminate-others")
    assert len(account_state(PHONE)["sessions"]) == 1


# --- 2fa --------------------------------------------------------------------------------------------------------


def test_2fa_reports_whether_a_password_is_set(telegram: Telegram) -> None:
    telegram.account()
    result = operate("2fa", {"current_password": None, "new_password": None, "hint": ""})
    assert result == {"has_password": False, "changed": False} and describe_result("2fa", result) == "no password"
    telegram.account(phone="+15550005678", password="old")
    result = operate("2fa", {}, phone="+15550005678")
    assert result == {"has_password": True, "changed": False} and describe_result("2fa", result) == "password set"


def test_2fa_sets_then_changes_the_password(telegram: Telegram) -> None:
    telegram.account()
    result = operate("2fa", {"current_password": None, "new_password": "first-secret", "hint": "pet"})
    assert result == {"has_password": True, "changed": True} and describe_result("2fa", result) == "password changed"
    assert password_matches(account_state(PHONE), "first-secret") and account_state(PHONE)["hint"] == "pet"
    operate("2fa", {"current_password": "first-secret", "new_password": "second-secret", "hint": ""})
    assert password_matches(account_state(PHONE), "second-secret")
    assert not password_matches(account_state(PHONE), "first-secret")
    assert "secret" not in json.dumps(result)


def test_2fa_with_the_wrong_current_password_changes_nothing(telegram: Telegram) -> None:
    telegram.account(password="old-secret")
    error = failure("2fa", {"current_password": "wrong-guess", "new_password": "new-secret", "hint": ""})
    assert (error.code, error.message) == ("wrong_password", "the current 2FA password is wrong")
    assert password_matches(account_state(PHONE), "old-secret")
    for secret in ("old-secret", "wrong-guess", "new-secret"):
        assert secret not in str(error) and secret not in repr(error)


def test_2fa_change_without_the_current_password_is_refused_before_asking(telegram: Telegram) -> None:
    telegram.account(password="old-secret")
    error = failure("2fa", {"current_password": None, "new_password": "new-secret", "hint": ""})
    assert error.code == "current_password_needed"
    assert password_matches(account_state(PHONE), "old-secret") and "UpdatePasswordSettingsRequest" not in seen()


def test_2fa_bad_new_settings(telegram: Telegram) -> None:
    telegram.account()
    assert failure("2fa", {"new_password": "", "hint": ""}).code == "password_invalid"
    error = failure("2fa", {"new_password": "same-secret", "hint": "same-secret"})
    assert error.code == "hint_invalid" and "same-secret" not in error.message
    assert account_state(PHONE)["password"] is None


# --- profile ------------------------------------------------------------------------------------------------------


def test_profile_changes_everything_asked(telegram: Telegram) -> None:
    telegram.account(taken=["someone"])
    result = operate(
        "profile",
        {"first_name": "Ann", "last_name": "Lee", "bio": "Hello there", "username": "ann_lee", "photo": png(200, 200)},
    )
    assert result["changed"] == ["first_name", "last_name", "bio", "username", "photo"]
    assert result["identity"] == {"name": "Ann Lee", "username": "ann_lee"}  # what the fleet shows from now on
    assert describe_result("profile", result) == "changed first_name, last_name, bio, username, photo"
    state = account_state(PHONE)
    assert (state["first_name"], state["last_name"], state["bio"], state["username"], state["photos"]) == (
        "Ann",
        "Lee",
        "Hello there",
        "ann_lee",
        1,
    )

    async def me() -> Any:
        client = new_client()
        await client.connect()
        try:
            return await client.get_me()
        finally:
            await client.disconnect()

    user = asyncio.run(me())
    assert (user.first_name, user.last_name, user.username) == ("Ann", "Lee", "ann_lee")


def test_profile_leaves_out_what_is_not_given_and_clears_with_empty_text(telegram: Telegram) -> None:
    telegram.account(last_name="Lee", bio="Old bio", username="ann_lee")
    assert operate("profile", {"last_name": "", "bio": "", "username": ""}) == {
        "changed": ["last_name", "bio", "username"],
        "identity": {"name": "Test", "username": None},
    }
    state = account_state(PHONE)
    assert (state["first_name"], state["last_name"], state["bio"], state["username"]) == ("Test", "", "", "")
    assert operate("profile", {"photo": JPEG}) == {"changed": ["photo"]}
    assert account_state(PHONE)["photos"] == 1
    assert operate("profile", {}) == {"changed": []} and describe_result("profile", {"changed": []}) == (
        "nothing to change"
    )


def test_profile_username_already_taken_changes_nothing(telegram: Telegram) -> None:
    telegram.account(taken=["someone"])
    error = failure("profile", {"first_name": "Ann", "username": "SomeOne", "photo": png(200, 200)})
    assert (error.code, error.message) == ("username_taken", "the username @SomeOne is already taken")
    state = account_state(PHONE)
    assert (state["first_name"], state["username"], state["photos"]) == ("Test", "user1234", 0)
    assert not {"UpdateProfileRequest", "UpdateUsernameRequest", "upload_file"} & set(seen())


def test_profile_username_telegram_finds_invalid_changes_nothing(telegram: Telegram) -> None:
    telegram.account()
    error = failure("profile", {"first_name": "Ann", "username": "abcd"})  # 4 letters: too short for Telegram
    assert error.code == "username_invalid" and "@abcd is not valid" in error.message
    assert account_state(PHONE)["first_name"] == "Test"


def test_profile_username_already_the_accounts_is_no_change(telegram: Telegram) -> None:
    telegram.account(username="ann_lee")
    assert operate("profile", {"username": "ann_lee"}) == {"changed": []}
    assert "UpdateUsernameRequest" not in seen()


def test_profile_username_not_modified_by_telegram_is_success(telegram: Telegram) -> None:
    """Telegram answers USERNAME_NOT_MODIFIED (the username changed meanwhile to the one asked): no failure."""
    telegram.account(username="ann_lee")

    class Stale(FakeClient):
        async def get_me(self, input_peer: bool = False) -> Any:
            user = await super().get_me(input_peer)
            user.username = "old_name"
            return user

    client = Stale(ClientSpec(7, PHONE, 12345, API_HASH, session_for(PHONE)))
    assert operate("profile", {"first_name": "Ann", "username": "ann_lee"}, client=client) == {
        "changed": ["first_name"],
        "identity": {"name": "Ann 1234", "username": "ann_lee"},
    }
    assert "UpdateUsernameRequest" in seen()


def test_profile_photo_that_is_not_an_image_changes_nothing(telegram: Telegram) -> None:
    telegram.account()
    for photo in (b"GIF89a" + b"\x00" * 32, b"%PDF-1.7 not an image", b""):
        error = failure("profile", {"first_name": "Ann", "photo": photo})
        assert (error.code, error.message) == ("photo_invalid", "the photo is not a JPEG or PNG image")
    assert seen() == [] and account_state(PHONE)["first_name"] == "Test"


def test_profile_photo_telegram_refuses_says_what_was_changed(telegram: Telegram) -> None:
    telegram.account()
    error = failure("profile", {"first_name": "Ann", "photo": png(1, 1)})
    assert error.code == "photo_invalid" and "too small" in error.message
    assert error.message.endswith("(first_name already changed)")
    assert account_state(PHONE)["photos"] == 0


def test_profile_lets_a_flood_wait_through_unchanged(telegram: Telegram) -> None:
    telegram.account(flood={"op_calls": 1, "seconds": 7})
    with pytest.raises(errors.FloodWaitError) as caught:
        operate("profile", {"first_name": "Ann"})
    assert caught.value.seconds == 7 and account_state(PHONE)["first_name"] == "Test"


# --- bad requests, helpers --------------------------------------------------------------------------------------------


def test_an_unknown_operation_is_a_clear_failure(telegram: Telegram) -> None:
    telegram.account()
    error = failure("reboot")
    assert error.code == "unknown_operation" and "reboot" in error.message


def test_image_kind() -> None:
    assert image_kind(png(2, 2)) == "png" and image_kind(JPEG) == "jpeg"
    assert image_kind(b"") is None and image_kind(b"GIF89a") is None and image_kind(b"\x89PNG") is None


def test_every_operation_has_a_summary() -> None:
    assert {name.value for name in OperationName} == {"check", "sessions", "terminate-others", "2fa", "profile"}
    assert describe_result("check", {"authorized": True, "spam": "unknown", "other_sessions": 1}) == (
        "ok · spam: unknown · 1 other session"
    )
    assert describe_result("terminate-others", {"terminated": 1}) == "ended 1 other session"
    assert operations.describe_result is describe_result
