"""The Telegram sandbox driven as a user drives it: `run_cli.py sandbox …` over the control channel, against a
sandbox running here (the loopback server, its people, the control server), with real Telethon clients as the
fleet's accounts. What the CLI says, what Telegram (the sandbox) then does to a live client, and refusals that
change nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from telethon import errors, events, functions

import sandbox.people as people_module
from backend.cli import cli
from sandbox.control import ControlClient, ControlServer, SandboxUnavailable
from sandbox.mtproto import MTProtoServer, ServerKey
from sandbox.people import People
from sandbox.service import SandboxService
from tests.support.mtproto_harness import make_client, run, server_key, wait_until
from tests.support.stack import ROOT
from tests.support.stack import wait_until as wait_for

PHONE = "+99966200001"


@pytest.fixture
def sandbox(server_key: ServerKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxService]:
    with MTProtoServer(key=server_key) as server:
        people = People(server, chatter_every=0, seed=1).start(run=False)
        service = SandboxService(server, people)
        control = ControlServer(service.handlers(), tmp_path).start()
        monkeypatch.setenv("SANDBOX_CONTROL_FILE", str(control.path))
        monkeypatch.delenv("FLEET_SANDBOX", raising=False)
        service.add_account(PHONE, first_name="Demo", username="demo01")
        try:
            yield service
        finally:
            control.stop()


def sandbox_cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["sandbox", *args], catch_exceptions=False)
    return result


def logged_in(service: SandboxService, phone: str = PHONE) -> str:
    return service.server.session_string(phone)


def test_status_says_where_it_listens_and_who_is_there(sandbox: SandboxService) -> None:
    result = sandbox_cli("status", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["address"] == f"127.0.0.1:{sandbox.server.port}"
    assert found["accounts"] == 1 and found["connected"] == 0
    assert [p["name"] for p in found["people"]] == ["tester", "alice", "boris", "olga"]
    human = sandbox_cli("status")
    assert f"sandbox at 127.0.0.1:{sandbox.server.port}" in human.stdout and "tester (you)" in human.stdout


def test_a_message_sent_from_the_cli_reaches_the_running_client_at_once(sandbox: SandboxService) -> None:
    async def scenario() -> tuple[str, str]:
        client = make_client(sandbox.server, logged_in(sandbox))
        received: asyncio.Queue[Any] = asyncio.Queue()
        client.add_event_handler(received.put, events.NewMessage(incoming=True))
        await client.connect()
        await client.get_me()  # receiving updates from here on
        result = await asyncio.to_thread(sandbox_cli, "send", "--to", "@demo01", "--text", "Здравствуйте")
        event = await asyncio.wait_for(received.get(), 20)
        sender = await event.get_sender()
        await client.disconnect()
        return result.stdout, f"{sender.username}: {event.raw_text}"

    said, seen = run(scenario(), timeout=60)
    assert said.strip() == "sent to @demo01 as tester: its running client got it"
    assert seen == "tester: Здравствуйте"
    chat = json.loads(sandbox_cli("chat", "@demo01", "--json").stdout)
    assert [(m["from"], m["text"]) for m in chat["messages"]] == [("@tester", "Здравствуйте")]


def test_sending_as_a_named_person_and_reading_one_chat(sandbox: SandboxService) -> None:
    assert sandbox_cli("send", "--to", PHONE, "--text", "hi from alice", "--as", "alice").exit_code == 0
    assert sandbox_cli("send", "--to", "@demo01", "--text", "hi from you").exit_code == 0
    only_alice = json.loads(sandbox_cli("chat", "@demo01", "--with", "alice", "--json").stdout)
    assert [m["text"] for m in only_alice["messages"]] == ["hi from alice"]
    table = sandbox_cli("chat", "@demo01").stdout
    assert "← @alice" in table and "← @tester" in table and "hi from you" in table


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["send", "--to", "@demo01", "--text", "   "], "the message is empty"),
        (["send", "--to", "@demo01", "--text", "x" * 4097], "the message is longer than 4096 characters"),
        (["send", "--to", "@demo01", "--text", "hi", "--as", "mallory"], "the sandbox has no person 'mallory'"),
        (["send", "--to", "@nobody", "--text", "hi"], "the sandbox has no account '@nobody'"),
        (["chat", "+99966209999"], "the sandbox has no account '+99966209999'"),
        (["flood", "@nobody"], "the sandbox has no account '@nobody'"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(sandbox: SandboxService, args: list[str], said: str) -> None:
    result = sandbox_cli(*args)
    assert result.exit_code == 1
    assert said in result.stderr and "Traceback" not in result.output
    assert sandbox.status()["messages"] == 0


def test_an_account_id_that_is_not_one_is_a_usage_error(sandbox: SandboxService) -> None:
    result = sandbox_cli("send", "--to", "one", "--text", "hi")
    assert result.exit_code == 2 and "is not an account id, an @username or a +phone" in result.stderr


def test_flood_revoke_and_ban_are_telegrams_refusals_on_the_live_client(sandbox: SandboxService) -> None:
    async def scenario() -> list[str]:
        client = make_client(sandbox.server, logged_in(sandbox))
        await client.connect()
        await client.get_me()
        seen = []
        assert sandbox_cli("flood", "@demo01", "--seconds", "7").stdout.strip() == (
            "@demo01: the next 1 call(s) get FLOOD_WAIT_7"
        )
        try:
            await client.get_me()
        except errors.FloodWaitError as error:
            seen.append(f"flood {error.seconds}")
        await client(functions.updates.GetStateRequest())  # one call only (Telethon holds getUsers back itself)
        assert sandbox_cli("ban", "@demo01").exit_code == 0
        try:
            await client(functions.updates.GetStateRequest())
        except errors.UserDeactivatedBanError:
            seen.append("banned")
        assert "the ban is lifted" in sandbox_cli("ban", "@demo01", "--lift").stdout
        await client(functions.updates.GetStateRequest())
        assert sandbox_cli("revoke", "@demo01").exit_code == 0
        await client.disconnect()
        again = make_client(sandbox.server, client.session.save())
        await again.connect()
        seen.append(f"authorized after revoke: {await again.is_user_authorized()}")
        await again.disconnect()
        return seen

    assert run(scenario(), timeout=60) == ["flood 7", "banned", "authorized after revoke: False"]


def test_the_scripted_people_answer_once_a_minute_and_you_never(
    sandbox: SandboxService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(people_module, "ANSWER_DELAY", (0.0, 0.0))
    people = sandbox.people

    async def write(texts: list[tuple[str, str]]) -> None:
        client = make_client(sandbox.server, logged_in(sandbox))
        await client.connect()
        for peer, text in texts:
            await client.send_message(peer, text)
        await client.disconnect()

    run(write([("alice", "hello Alice"), ("tester", "hello me")]), timeout=60)
    people.answer_new()
    people.deliver_due()
    run(write([("alice", "are you there?")]), timeout=60)
    people.answer_new()
    people.deliver_due()
    chat = sandbox.chat(PHONE)["messages"]
    answers = [m["text"] for m in chat if m["from"] == "@alice"]
    assert len(answers) == 1 and answers[0] in people_module.person("alice").answers  # type: ignore[union-attr]
    assert not [m for m in chat if m["from"] == "@tester"]  # you never answer by yourself
    read = {m["text"]: m["read"] for m in chat if m["out"]}
    assert read == {"hello Alice": True, "are you there?": True, "hello me": False}  # alice read hers (✓✓)
    assert "hello Alice ✓✓" in sandbox_cli("chat", "@demo01").stdout


def test_chatter_writes_only_to_connected_accounts(sandbox: SandboxService) -> None:
    sandbox.people.chatter()
    assert sandbox.status()["messages"] == 0  # nobody connected: nobody to show it to

    async def connected_while_chatting() -> str:
        client = make_client(sandbox.server, logged_in(sandbox))
        received: asyncio.Queue[Any] = asyncio.Queue()
        client.add_event_handler(received.put, events.NewMessage(incoming=True))
        await client.connect()
        await client.get_me()
        await wait_until(lambda: sandbox.server.live_connections(PHONE) > 0, 20)
        await asyncio.to_thread(sandbox.people.chatter)
        event = await asyncio.wait_for(received.get(), 20)
        await client.disconnect()
        return str(event.raw_text)

    assert run(connected_while_chatting(), timeout=60) in {line for p in people_module.PEOPLE for line in p.says}


def test_without_a_sandbox_the_cli_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_CONTROL_FILE", str(tmp_path / "control.json"))
    result = sandbox_cli("status")
    assert result.exit_code == 1
    assert "no sandbox is running here" in result.stderr and "`make run` starts one" in result.stderr


def test_a_caller_without_the_key_is_refused(sandbox: SandboxService, tmp_path: Path) -> None:
    control = Path(os.environ["SANDBOX_CONTROL_FILE"])
    assert control.stat().st_mode & 0o077 == 0
    forged = json.loads(control.read_text()) | {"key": "00" * 32}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(SandboxUnavailable):
        ControlClient(tmp_path / "forged.json").call("status")
    assert ControlClient(control).call("status")["accounts"] == 1  # and the sandbox serves on


def test_the_cli_marks_a_sandbox_fleet(sandbox: SandboxService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_SANDBOX", "1")
    result = sandbox_cli("status", "--json")
    assert result.stderr.startswith("🧪 SANDBOX")
    json.loads(result.stdout)  # stdout stays one JSON document


def test_run_sandbox_listens_on_loopback_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "run_sandbox.py", "--dir", str(tmp_path), "--chatter", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("2@127.0.0.1:")
        control = tmp_path / "control.json"
        wait_for(control.exists, 30, message="the control file")
        assert (tmp_path / "server_key.pem").read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
        assert ControlClient(control).call("status")["dc"] == first
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "sandbox stopped" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "control.json").exists()


FIXTURES = (server_key,)
