"""`run_cli.py board …`: statistics and the report queue match what was seeded through the board's service,
moderation by report id, usage errors exit 2, and no board user's Telegram id is ever printed."""

from __future__ import annotations

import getpass
import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from backend.cli import cli
from board.errors import BoardError
from board.service import BoardService
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardReport, ReportTarget
from database.engine import open_database
from tests.support.stack import TEST_SECRET_KEY, Stack
from tests.test_board_admin import CAROL, TELEGRAM_IDS, Seeded, ad_status, resolved_by, seed


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str, secret_key: str) -> dict[str, str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BOARD_HIDE_AFTER_REPORTS", "2")
    return {"REDIS_URL": redis_url, "DATABASE_URL": sqlite_url, "SECRET_KEY": secret_key}


def seeded(database_url: str) -> Seeded:
    _engine, sessions = open_database(database_url)
    return seed(BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits(hide_after_reports=2)))


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, input=input_text)
    return result.exit_code, result.stdout, result.stderr


def assert_no_telegram_ids(*outputs: str) -> None:
    for output in outputs:
        for tg_id in TELEGRAM_IDS:
            assert str(tg_id) not in output


def test_stats_match_the_seeded_board(env: dict[str, str]) -> None:
    seeded(env["DATABASE_URL"])
    code, out, _ = run("board", "stats", "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["days"] == 1 and len(stats["per_day"]) == 1
    assert (stats["ads_posted"], stats["ads_open"]) == (3, 2)
    assert (stats["invites_sent"], stats["invites_accepted"], stats["invites_declined"]) == (3, 1, 2)
    assert stats["accept_rate"] == 0.333
    assert (stats["chats_active"], stats["reports_open"], stats["reports_new"]) == (1, 5, 5)

    code, out, _ = run("board", "stats", "--days", "7", "--json")
    week = json.loads(out)
    assert code == 0 and len(week["per_day"]) == 7
    assert week["per_day"][-1] | {"day": ""} == {"day": "", "ads": 3, "invites": 3, "accepted": 1, "declined": 2}
    assert sum(day["ads"] for day in week["per_day"]) == 3

    code, out, _ = run("board", "stats", "--days", "7")
    assert code == 0
    lines = out.splitlines()
    assert "Ads posted        3" in lines and "Accept rate       33%" in lines and "Reports open      5" in lines
    table = lines[lines.index(next(line for line in lines if line.startswith("DAY"))) :]
    assert table[0].split() == ["DAY", "ADS", "INVITES", "ACCEPTED", "DECLINED"] and len(table) == 8
    assert table[-1].split()[1:] == ["3", "3", "1", "2"]
    assert_no_telegram_ids(out)


@pytest.mark.parametrize("days", ["0", "-1", "abc", "91", "1.5"])
def test_a_bad_number_of_days_is_a_usage_error(env: dict[str, str], days: str) -> None:
    code, out, err = run("board", "stats", "--days", days)
    assert code == 2 and out == "" and "--days" in err


def test_reports_table_and_json(env: dict[str, str]) -> None:
    data = seeded(env["DATABASE_URL"])
    handles = {name: ref.public_id for name, ref in data.users.items()}
    code, out, _ = run("board", "reports")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TARGET", "REASON", "REPORTED", "AD", "AGE"]
    rows = lines[1:6]
    assert [row.split()[0] for row in rows] == list(data.reports.values())  # oldest first
    assert rows[0].split()[1] == "ad" and handles["carol"] in rows[0] and "Cheap phones" in rows[0]
    assert rows[2].split()[1] == "invite" and rows[3].split()[1] == "chat" and handles["bob"] in rows[3]
    assert re.search(r"\b\d+ s ago$", rows[0]) and "5 open reports shown" in out  # no clock bound: busy CI

    code, out, _ = run("board", "reports", "--json")
    reports = json.loads(out)
    assert code == 0 and [r["id"] for r in reports] == list(data.reports.values())
    chat = reports[3]
    assert chat["target"] == "chat" and chat["status"] == "open" and chat["reported"] == handles["bob"]
    assert [m["from"] for m in chat["last_messages"]] == [handles["bob"], handles["alice"], handles["bob"]]
    assert reports[2]["content"] == "Buy cheap phones from me <script>"

    code, out, _ = run("board", "reports", "--limit", "2", "--json")
    assert [r["id"] for r in json.loads(out)] == [data.reports["cheap1"], data.reports["cheap2"]]
    assert run("board", "reports", "--limit", "0")[0] == 2
    assert_no_telegram_ids(out)


def test_moderation_by_report_id(env: dict[str, str]) -> None:
    data = seeded(env["DATABASE_URL"])
    me = f"cli:{getpass.getuser()}"
    code, out, _ = run("board", "dismiss", data.reports["cheap1"])
    assert code == 0 and f"report {data.reports['cheap1']} dismissed" in out
    assert run("board", "dismiss", data.reports["cheap2"])[0] == 0
    assert ad_status(data, "cheap") == "open"  # hidden by reports, back once none is pending
    assert resolved_by(data.service, data.reports["cheap1"]) == ("dismissed", me)

    code, out, _ = run("board", "hide", data.reports["flat"])
    assert code == 0 and "ad 'Flat to rent' hidden" in out and ad_status(data, "flat") == "hidden"

    code, _, err = run("board", "ban", data.reports["invite"], input_text="n\n")
    assert code == 1 and data.users["carol"].public_id in err and not data.service.user(CAROL).banned
    code, out, _ = run("board", "ban", data.reports["invite"], "--yes")
    assert code == 0 and f"banned {data.users['carol'].public_id}" in out
    with pytest.raises(BoardError) as refused:
        data.service.create_ad(data.service.user(CAROL), "Phones again", "Even cheaper now", "sale")
    assert refused.value.code == "banned"

    code, out, _ = run("board", "reports", "--json")
    assert [r["id"] for r in json.loads(out)] == [data.reports["chat"]]
    code, out, _ = run("board", "reports", "--all")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[-1] == "STATUS" and len(lines) == 6
    assert [line.split()[-1] for line in lines[1:]] == ["dismissed", "dismissed", "actioned", "open", "actioned"]
    assert "(banned)" in lines[3]

    for args in (["dismiss"], ["hide"], ["show"], ["ban", "--yes"]):
        code, _, err = run("board", *args, "no-such-report")
        assert code == 1 and "Report not found." in err
    code, _, err = run("board", "hide", data.reports["chat"])  # a chat's ad may be the reporter's own
    assert code == 1 and "about a chat, not an ad" in err and ad_status(data, "bike") == "open"


def test_show_prints_a_report_with_control_characters_escaped(env: dict[str, str]) -> None:
    data = seeded(env["DATABASE_URL"])
    sneaky = data.service.report(data.users["erin"], ReportTarget.AD, data.ads["bike"], "see\x1b[2J\u202ethis")
    assert data.service.get_report(sneaky).reason == "see[2Jthis"  # cleaned before it is stored
    with data.service.sessions.begin() as session:  # as a report stored before that would read
        session.execute(
            update(BoardReport).where(BoardReport.public_id == sneaky).values(reason="see\x1b[2J\u202ethis")
        )
    code, out, _ = run("board", "show", sneaky)
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\\x1b[2J\\u202ethis" in out
    assert "Bike <b>for</b> sale" in out and "Red bike & a helmet" in out
    code, out, _ = run("board", "reports")
    assert "\x1b" not in out and "\\x1b" in out
    code, out, _ = run("board", "show", data.reports["chat"], "--json")
    assert code == 0 and json.loads(out)["target"] == "chat"
    code, out, _ = run("board", "show", data.reports["chat"])
    assert "Last messages:" in out and f"{data.users['bob'].public_id}: [photo] is this the one?" in out
    assert_no_telegram_ids(out)


def test_report_ids_that_look_like_options(env: dict[str, str]) -> None:
    data = seeded(env["DATABASE_URL"])
    renamed = {"cheap1": "-hXb3_q9Zk2a", "flat": "--yes-Q_2z9k"}
    with data.service.sessions.begin() as session:
        for name, new_id in renamed.items():
            session.execute(
                update(BoardReport).where(BoardReport.public_id == data.reports[name]).values(public_id=new_id)
            )
    code, out, _ = run("board", "show", renamed["cheap1"])
    assert code == 0 and f"Report    {renamed['cheap1']}" in out
    assert run("board", "dismiss", renamed["cheap1"])[0] == 0
    code, out, _ = run("board", "hide", renamed["flat"])
    assert code == 0 and "ad 'Flat to rent' hidden" in out
    code, out, _ = run("board", "ban", "--yes", data.reports["invite"])
    assert code == 0 and "banned" in out
    assert run("board", "show", "--help")[1].startswith("Usage:")


def test_board_commands_need_the_secret_key(monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    code, _, err = run("board", "reports")
    assert code == 78 and "SECRET_KEY" in err


def test_the_real_cli_process(stack: Stack) -> None:
    data = seeded(stack.env["DATABASE_URL"])
    stats = stack.cli_json("board", "stats", "--days", "7")
    assert stats["ads_posted"] == 3 and stats["reports_open"] == 5 and len(stats["per_day"]) == 7
    listed = stack.cli("board", "reports")
    assert listed.returncode == 0 and data.users["carol"].public_id in listed.stdout
    shown = stack.cli("board", "show", data.reports["chat"])
    assert shown.returncode == 0 and "hello there" in shown.stdout
    bad = stack.cli("board", "stats", "--days", "zero")
    assert bad.returncode == 2
    assert_no_telegram_ids(listed.stdout, listed.stderr, shown.stdout, json.dumps(stats))
    help_text = stack.cli("board", "--help")
    assert help_text.returncode == 0 and "reports" in help_text.stdout
