"""The account card's forms: a new cloud password, a profile field, a plugin's configuration.

Their state lives in Redis like the add-account wizard's; what a form keeps there is the account id, what is
asked and, for the password form, the passwords typed so far — encrypted, as the wizard keeps the API hash.
Opening a card (or any screen with /start) leaves a form, so a stray message is never taken for its answer.
"""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup


class PasswordForm(StatesGroup):
    current = State()
    new = State()
    repeat = State()


class ProfileForm(StatesGroup):
    value = State()


class PluginForm(StatesGroup):
    config = State()


CARD_FORMS = (PasswordForm, ProfileForm, PluginForm)


async def leave_card_form(state: FSMContext) -> None:
    """Forget a card form in progress (and the passwords it holds); other forms are left alone."""
    current = await state.get_state()
    if current is not None and any(current in form for form in CARD_FORMS):
        await state.clear()
