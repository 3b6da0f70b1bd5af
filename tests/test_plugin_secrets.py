"""Plugin configuration marked secret (`SECRET_CONFIG`), on SQLite and PostgreSQL with a real Redis and real worker
keys: the database keeps it encrypted with SECRET_KEY, Redis holds it only sealed to the worker that runs the
account (a move, or a key pinned later, seals it again for that worker), every place that shows a configuration
shows `***`, bad input changes nothing, and the worker's plugin host opens it with its own key and hands the plugin
the clear value — or, sealed to another worker, reports a clear error and carries on."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import select

from backend.cli import cli
from backend.control_plane import ControlPlane
from celery_app import keys, plugin_config
from common.crypto import SecretBox, SecretError
from common.plugin_catalogue import PluginInfo, discover
from common.sealing import KeyPair, SealError, is_sealed, open_sealed, seal
from database import accounts as accounts_db
from database import workers as workers_db
from database.models import AccountPlugin, FleetEvent
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import SimulatedWorker
from tests.support.fake_telegram import session_for
from tests.support.plugin_harness import statuses
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until
from tests.test_accounts_processes import import_account
from tests.test_bot_operations import all_bot_output, harness, open_card, start_worker
from tests.test_bot_operations import import_account as bot_import_account
from tests.test_manager import Script
from worker.loops import LoopThread
from worker.plugins.host import PluginHost
from worker.secrets import WorkerSecrets

FIXTURES = (harness, start_worker)  # the bot's, over this module's plugins_dir
BOX = SecretBox(TEST_SECRET_KEY)
W1, W2, W3 = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
TOKEN = "tok-9f8e7d6c5b4a-very-secret"
OTHER = "tok-second-value-0123456789"
HOOK = '''
    """Calls a webhook with a token."""
    SECRET_CONFIG = {"token"}
    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {"url": {"type": "string"}, "token": {"type": "string", "minLength": 12}},
        "required": ["url", "token"],
        "additionalProperties": False,
    }
    SEEN = []

    def setup(client, context):
        SEEN.append(dict(context.config))
'''
LEAKY = """
    SECRET_CONFIG = ["token"]

    def setup(client, context):
        raise ValueError("refused token " + context.config["token"])
"""


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "hook.py").write_text(textwrap.dedent(HOOK))
    (directory / "leaky.py").write_text(textwrap.dedent(LEAKY))
    return directory


@pytest.fixture
def plane(
    monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str, plugins_dir: Path
) -> Iterator[ControlPlane]:
    """Workers w1 and w2 with pinned keys (W1, W2), w3 with none yet; account 1 on w1."""
    for name, value in (("REDIS_URL", redis_url), ("DATABASE_URL", database_url), ("PLUGINS_DIR", str(plugins_dir))):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    control = ControlPlane(
        redis_url, database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY, plugins_dir=lambda: str(plugins_dir)
    )
    for name, pair in (("w1", W1), ("w2", W2), ("w3", None)):
        control.fleet.add_worker(name, f"10.0.0.{len(name)}", "test")
        pin(control, name, pair)
    control.apps.add(1001, "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb", actor="test")
    control.accounts.import_session("w1", session_string=session_for("+15550007001"), phone="+15550007001", actor="t")
    yield control
    control.close()


def pin(plane: ControlPlane, worker: str, pair: KeyPair | None) -> None:
    with plane.sessions.begin() as session:
        workers_db.get_worker(session, worker).public_key = pair.public_key if pair else None


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input_text, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def enable(tmp_path: Path, config: dict[str, Any], *extra: str, input_text: str | None = None) -> tuple[int, str, str]:
    path = tmp_path / "hook.json"
    path.write_text(json.dumps(config))
    return run("plugins", "enable", "hook", "1", "--config", str(path), *extra, input_text=input_text)


def row(plane: ControlPlane) -> tuple[str, str | None]:
    with plane.sessions() as session:
        found = session.scalars(select(AccountPlugin)).one()
        return found.config, found.secrets_enc


def mirrored(redis: Redis, account_id: int = 1) -> dict[str, Any]:
    return plugin_config.read_desired(redis, [account_id])[account_id]["hook"]


def everything_in(redis: Redis) -> str:
    """Every key and value in Redis, as text."""
    dump = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        if kind == "string":
            dump.append(redis.get(key))
        elif kind == "hash":
            dump.append(json.dumps(redis.hgetall(key)))
        elif kind == "list":
            dump += redis.lrange(key, 0, -1)
        elif kind == "set":
            dump += sorted(redis.smembers(key))
        elif kind == "zset":
            dump += redis.zrange(key, 0, -1)
        elif kind == "stream":
            dump += [json.dumps(fields) for _, fields in redis.xrange(key)]
        dump.append(key)
    return "\n".join(str(item) for item in dump)


def opens_with(pair: KeyPair, token: str, account_id: int = 1) -> str:
    return open_sealed(pair, token, plugin_config.sealed_field(account_id, "hook", "token"))


def test_a_secret_is_encrypted_in_the_database_and_in_redis_only_sealed_to_the_accounts_worker(
    plane: ControlPlane, redis_client: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = enable(tmp_path, {"url": "https://hooks.example/1", "token": TOKEN})
    assert code == 0, err
    config, secrets_enc = row(plane)
    assert json.loads(config) == {"url": "https://hooks.example/1", "token": "***"}
    assert secrets_enc is not None and TOKEN not in secrets_enc
    assert json.loads(BOX.decrypt(secrets_enc)) == {"token": TOKEN}

    assert TOKEN not in everything_in(redis_client)
    sealed = mirrored(redis_client)
    assert sealed["url"] == "https://hooks.example/1" and is_sealed(sealed["token"])
    assert opens_with(W1, sealed["token"]) == TOKEN  # the worker that runs the account opens it
    with pytest.raises(SealError):
        opens_with(W2, sealed["token"])  # another worker's key does not
    with pytest.raises(SealError):
        opens_with(W1, sealed["token"], account_id=2)  # nor as another account's
    with pytest.raises(SecretError):
        BOX.decrypt(sealed["token"])  # nor SECRET_KEY
    with pytest.raises(SecretError):
        WorkerSecrets.with_secret_key(BOX).decrypt(sealed["token"], plugin_config.sealed_field(1, "hook", "token"))
    assert redis_client.hget(keys.account_plugins(1), plugin_config.SEALED_TO) == W1.public_key

    # Shown, audited, recorded and logged: never the value.
    code, out, err = run("plugins", "status", "1", "--json")
    assert code == 0 and json.loads(out)[0]["config"] == {"url": "https://hooks.example/1", "token": "***"}
    [audited] = [entry for entry in plane.audit.entries(limit=100) if entry.action == "plugin.enable"]
    assert TOKEN not in json.dumps(audited.params) and audited.params["config"] == {"url": ANY, "token": "***"}
    with plane.sessions() as session:
        assert all(TOKEN not in f"{event.detail}" for event in session.scalars(select(FleetEvent)))
    assert TOKEN not in caplog.text and TOKEN not in out + err


def test_a_move_seals_it_again_for_the_new_worker_and_a_worker_without_a_key_gets_none(
    plane: ControlPlane,
    redis_client: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert enable(tmp_path, {"url": "u", "token": TOKEN})[0] == 0
    monkeypatch.setattr(plane.accounts, "_worker_online", lambda name: name == "w2")
    plane.accounts.move(1, "w2", "cli:test")
    sealed = mirrored(redis_client)["token"]
    assert opens_with(W2, sealed) == TOKEN
    with pytest.raises(SealError):
        opens_with(W1, sealed)  # the old worker's copy is gone
    assert TOKEN not in everything_in(redis_client)

    # However the account got there (level-triggered): the backend's scan seals for where it is now.
    with plane.sessions.begin() as session:
        account = accounts_db.get_account(session, 1)
        accounts_db.assign_worker(session, account, workers_db.get_worker(session, "w3"), "test", "w2")
    caplog.set_level(logging.WARNING, logger="backend.plugin_secrets")
    assert plane.plugins.restore_mirror() is False
    assert "token" not in mirrored(redis_client)  # w3 has no pinned key: left out, never in clear
    assert redis_client.hget(keys.account_plugins(1), plugin_config.SEALED_TO) == ""
    plane.plugins.restore_mirror()
    assert sum("left out of the mirror" in record.getMessage() for record in caplog.records) == 1  # said once
    pin(plane, "w3", W3)  # its key pinned: the next scan seals for it
    plane.plugins.restore_mirror()
    assert opens_with(W3, mirrored(redis_client)["token"]) == TOKEN
    version = plugin_config.version(redis_client)
    plane.plugins.restore_mirror()
    assert plugin_config.version(redis_client) == version  # nothing stale: nothing rewritten
    assert TOKEN not in everything_in(redis_client) and TOKEN not in caplog.text


def test_the_cli_sets_a_secret_without_echo_keeps_it_on_stars_and_bad_input_changes_nothing(
    plane: ControlPlane, redis_client: Redis, tmp_path: Path
) -> None:
    code, _, err = enable(tmp_path, {"url": "u"}, "--secret", "token", "--secrets-from-stdin", input_text=TOKEN + "\n")
    assert code == 0, err
    assert opens_with(W1, mirrored(redis_client)["token"]) == TOKEN
    listed = {item["name"]: item for item in json.loads(run("plugins", "list", "--json")[1])}
    assert listed["hook"]["secret_config"] == ["token"] and listed["autoreply"]["secret_config"] == []
    before = row(plane), mirrored(redis_client)

    refusals = [
        (
            enable(tmp_path, {"url": "u"}, "--secret", "url", "--secrets-from-stdin", input_text="x\n"),
            "no secret 'url'",
        ),
        (enable(tmp_path, {"url": "u"}, "--secret", "token"), "no terminal to ask for the secret values"),
        (enable(tmp_path, {"url": "u", "token": "short-one"}), "token: the secret value breaks the schema's minLength"),
        (enable(tmp_path, {"url": "u", "token": 12345678901234}), "token: a secret value must be a string"),
        (enable(tmp_path, {"url": "u"}, "--secret", "token", "--secrets-from-stdin", input_text="\n"), "is empty"),
    ]
    for (code, out, err), said in refusals:
        assert code in (1, 2) and said in err, (said, err)
        assert "short-one" not in out + err and "12345678901234" not in out + err
        assert (row(plane), mirrored(redis_client)) == before  # nothing changed

    # `***` (as `status --json` shows it) keeps the stored value; a new value replaces it.
    assert enable(tmp_path, {"url": "v", "token": "***"})[0] == 0
    assert mirrored(redis_client)["url"] == "v" and opens_with(W1, mirrored(redis_client)["token"]) == TOKEN
    assert enable(tmp_path, {"url": "v", "token": OTHER})[0] == 0
    assert opens_with(W1, mirrored(redis_client)["token"]) == OTHER
    assert run("plugins", "disable", "hook", "1")[0] == 0
    code, _, err = enable(tmp_path, {"url": "v", "token": "***"})
    assert code == 1 and "account 1 has no stored value of 'token' to keep" in err, err
    assert run("plugins", "status", "1", "--json")[1].strip() == "[]"


@pytest.fixture
def catalogue(plugins_dir: Path) -> dict[str, PluginInfo]:
    return discover(str(plugins_dir))


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread(0)
    yield thread
    thread.close()


class Client:
    """The plugin uses nothing of its client."""

    def remove_event_handler(self, *_: object) -> None:
        pass


def test_the_plugin_host_hands_the_plugin_the_clear_value_and_one_sealed_elsewhere_is_an_error(
    plane: ControlPlane,
    redis_client: Redis,
    tmp_path: Path,
    catalogue: dict[str, PluginInfo],
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert enable(tmp_path, {"url": "u", "token": TOKEN})[0] == 0
    seen = catalogue["hook"].module.SEEN
    mine = PluginHost(redis_client, "w1", catalogue, opener=WorkerSecrets(W1, None, lambda: None).decrypt)
    try:
        loop_thread.call(mine.attach(1, Client(), plugin_config.read_desired(redis_client, [1])[1]), 10)
        assert seen == [{"url": "u", "token": TOKEN}]
        assert statuses(redis_client, mine)["hook"].state == "running"
        # Sealed again to the same worker (another plugin's change rewrites the account's mirror): the same
        # value once opened, so the plugin is not reloaded.
        plane.plugins.mirror.write(plane.sessions(), [1])
        loop_thread.call(mine.apply(1, plugin_config.read_desired(redis_client, [1])[1]), 10)
        assert len(seen) == 1
    finally:
        loop_thread.call(mine.detach(1), 10)
        mine.close()

    # A worker holding another key (the account moved here, its mirror not sealed again yet): a clear error in
    # the plugin's status, the worker carries on.
    caplog.set_level(logging.DEBUG)
    other = PluginHost(redis_client, "w1", catalogue, opener=WorkerSecrets(W2, BOX, lambda: None).decrypt)
    try:
        loop_thread.call(other.attach(1, Client(), plugin_config.read_desired(redis_client, [1])[1]), 10)
        status = statuses(redis_client, other)["hook"]
        assert status.state == "error" and status.coded is not None
        assert status.coded.code == "plugin_secret_unopened" and "its secret token does not open" in status.last_error
        assert len(seen) == 1 and other.loaded(1) == {}
    finally:
        loop_thread.call(other.detach(1), 10)
        other.close()
    assert TOKEN not in caplog.text

    # A plugin that puts its own secret into its error: its status (in Redis, shown by the bot and the CLI) masks it.
    leaky = PluginHost(redis_client, "w1", catalogue, opener=WorkerSecrets(W1, None, lambda: None).decrypt)
    try:
        config = {"token": seal(W1.public_key, TOKEN, plugin_config.sealed_field(1, "leaky", "token"))}
        loop_thread.call(leaky.attach(1, Client(), {"leaky": config}), 10)
        status = statuses(redis_client, leaky)["leaky"]
        assert status.state == "error" and "refused token ***" in status.last_error
        assert TOKEN not in everything_in(redis_client)
    finally:
        loop_thread.call(leaky.detach(1), 10)
        leaky.close()


PROCESS_HOOK = '''
    """Keeps a digest of its token: proof it got the clear value, without putting the value anywhere."""
    import hashlib

    SECRET_CONFIG = {"token"}
    CONFIG_SCHEMA = {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}

    async def setup(client, context):
        await context.kv.set("digest", hashlib.sha256(context.config["token"].encode()).hexdigest())
        await context.kv.incr("loads")
'''


@pytest.mark.processes
def test_worker_processes_without_secret_key_run_the_plugin_with_its_secret_across_a_move(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    plugins_dir = tmp_path / "process_plugins"
    plugins_dir.mkdir()
    (plugins_dir / "hook.py").write_text(textwrap.dedent(PROCESS_HOOK))
    stack.env["PLUGINS_DIR"] = str(plugins_dir)
    stack.start_backend()
    for name in ("w1", "w2"):
        stack.start_worker(name, unset=("SECRET_KEY",))
    wait_until(lambda: {"w1", "w2"} <= set(stack.workers()), 30, message="both workers recorded")
    wait_until(lambda: all(stack.cli_json("show", n)["key"] for n in ("w1", "w2")), 30, message="both keys pinned")
    account_id = import_account(stack, "w1", "+15550007002")
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    path = tmp_path / "hook.json"
    path.write_text(json.dumps({"token": TOKEN}))
    enabled = stack.cli("plugins", "enable", "hook", str(account_id), "--config", str(path))
    assert enabled.returncode == 0, enabled.stderr
    store = keys.plugin_store("hook", account_id)
    wait_until(lambda: redis_client.hget(store, "loads") == "1", 30, message="loaded on w1")
    assert redis_client.hget(store, "digest") == hashlib.sha256(TOKEN.encode()).hexdigest()

    moved = stack.cli("accounts", "move", str(account_id), "--to", "w2")
    assert moved.returncode == 0, moved.stderr
    wait_until(lambda: redis_client.hget(store, "loads") == "2", 60, message="loaded again on w2")
    assert redis_client.hget(store, "digest") == hashlib.sha256(TOKEN.encode()).hexdigest()
    text = (stack.workdir / "worker-w2.key").read_text().strip()
    w2_key = KeyPair.from_private_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    assert opens_with(w2_key, mirrored(redis_client, account_id)["token"], account_id) == TOKEN
    assert TOKEN not in everything_in(redis_client)
    assert all(TOKEN not in log.read_text(errors="replace") for log in stack.logs.values())  # nor any process's log


def test_the_bot_takes_a_secret_configuration_deletes_its_message_and_never_repeats_the_value(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker], redis_client: Redis
) -> None:
    start_worker("w1")
    with harness.services.accounts.sessions.begin() as session:
        workers_db.get_worker(session, "w1").public_key = W1.public_key
    account_id = bot_import_account(harness, "w1")
    chat = open_card(harness)
    chat.click("Плагины")
    chat.click("hook")
    mark = len(harness.core.calls)
    reply = chat.send(json.dumps({"url": "u", "token": "short-one"}))
    assert "token: the secret value breaks the schema&#x27;s minLength rule" in reply.params["text"]
    assert harness.services.plugins is not None and harness.services.plugins.status([account_id]) == []
    chat.send(json.dumps({"url": "u", "token": TOKEN}))
    assert "✅ Плагин <b>hook</b> включён." in chat.text()
    deleted = [c for c in harness.core.calls[mark:] if c.method == "deleteMessage"]
    assert len(deleted) == 2  # both messages that held a secret left the chat
    assert "short-one" not in all_bot_output(harness) and TOKEN not in all_bot_output(harness)
    sealed = plugin_config.read_desired(redis_client, [account_id])[account_id]["hook"]["token"]
    assert opens_with(W1, sealed, account_id) == TOKEN and TOKEN not in everything_in(redis_client)
