"""How Telegram's errors become an operation's outcome (`worker.operation_failures`): refusals become clear
failures with stable codes, waits are told apart, everything else passes through unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from telethon import errors

from tests.support import operations_harness
from tests.support.fake_telegram import FakeClient, session_for
from tests.support.operations_harness import API_HASH, PHONE, Telegram, operate
from worker.clients import ClientSpec
from worker.operation_failures import failure_of, is_flood

# The harness's fixture, requested by name.
telegram = operations_harness.telegram


def test_telegram_errors_become_clear_failures() -> None:
    assert failure_of(errors.UsernameOccupiedError(request=None), "x_name").message == (
        "the username @x_name is already taken"
    )
    assert failure_of(errors.AboutTooLongError(request=None)).code == "bio_too_long"
    assert failure_of(errors.FirstNameInvalidError(request=None)).code == "first_name_invalid"
    assert failure_of(errors.PasswordHashInvalidError(request=None)).code == "wrong_password"
    fresh = failure_of(errors.PasswordTooFreshError(request=None, capture=3600))
    assert fresh.code == "password_too_fresh" and "about 60 minutes" in fresh.message
    for photo_error in (
        errors.PhotoInvalidDimensionsError,
        errors.ImageProcessFailedError,
        errors.PhotoCropSizeSmallError,
        errors.PhotoExtInvalidError,
    ):
        assert failure_of(photo_error(request=None)).code == "photo_invalid"
    unmapped = failure_of(errors.ChatAdminRequiredError(request=None))
    assert (unmapped.code, unmapped.message) == (
        "chat_admin_required",
        "Telegram refused the request (CHAT_ADMIN_REQUIRED)",
    )
    new = failure_of(errors.BadRequestError(request=None, message="SOMETHING_NEW_42"))
    assert (new.code, new.message) == ("something_new_42", "Telegram refused the request (SOMETHING_NEW_42)")


def test_waits_are_told_apart_from_refusals() -> None:
    assert is_flood(errors.FloodWaitError(request=None, capture=5))
    assert is_flood(errors.SlowModeWaitError(request=None, capture=5))
    assert is_flood(errors.FloodPremiumWaitError(request=None, capture=5))
    assert not is_flood(errors.PasswordTooFreshError(request=None, capture=5))
    assert not is_flood(errors.UsernameOccupiedError(request=None))


def test_other_errors_pass_through_unchanged(telegram: Telegram) -> None:
    class Broken(FakeClient):
        async def __call__(self, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None) -> Any:
            raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        operate("sessions", client=Broken(ClientSpec(7, PHONE, 12345, API_HASH, session_for(PHONE))))
