"""What each command of the CLI does, as data: whether it acts (changes the fleet, its secrets or what it holds,
and leaves one row in the audit log each time it runs) or only reads (leaves none), and when it asks first.

`tests/test_cli_audit_walk.py` walks the whole command tree against this table: a command missing from it, or
listed here but gone, fails, as does one that asks without a `--yes` or has a `--yes` and is said not to ask.

Asking (`base.confirm_or_refuse`): `ALWAYS` — it cannot be undone (removing, exporting, restoring, rekeying, a
ban), or it reaches every account of a worker; `MANY` — when it reaches more than one account, or those a
`--worker`, `--all` or `--status` chose (whose count the one typing it may not know); `NEVER` — one account, or
what is undone as easily as done (start, stop, move one account; activate, add).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Confirm(enum.StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    MANY = "many"


@dataclass(frozen=True)
class Effect:
    acts: bool  # True: one audit row per run; False: reads only, none
    confirm: Confirm = Confirm.NEVER
    why: str = ""  # why it does not ask though it may look as if it should, or what it asks about


READS = Effect(False)
ACTS = Effect(True)


def asks(confirm: Confirm, why: str) -> Effect:
    return Effect(True, confirm, why)


EFFECTS: dict[str, Effect] = {
    # workers
    "list": READS,
    "show": READS,
    "add": Effect(True, why="a record; with --issue-login a second row: the login issued (for a worker with none)"),
    "activate": ACTS,
    "deactivate": ACTS,
    "remove": asks(Confirm.ALWAYS, "a worker's record goes; only adding it again brings it back"),
    "doctor": READS,
    "workers trust": asks(Confirm.ALWAYS, "a new identity gets the worker's work (and, sealed to it, its secrets)"),
    "workers rotate-key": Effect(True, why="the worker's own new key, pinned at once; rotating again is as easy"),
    "workers login": asks(Confirm.ALWAYS, "a password shown once; a worker's current one stops working at once"),
    # accounts
    "accounts list": READS,
    "accounts show": READS,
    "accounts start": ACTS,
    "accounts stop": ACTS,
    "accounts restart": ACTS,
    "accounts move": Effect(True, why="moves one account; moving it back undoes it"),
    "accounts remove": asks(Confirm.ALWAYS, "the session is wiped: cannot be undone"),
    "accounts start-all": asks(Confirm.ALWAYS, "every account with a session on the worker, counted"),
    "accounts stop-all": asks(Confirm.ALWAYS, "every account on the worker, counted"),
    "accounts import": Effect(True, why="adds the accounts handed to it (a row each); removing them undoes it"),
    "accounts export": asks(Confirm.ALWAYS, "live credentials leave the fleet: cannot be undone"),
    "accounts login": Effect(True, why="one new account, typed in step by step (a row per step)"),
    "accounts op": asks(Confirm.MANY, "check, sessions, terminate-others, 2fa, profile on many accounts"),
    "accounts ops": READS,
    "accounts set-proxy": asks(Confirm.MANY, "running accounts restart onto the new proxy"),
    # the board
    "board stats": READS,
    "board reports": READS,
    "board show": READS,
    "board hidden": READS,
    "board ban": asks(Confirm.ALWAYS, "there is no unban"),
    "board dismiss": Effect(True, why="one report"),
    "board hide": Effect(True, why="one ad; `board unhide` undoes it"),
    "board unhide": ACTS,
    "board reporter": asks(Confirm.ALWAYS, "every open report of a reporter, counted (or a ban)"),
    # plugins
    "plugins list": READS,
    "plugins status": READS,
    "plugins enable": asks(Confirm.MANY, "accounts counted"),
    "plugins disable": asks(Confirm.MANY, "accounts counted"),
    # proxies
    "proxies list": READS,
    "proxies show": READS,
    "proxies add": Effect(True, why="adds to the pool; removing undoes it"),
    "proxies check": Effect(True, why="workers probe the proxies now and their health is recorded; nothing to undo"),
    "proxies remove": asks(Confirm.ALWAYS, "its credentials are deleted; --reassign moves its accounts, counted"),
    # API apps
    "apps list": READS,
    "apps add": ACTS,
    "apps set": ACTS,
    "apps remove": asks(Confirm.ALWAYS, "its API hash is deleted"),
    # admins and the audit log
    "admins list": READS,
    "admins add": ACTS,
    "admins set-role": ACTS,
    "admins remove": asks(Confirm.ALWAYS, "they lose the admin bot at once"),
    "audit": READS,
    # the database as a whole
    "backup": Effect(True, why="writes every table out, encrypted, and nothing in the fleet changes; recorded"),
    "restore": asks(Confirm.ALWAYS, "rows deleted and loaded, counted"),
    "rekey": asks(Confirm.ALWAYS, "every stored secret, counted by kind"),
    # the Telegram sandbox: what its Telegram does, not the fleet (nothing of the fleet changes; nothing audited)
    "sandbox status": READS,
    "sandbox chat": READS,
    "sandbox send": Effect(False, why="a message inside the sandbox's Telegram"),
    "sandbox flood": Effect(False, why="the sandbox's Telegram refuses; the fleet meets it as it would Telegram's"),
    "sandbox revoke": Effect(False, why="the sandbox's Telegram ends a demo account's sessions"),
    "sandbox ban": Effect(False, why="the sandbox's Telegram bans a demo account; --lift undoes it"),
}
