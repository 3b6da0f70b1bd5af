"""Device identities: chosen once or imported, stored with the account, and used on every connect everywhere.

Telegram sees an account as the device it connects from; the fake Telegram records the identity each client
connects with (`fake:devices`), so these tests check what Telegram would see, not what the code means to send.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis import Redis
from sqlalchemy import text

from backend.account_base import account_spec
from celery_app.account_state import AccountStatus
from celery_app.contract import AccountSpec, DeviceIdentity, StartAccount, parse_payload
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from common.devices import PROFILES, choose_identity, complete_identity, identity_fields
from common.validation import InvalidValue
from config import MTProtoEndpoint
from database.accounts import device_of
from database.engine import MIGRATIONS_DIR, SCHEMA_HEAD, create_db_engine, current_revision, ensure_schema
from database.models import Account
from scripts.embedded_redis import free_port
from tests.support import fake_telegram
from tests.support.fake_telegram import DEVICES, VIOLATIONS, session_for
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until
from tests.test_accounts_processes import API_HASH, connected, online
from tests.test_manager import Script, wait_status
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
from worker.runtime import WorkerRuntime
from worker.secrets import WorkerSecrets
from worker.telegram import telethon_factory

# The common export format's sidecar, as Telegram Desktop sessions are sold and moved between tools.
DESKTOP_SIDECAR = {
    "session_file": "79990000011",
    "phone": "+79990000011",
    "app_id": 2040,
    "app_hash": "b18441a1ff607e10a989891a5462e627",
    "device": "Desktop",
    "sdk": "Windows 11",
    "app_version": "5.12.3 x64",
    "system_lang_pack": "en-US",
    "lang_pack": "tdesktop",
    "lang_code": "en",
    "twoFA": None,
    "username": "someone",
}
DESKTOP = DeviceIdentity(
    device_model="Desktop",
    system_version="Windows 11",
    app_version="5.12.3 x64",
    lang_code="en",
    system_lang_code="en-US",
    lang_pack="tdesktop",
)


def seen_by_telegram(redis: Redis, phone: str) -> dict[str, Any] | None:
    """The device identity the fake Telegram saw the phone's latest client connect with."""
    raw = redis.hget(DEVICES, phone)
    return json.loads(raw) if raw else None


# --- choosing and reading identities ----------------------------------------------------------------------


def test_the_chosen_identity_is_realistic_stable_and_spread_over_the_set() -> None:
    box = SecretBox(TEST_SECRET_KEY)
    seed = box.lookup("+15550000001")
    assert choose_identity(seed) == choose_identity(seed) and choose_identity(seed) in PROFILES
    chosen = {choose_identity(box.lookup(f"+1555000{i:04d}")) for i in range(300)}
    assert len(chosen) >= len(PROFILES) - 2  # every kind of device, not one for the whole fleet
    platforms = {p.system_version.split()[0] for p in chosen}
    assert {"Windows", "SDK"} <= platforms and any(p.device_model.startswith("iPhone") for p in chosen)
    assert all(p.device_model != "Fleet worker" and p.lang_pack == "" for p in PROFILES)


def test_the_common_export_format_is_read_field_by_field() -> None:
    assert identity_fields(DESKTOP_SIDECAR) == DESKTOP.model_dump()
    assert complete_identity(identity_fields(DESKTOP_SIDECAR), PROFILES[5]) == DESKTOP
    long_names = {
        "device_model": "Samsung SM-G998B",
        "system_version": "SDK 31",
        "app_version": "10.2.0 (4004)",
        "lang_code": "ru",
        "system_lang_code": "ru_RU",
    }
    assert identity_fields(long_names) == {**long_names, "system_lang_code": "ru-RU"}
    # Some exports put the language in lang_pack; a pack is one of the official apps' names.
    assert identity_fields({"lang_pack": "de", "system_lang_pack": "de-DE"}) == {
        "lang_code": "de",
        "system_lang_code": "de-DE",
    }
    assert identity_fields({"device": "", "sdk": None, "app_version": {"x": 1}, "phone": "+1"}) == {}
    # Only what is given is kept; the rest comes from the identity chosen for the account.
    partial = complete_identity({"device_model": "Pixel 7", "lang_code": "es"}, PROFILES[4])
    assert partial.device_model == "Pixel 7" and partial.lang_code == "es"
    assert partial.app_version == PROFILES[4].app_version
    with pytest.raises(InvalidValue, match="device_model"):
        complete_identity({"device_model": "Evil\u202eDevice"}, PROFILES[0])
    with pytest.raises(InvalidValue, match="lang_code"):
        complete_identity({"lang_code": "not a language"}, PROFILES[0])


def test_the_identity_crosses_the_wire_validated() -> None:
    box = SecretBox(TEST_SECRET_KEY)
    spec = AccountSpec(
        account_id=1,
        phone_enc=box.encrypt("+15550000001"),
        api_id=1,
        api_hash_enc=box.encrypt(API_HASH),
        session_enc=box.encrypt(session_for("+15550000001")),
        device=DESKTOP,
    )
    assert AccountSpec.model_validate_json(spec.model_dump_json()).device == DESKTOP
    forged = {**spec.model_dump(mode="json"), "device": {**DESKTOP.model_dump(), "device_model": "x\u0000y"}}
    assert parse_payload(StartAccount, {"spec": forged}).model_dump()["error"] == "invalid_payload"
    with pytest.raises(ValidationError):
        DeviceIdentity(device_model="a", system_version="b", app_version="c", extra="no")  # type: ignore[call-arg]


def test_the_real_client_is_built_with_exactly_the_identity(tmp_path: Path) -> None:
    """No connection is made: the InitConnection request Telethon will send is read off the client."""
    factory = telethon_factory(MTProtoEndpoint(2, "127.0.0.1", free_port(), None))
    client: Any = factory(ClientSpec(1, "+15550000001", 2040, API_HASH, session_for("+1555"), device=DESKTOP))
    init = client._init_request
    assert (init.device_model, init.system_version, init.app_version) == ("Desktop", "Windows 11", "5.12.3 x64")
    assert (init.lang_code, init.system_lang_code, init.lang_pack) == ("en", "en-US", "tdesktop")
    assert init.device_model != "Fleet worker"
    chosen: Any = factory(ClientSpec(2, "+15550000002", 1, API_HASH, "", device=PROFILES[4]))
    assert chosen._init_request.device_model == PROFILES[4].device_model and chosen._init_request.lang_pack == ""


# --- the worker ---------------------------------------------------------------------------------------------


def _runtime(redis: Redis, name: str, box: SecretBox) -> WorkerRuntime:
    manager = AccountManager(fake_telegram.factory, redis, name, f"inst-{name}", 1, 5.0)
    manager.open()
    return WorkerRuntime(
        WorkerInfo(name, "", "", 1, "", 0, f"inst-{name}"), 1, manager, WorkerSecrets.with_secret_key(box)
    )


def _wire(box: SecretBox, account_id: int, phone: str, device: DeviceIdentity | None) -> dict[str, Any]:
    spec = AccountSpec(
        account_id=account_id,
        phone_enc=box.encrypt(phone),
        api_id=12345,
        api_hash_enc=box.encrypt(API_HASH),
        session_enc=box.encrypt(session_for(phone)),
        device=device,
    )
    return {"spec": spec.model_dump(mode="json")}


def test_the_worker_connects_with_the_identity_it_is_given_or_the_one_chosen_for_the_account(
    redis_client: Redis, script: Script
) -> None:
    box = SecretBox(TEST_SECRET_KEY)
    runtime = _runtime(redis_client, "w1", box)
    try:
        assert runtime.start(_wire(box, 1, "+15550000001", DESKTOP))["ok"]
        wait_status(redis_client, 1, AccountStatus.RUNNING)
        wait_until(lambda: seen_by_telegram(redis_client, "+15550000001"), 5, message="connected")
        assert seen_by_telegram(redis_client, "+15550000001") == DESKTOP.model_dump()
        # A spec from a control plane older than identities: the one its database migration chose.
        assert runtime.start(_wire(box, 2, "+15550000002", None))["ok"]
        wait_until(lambda: seen_by_telegram(redis_client, "+15550000002"), 5, message="connected")
        expected = choose_identity(box.lookup("+15550000002")).model_dump()
        assert seen_by_telegram(redis_client, "+15550000002") == expected
    finally:
        runtime.manager.shutdown(timeout=5)


# --- end to end: the CLI, the backend and real worker processes ---------------------------------------------


def _session_file(path: Path, index: int) -> None:
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    session = SQLiteSession(str(path))
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(bytes([index]) * 256)
    session.save()
    session.close()


@pytest.mark.processes
def test_a_login_chooses_an_identity_once_and_every_worker_connects_with_it(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    phone = "+15550020001"
    stack.start_backend()
    first = stack.start_worker("w1")
    online(stack, "w1")
    login = stack.cli(
        "accounts",
        "login",
        "--worker",
        "w1",
        "--phone",
        phone,
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        "--start",
        input_text="1 2 3 4 5\n",
    )
    assert login.returncode == 0, login.stderr
    assert "is running" in login.stdout
    document = stack.cli_json("accounts", "show", "1")
    chosen = choose_identity(SecretBox(TEST_SECRET_KEY).lookup(phone))
    assert document["device"] == chosen.model_dump()
    assert seen_by_telegram(redis_client, phone) == document["device"]  # the login and the start alike
    shown = stack.cli("accounts", "show", "1").stdout
    assert any(line.startswith("Device ") and line.endswith(chosen.describe()) for line in shown.splitlines())
    assert stack.cli_json("accounts", "list")[0]["device"] == document["device"]

    # A restarted worker resumes the account as the same device.
    first.send_signal(signal.SIGKILL)
    first.wait()
    redis_client.delete(f"fake:connected:{phone}")
    redis_client.hdel(DEVICES, phone)
    restarted = stack.start_worker("w1")
    wait_until(lambda: (connected(redis_client, phone) or "").startswith(f"{restarted.pid}:"), 20, message="resumed")
    assert seen_by_telegram(redis_client, phone) == document["device"]

    # Moved to another worker, it is still the same device.
    second = stack.start_worker("w2")
    online(stack, "w2")
    redis_client.hdel(DEVICES, phone)
    assert stack.cli("accounts", "move", "1", "--to", "w2").returncode == 0
    wait_until(lambda: (connected(redis_client, phone) or "").startswith(f"{second.pid}:"), 20, message="moved")
    assert seen_by_telegram(redis_client, phone) == document["device"]

    # Logging in again (a new session) keeps the identity the account has always had.
    assert stack.cli("accounts", "stop", "1").returncode == 0
    redis_client.hdel(DEVICES, phone)
    again = stack.cli(
        "accounts",
        "login",
        "--worker",
        "w2",
        "--phone",
        phone,
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        input_text="1 2 3 4 5\n",
    )
    assert again.returncode == 0, again.stderr
    assert seen_by_telegram(redis_client, phone) == document["device"]
    assert stack.cli_json("accounts", "show", "1")["device"] == document["device"]
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


@pytest.mark.processes
def test_an_imported_session_keeps_the_identity_its_export_gives(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    stack.start_worker("w1")
    online(stack, "w1")
    stack.cli("add", "w1", "--address", "x")
    folder = tmp_path / "export"
    folder.mkdir()
    _session_file(folder / "79990000011.session", 1)
    (folder / "79990000011.json").write_text(json.dumps(DESKTOP_SIDECAR))
    _session_file(folder / "79990000012.session", 2)  # no sidecar: an identity is chosen for it
    _session_file(folder / "79990000013.session", 3)
    (folder / "79990000013.json").write_text(json.dumps({"device": "Bad\u202edevice"}))
    result = stack.cli(
        "accounts", "import", "--worker", "w1", "--folder", str(folder), "--api-id", "1", "--api-hash", API_HASH
    )
    assert "imported 2 of 3 session file(s) onto w1" in result.stdout
    assert "skipped 79990000013.session: unusable device identity: device_model" in result.stdout
    listed = {a["phone"]: a for a in stack.cli_json("accounts", "list")}
    desktop, plain = listed["+7 *** ***-00-11"], listed["+7 *** ***-00-12"]
    assert desktop["device"] == DESKTOP.model_dump() and desktop["api_id"] == 2040
    assert plain["device"] == choose_identity(SecretBox(TEST_SECRET_KEY).lookup("+79990000012")).model_dump()

    # A single .session file with the export's sidecar beside it.
    _session_file(tmp_path / "solo.session", 4)
    solo_sidecar = {"device": "Samsung SM-G998B", "sdk": "SDK 31", "app_version": "10.2.0 (4004)", "lang_pack": "ru"}
    (tmp_path / "solo.json").write_text(json.dumps({**solo_sidecar, "system_lang_pack": "ru-RU"}))
    solo = stack.cli(
        "accounts",
        "import",
        "--worker",
        "w1",
        "--session-file",
        str(tmp_path / "solo.session"),
        "--phone",
        "+79990000014",
        "--api-id",
        "6",
        "--api-hash",
        API_HASH,
    )
    assert solo.returncode == 0, solo.stderr
    solo_id = int(solo.stdout.split("imported account ")[1].split()[0])
    assert stack.cli_json("accounts", "show", str(solo_id))["device"] == {
        "device_model": "Samsung SM-G998B",
        "system_version": "SDK 31",
        "app_version": "10.2.0 (4004)",
        "lang_code": "ru",
        "system_lang_code": "ru-RU",
        "lang_pack": "",
    }

    # Started, each connects as the device its export says it is.
    assert stack.cli("accounts", "start", str(desktop["id"])).returncode == 0
    assert seen_by_telegram(redis_client, "+79990000011") == DESKTOP.model_dump()
    assert stack.cli("accounts", "start", str(solo_id)).returncode == 0
    assert seen_by_telegram(redis_client, "+79990000014")["device_model"] == "Samsung SM-G998B"  # type: ignore[index]


# --- existing accounts --------------------------------------------------------------------------------------


def _upgrade_to(engine: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    command.upgrade(config, revision)


def test_the_migration_gives_existing_accounts_the_identity_a_worker_would_choose(
    database_url: str, redis_client: Redis, script: Script
) -> None:
    box = SecretBox(TEST_SECRET_KEY)
    phones = ["+15550030001", "+15550030002", "+15550030003"]
    engine = create_db_engine(database_url)
    _upgrade_to(engine, "0005_board")
    with engine.begin() as connection:
        for phone in phones:
            connection.execute(
                text(
                    "INSERT INTO accounts (phone_enc, phone_lookup, phone_masked, api_id, api_hash_enc, session_enc,"
                    " desired_state, status, status_detail, created_at, updated_at) VALUES (:enc, :lookup,"
                    " '+1 *** ***-00-01', 1, :hash, :session, 'running', 'stopped', '', '2026-11-01 00:00:00',"
                    " '2026-11-01 00:00:00')"
                ),
                {
                    "enc": box.encrypt(phone),
                    "lookup": box.lookup(phone),
                    "hash": box.encrypt(API_HASH),
                    "session": box.encrypt(session_for(phone)),
                },
            )
    ensure_schema(engine)
    assert current_revision(engine) == SCHEMA_HEAD
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        accounts = session.query(Account).order_by(Account.id).all()
        devices = {box.decrypt(a.phone_enc): device_of(a) for a in accounts}
        specs = [account_spec(a) for a in accounts]
    assert devices == {phone: choose_identity(box.lookup(phone)) for phone in phones}
    assert all(spec.device is not None for spec in specs)
    with engine.connect() as connection:
        nulls = connection.execute(text("SELECT count(*) FROM accounts WHERE device_model IS NULL")).scalar()
    assert nulls == 0
    # A worker given a spec sent before the upgrade (no identity) connects as the migration's choice.
    runtime = _runtime(redis_client, "w1", box)
    try:
        old_spec = specs[0].model_copy(update={"device": None})
        assert runtime.start({"spec": old_spec.model_dump(mode="json")})["ok"]
        wait_until(lambda: seen_by_telegram(redis_client, phones[0]), 5, message="connected")
        assert seen_by_telegram(redis_client, phones[0]) == devices[phones[0]].model_dump()
    finally:
        runtime.manager.shutdown(timeout=5)
    engine.dispose()
