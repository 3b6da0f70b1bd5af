"""Device identities: a realistic one chosen for an account once, and the one an exported session brings.

An account is seen by Telegram as the device it logged in from: device model, system version, app version and
languages (`DeviceIdentity`, sent in InitConnection on every connect). It is stored with the account and never
changes. Where none is known (a new login, a `.session` file without a sidecar, an account older than this), one
is chosen from `PROFILES`, real combinations of the official apps, by a stable hash of the account's phone
lookup key (`seed`): the same account always gets the same one, whoever chooses it (the backend, the migration,
or a worker given a spec from before identities existed). An imported session's own identity comes from its
JSON sidecar in the common export format (`identity_fields`): `device`, `sdk`, `app_version`, `lang_pack`,
`system_lang_pack`, and their long names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from common.validation import InvalidValue, has_unsafe_characters, validation_message


def _device_text(value: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ValueError("must not be empty")
    if has_unsafe_characters(text):
        raise ValueError("must not hold control or bidi characters")
    return text


DeviceText = Annotated[str, Field(max_length=128), AfterValidator(_device_text)]
LanguageCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$", max_length=16)]
LangPack = Annotated[str, Field(pattern=r"^[a-z0-9_]{0,32}$")]


class DeviceIdentity(BaseModel):
    """How an account presents itself to Telegram on connecting (InitConnection): stored with the account and
    the same on every connect from every worker; a changed device fingerprint is a known ban risk. Part of the
    wire contract's payloads (`celery_app.contract` re-exports it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_model: DeviceText  # "Samsung SM-S918B", "iPhone 14 Pro", "Desktop"
    system_version: DeviceText  # "SDK 34", "17.5.1", "Windows 11"
    app_version: Annotated[str, Field(max_length=64), AfterValidator(_device_text)]  # "11.2.3 (5335)"
    lang_code: LanguageCode = "en"
    system_lang_code: LanguageCode = "en-US"
    lang_pack: LangPack = ""  # an official app's language pack ("tdesktop", "android"); empty for others

    def describe(self) -> str:
        """One line for people: `Samsung SM-S918B, SDK 34; app 11.2.3 (5335); en (system en-US)`."""
        pack = f", pack {self.lang_pack}" if self.lang_pack else ""
        return (
            f"{self.device_model}, {self.system_version}; app {self.app_version}; "
            f"{self.lang_code} (system {self.system_lang_code}{pack})"
        )


def _profile(device: str, system: str, app: str, lang: str = "en", system_lang: str = "en-US") -> DeviceIdentity:
    # No language pack: those are for the official apps' own API ids, and a chosen identity goes with any.
    return DeviceIdentity(
        device_model=device, system_version=system, app_version=app, lang_code=lang, system_lang_code=system_lang
    )


# Real combinations of Telegram Desktop, Telegram for Android and Telegram for iOS, as those apps report them.
# A change here changes only identities chosen from then on: chosen ones are stored with their accounts.
PROFILES: tuple[DeviceIdentity, ...] = (
    _profile("Desktop", "Windows 10", "5.9.1 x64"),
    _profile("Desktop", "Windows 11", "5.12.3 x64"),
    _profile("MS-7C02", "Windows 10", "5.10.7 x64"),
    _profile("B450M DS3H", "Windows 11", "5.11.1 x64", system_lang="en-GB"),
    _profile("Samsung SM-S918B", "SDK 34", "11.2.3 (5335)"),
    _profile("Samsung SM-A546B", "SDK 34", "11.1.3 (5244)"),
    _profile("Samsung SM-G991B", "SDK 33", "10.14.5 (4851)", system_lang="en-GB"),
    _profile("Google Pixel 8", "SDK 34", "11.2.3 (5335)"),
    _profile("Xiaomi 23049PCD8G", "SDK 33", "11.0.0 (5115)"),
    _profile("OnePlus CPH2449", "SDK 34", "11.1.3 (5244)"),
    _profile("iPhone 15 Pro", "17.5.1", "10.14.1 (28452)"),
    _profile("iPhone 14", "17.4.1", "10.11.1 (27811)"),
    _profile("iPhone 13 Pro", "16.7.8", "10.9.2 (27383)", system_lang="en-GB"),
    _profile("iPhone 12", "17.5.1", "10.14.1 (28452)"),
)

# Language packs of the official apps: a sidecar's `lang_pack` is one of these, or (in some exports) a language.
LANG_PACKS = frozenset({"tdesktop", "android", "android_x", "ios", "macos", "weba", "webk"})


def choose_identity(seed: str) -> DeviceIdentity:
    """The identity chosen for the account whose phone lookup key is `seed`: the same seed, the same identity."""
    digest = hashlib.sha256(f"fleet-device:{seed}".encode()).digest()
    return PROFILES[int.from_bytes(digest[:8], "big") % len(PROFILES)]


_FIELDS: dict[str, tuple[str, ...]] = {
    # DeviceIdentity field: the sidecar's names for it, preferred first
    "device_model": ("device_model", "device"),
    "system_version": ("system_version", "sdk"),
    "app_version": ("app_version",),
    "lang_code": ("lang_code",),
    "system_lang_code": ("system_lang_code", "system_lang_pack"),
}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def identity_fields(sidecar: Mapping[str, Any]) -> dict[str, str]:
    """The device identity fields an exported session's sidecar gives (only those it gives), by their names in
    `DeviceIdentity`. A `lang_pack` that names a language (`en`), as some exports write it, is the language."""
    found: dict[str, str] = {}
    for field, names in _FIELDS.items():
        for name in names:
            text = _text(sidecar.get(name))
            if text is not None:
                found[field] = text
                break
    pack = _text(sidecar.get("lang_pack"))
    if pack is not None:
        if pack.lower() in LANG_PACKS:
            found["lang_pack"] = pack.lower()
        else:
            found.setdefault("lang_code", pack)
    for field in ("lang_code", "system_lang_code"):
        if field in found:
            found[field] = found[field].replace("_", "-")
    return found


def complete_identity(fields: Mapping[str, str] | DeviceIdentity | None, chosen: DeviceIdentity) -> DeviceIdentity:
    """`fields` (a whole identity, some of its fields, or none) completed from `chosen`; InvalidValue says
    which given field is unusable."""
    if isinstance(fields, DeviceIdentity):
        return fields
    if not fields:
        return chosen
    try:
        return DeviceIdentity.model_validate({**chosen.model_dump(), **dict(fields)})
    except ValidationError as error:
        raise InvalidValue(f"unusable device identity: {validation_message(error)}", "device") from None
